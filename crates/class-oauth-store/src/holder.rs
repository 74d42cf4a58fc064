//! Who holds a refresh lease, in a form that dies with the holder. An SQLite file is
//! used on one host, so a lease can name its holding process: the host's boot, the
//! process id and the process's start time (which tells a reused pid apart). The next
//! process that finds the lease can then see that its holder is gone (SIGKILL, a crash,
//! a closed terminal) and take it over at once, instead of waiting out its expiry.
//!
//! Linux reads `/proc`; elsewhere no holder is recorded and the lease's expiry applies.

/// This process, as a lease holder: `linux:<boot id>:<pid>:<start time>`.
pub(crate) fn this_process() -> Option<String> {
    static ME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        let started = start_time(pid)?;
        Some(format!("linux:{}:{pid}:{started}", boot_id()?))
    })
    .clone()
}

/// True only when `holder` is provably gone: recorded on this host's current boot, and
/// its pid no longer runs (or runs another program started later, or is a zombie).
/// Anything else (another host, another boot, another platform, unreadable) is taken as
/// alive: the lease's expiry then decides.
pub(crate) fn is_gone(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some("linux"), Some(boot), Some(pid), Some(started), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(pid), Ok(started)) = (pid.parse::<u32>(), started.parse::<u64>()) else {
        return false;
    };
    if boot_id().as_deref() != Some(boot) {
        return false;
    }
    match stat(pid) {
        Some((state, now_started)) => now_started != started || state == 'Z' || state == 'X',
        // No such process (ENOENT): gone.
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|s| !s.is_empty() && !s.contains(':'))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// The state and start time (field 22, clock ticks since boot) of `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: read after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4..=21 come between the state (3) and the start time (22).
    let started = fields.nth(18)?.parse().ok()?;
    Some((state, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_is_alive_and_a_dead_child_is_gone() {
        let me = this_process().expect("a holder on Linux");
        assert!(!is_gone(&me), "{me}");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let theirs = format!(
            "linux:{}:{pid}:{}",
            boot_id().unwrap(),
            start_time(pid).unwrap()
        );
        assert!(!is_gone(&theirs), "a running child");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(is_gone(&theirs), "a killed and reaped child");
        // Same pid, another start time: a reused pid is another process.
        let reused = format!("linux:{}:{}:1", boot_id().unwrap(), std::process::id());
        assert!(is_gone(&reused));
        // Another boot or something unreadable: not provably gone.
        assert!(!is_gone(&format!("linux:other-boot:{pid}:1")));
        assert!(!is_gone("garbage"));
    }
}
