//! A throwaway PostgreSQL server: its own directory and port on loopback, started with
//! the machine's `initdb` and `pg_ctl`, stopped (immediate mode) and removed when dropped.
//! Run as root, it runs as the `postgres` user (initdb refuses root).
//!
//! Standard library only: `cargo xtask` includes this file by path (it starts one when no
//! PostgreSQL answers at the tests' URL), and `pg_cluster` builds its TLS-only
//! cluster on it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The one thing to install when no server binaries are found.
pub const INSTALL_HINT: &str = "install PostgreSQL's server binaries: the `postgresql` package (Debian/Ubuntu: `sudo apt-get install postgresql`; Fedora: `postgresql-server`; macOS: `brew install postgresql`), or set PG_BIN to the directory holding initdb and pg_ctl";

/// The directory holding `initdb` and `pg_ctl`: `PG_BIN`, else `PATH`, else the
/// distributions' usual places (the newest version first).
///
/// # Errors
/// None found: a message naming what to install ([`INSTALL_HINT`]).
pub fn bin_dir() -> Result<PathBuf, String> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PG_BIN={} holds no initdb and pg_ctl",
                dir.display()
            ))
        };
    }
    if let Some(dir) = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|d| has_tools(d)))
    {
        // Where a symbolic link on PATH leads: the version's own directory, which
        // holds psql and postgres too.
        return Ok(std::fs::canonicalize(dir.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| has_tools(d))
            .unwrap_or(dir));
    }
    // Versioned directories: /usr/lib/postgresql/16/bin, /usr/pgsql-16/bin,
    // /opt/homebrew/opt/postgresql@16/bin, /usr/local/opt/postgresql@16/bin.
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|v| v.split('.').next()?.parse().ok())
            else {
                continue;
            };
            let bin = entry.path().join(suffix);
            if has_tools(&bin) {
                found.push((version, bin));
            }
        }
    }
    for fixed in [
        "/usr/local/pgsql/bin",
        "/opt/homebrew/bin",
        "/usr/local/bin",
    ] {
        if has_tools(Path::new(fixed)) {
            found.push((0, PathBuf::from(fixed)));
        }
    }
    found.sort();
    found.pop().map(|(_, dir)| dir).ok_or_else(|| {
        format!("no PostgreSQL server binaries (initdb, pg_ctl) found: {INSTALL_HINT}")
    })
}

/// A free TCP port on loopback (free when asked; the server binds it right after).
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

/// Whether this process runs as root (the server then runs as `postgres`, who must be
/// able to reach its directory).
#[must_use]
pub fn is_root() -> bool {
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Runs `cmd`; its failure with the tool's output.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A throwaway server; see the module docs.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    started: bool,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PgServer {
    /// Creates `dir`, lets `prepare` write into it (certificates, say), hands it to the
    /// server's user and runs `initdb` (trust authentication, UTF-8, C locale) in
    /// `dir/data`. Not started yet: set [`Self::hba`], then [`Self::start`].
    ///
    /// # Errors
    /// No binaries ([`bin_dir`]), or what failed, with the tool's output.
    pub fn create(
        dir: PathBuf,
        prepare: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<Self, String> {
        let bin = bin_dir()?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let server = Self {
            dir,
            bin,
            as_postgres: is_root(),
            started: false,
            port: free_port(),
        };
        prepare(&server.dir)?;
        if server.as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&server.dir))?;
        }
        run(server
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-D",
            ])
            .arg(server.data()))?;
        Ok(server)
    }

    /// Replaces `pg_hba.conf`.
    ///
    /// # Errors
    /// The write failed.
    pub fn hba(&self, lines: &str) -> Result<(), String> {
        std::fs::write(self.data().join("pg_hba.conf"), lines).map_err(|e| e.to_string())
    }

    /// Starts the server on 127.0.0.1 at [`Self::port`] (its Unix socket in its
    /// directory, fsync off) with `options` (`-c name=value ...`) besides; waits at most
    /// 60 s for it to accept connections.
    ///
    /// # Errors
    /// What failed, with the server's log.
    pub fn start(&mut self, options: &str) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off -c max_connections=60 {options}",
            self.port,
            self.dir.display(),
        );
        let started = run(self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "start"]));
        self.started = true;
        started.map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Runs `sql` as `postgres` in database `postgres`, over the Unix socket.
    ///
    /// # Errors
    /// What psql said.
    pub fn psql(&self, sql: &str) -> Result<(), String> {
        let socket = self.dir.display().to_string();
        let port = self.port.to_string();
        run(self.command("psql").args([
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))
    }

    /// The server's directory (its Unix socket is here).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.started {
            let _ = self
                .command("pg_ctl")
                .args(["-w", "-t", "30", "-m", "immediate", "-D"])
                .arg(self.data())
                .arg("stop")
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
