//! The store key, with no set-up: `CLASS_OAUTH_STORE_KEY` when set (it overrides); else
//! the key file when one exists; else the OS keyring (macOS Keychain, Windows Credential
//! Manager, the Secret Service on Linux desktops) when it has the key or can keep it;
//! else a private key file, created on first use.
//!
//! The key file is `<config dir>/class-oauth/store-key` (on Linux
//! `$XDG_CONFIG_HOME/class-oauth/store-key`, else `~/.config/class-oauth/store-key`),
//! written once with mode 0600 in a 0700 directory, and refused when others can read it.
//! Its content, and the keyring entry's (service `class-oauth`, user `store-key`), is a
//! key-ring spec (`id:base64`, older keys after a comma), the same text
//! `CLASS_OAUTH_STORE_KEY` takes. `CLASS_OAUTH_KEYRING=off` keeps the CLI away from the
//! OS keyring (servers, CI, tests). A keyring that does not answer within
//! [`KEYRING_TIMEOUT`] counts as unavailable, so a command never hangs on it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use class_oauth_store::{EncryptionKey, KeyRing};

use crate::output::CliError;

/// The environment variable that overrides the key file.
pub(crate) const KEY_VAR: &str = "CLASS_OAUTH_STORE_KEY";

/// Turns the OS keyring off (`off`).
pub(crate) const KEYRING_VAR: &str = "CLASS_OAUTH_KEYRING";
/// The longest a keyring call may take before it counts as unavailable.
pub(crate) const KEYRING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const KEYRING_SERVICE: &str = "class-oauth";
const KEYRING_USER: &str = "store-key";

/// Where the key came from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// `CLASS_OAUTH_STORE_KEY`.
    Environment,
    /// The OS keyring (created by this run when `created`).
    Keyring { created: bool },
    /// The key file (created by this run when `created`).
    File { path: PathBuf, created: bool },
}

impl KeySource {
    /// For `class-oauth key show` and messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Environment => format!("the {KEY_VAR} environment variable"),
            Self::Keyring { created } => format!(
                "the OS keyring (service `{KEYRING_SERVICE}`, entry `{KEYRING_USER}`){}",
                if *created { ", created now" } else { "" }
            ),
            Self::File {
                path,
                created: true,
            } => format!("{} (created now, mode 0600)", path.display()),
            Self::File { path, .. } => format!("{} (mode 0600)", path.display()),
        }
    }
}

/// The key file's path.
pub(crate) fn key_file() -> Result<PathBuf, CliError> {
    let base = dirs::config_dir().ok_or_else(|| {
        CliError::config(
            "no user configuration directory for the store key",
            Some("set HOME (or XDG_CONFIG_HOME), or export CLASS_OAUTH_STORE_KEY"),
        )
    })?;
    Ok(base.join("class-oauth").join("store-key"))
}

/// The store's key ring and where it came from; creates the key file on first use.
pub(crate) fn resolve() -> Result<(KeyRing, KeySource), CliError> {
    if let Some(spec) = std::env::var(KEY_VAR).ok().filter(|k| !k.trim().is_empty()) {
        return Ok((KeyRing::parse(spec.trim())?, KeySource::Environment));
    }
    let path = key_file()?;
    if let Some(spec) = read_private(&path, KEY_FILE)? {
        return Ok((
            KeyRing::parse(spec.trim())?,
            KeySource::File {
                path,
                created: false,
            },
        ));
    }
    let keyring = keyring_enabled().then(os_keyring).flatten();
    let keyring = match keyring {
        Some(Keyring::Has(spec)) => {
            return Ok((
                KeyRing::parse(spec.trim())?,
                KeySource::Keyring { created: false },
            ));
        }
        Some(Keyring::Empty(entry)) => Some(entry),
        None => None,
    };
    let key = EncryptionKey::generate(format!(
        "k{}",
        class_oauth_core::time::to_unix(std::time::SystemTime::now())
    ))?;
    let spec = key.to_spec();
    if let Some(entry) = keyring
        && keyring_call(move || entry.set_password(spec.as_str())).is_some_and(|r| r.is_ok())
    {
        return Ok((KeyRing::new(key), KeySource::Keyring { created: true }));
    }
    write_private(&path, key.to_spec().as_str(), KEY_FILE)?;
    Ok((
        KeyRing::new(key),
        KeySource::File {
            path,
            created: true,
        },
    ))
}

fn keyring_enabled() -> bool {
    !std::env::var(KEYRING_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("off"))
}

/// What the OS keyring holds for the store key.
enum Keyring {
    /// The key-ring spec.
    Has(String),
    /// Nothing yet, and the keyring answers: the key can be kept there.
    Empty(keyring_core::Entry),
}

/// Runs a keyring call on its own thread, bounded by [`KEYRING_TIMEOUT`]; `None` when it
/// did not answer in time.
fn keyring_call<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    call_within(KEYRING_TIMEOUT, call)
}

fn call_within<T: Send + 'static>(
    timeout: std::time::Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(timeout).ok()
}

/// Replaces the key-ring spec kept in the OS keyring (for `key rotate`).
pub(crate) fn replace_keyring_spec(spec: &str) -> Result<(), CliError> {
    let spec = spec.to_owned();
    match keyring_call(move || {
        platform_store()?;
        keyring_core::Entry::new(KEYRING_SERVICE, KEYRING_USER)?.set_password(&spec)
    }) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(CliError::config(
            format!("cannot write the store key to the OS keyring: {e}"),
            None,
        )),
        None => Err(CliError::config(
            "the OS keyring did not answer in time",
            None,
        )),
    }
}

/// The key-ring spec kept in the OS keyring.
pub(crate) fn keyring_spec() -> Result<String, CliError> {
    match os_keyring() {
        Some(Keyring::Has(spec)) => Ok(spec.trim().to_owned()),
        _ => Err(CliError::config("the OS keyring holds no store key", None)),
    }
}

/// The OS keyring's store-key entry; `None` when there is no usable keyring.
fn os_keyring() -> Option<Keyring> {
    keyring_call(|| {
        platform_store().ok()?;
        let entry = keyring_core::Entry::new(KEYRING_SERVICE, KEYRING_USER).ok()?;
        match entry.get_password() {
            Ok(spec) => Some(Keyring::Has(spec)),
            Err(keyring_core::Error::NoEntry) => Some(Keyring::Empty(entry)),
            Err(_) => None,
        }
    })
    .flatten()
}

/// Makes the platform's credential store (Keychain, Credential Manager, Secret Service)
/// the default when none is set yet; a store already set (a test's mock) is kept.
fn platform_store() -> keyring_core::Result<()> {
    if keyring_core::get_default_store().is_some() {
        return Ok(());
    }
    keyring_core::set_default_store(os_store()?);
    Ok(())
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn os_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(target_os = "windows")]
fn os_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(windows_native_keyring_store::Store::new()?)
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn os_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "windows",
    all(unix, not(target_os = "android"))
)))]
fn os_store() -> keyring_core::Result<std::sync::Arc<keyring_core::CredentialStore>> {
    Err(keyring_core::Error::NoDefaultStore)
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::config(format!("{what} {}: {e}", path.display()), None)
}

/// The key file's text (a key-ring spec), for rotation.
pub(crate) fn read_spec(path: &Path) -> Result<String, CliError> {
    read_private(path, KEY_FILE)?
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| CliError::config(format!("no store key file at {}", path.display()), None))
}

/// Replaces the key file in one step (see [`replace_private`]).
pub(crate) fn replace_key_file(path: &Path, spec: &str) -> Result<(), CliError> {
    replace_private(path, spec, KEY_FILE)
}

/// What the key file is called in messages.
const KEY_FILE: &str = "the store key file";

/// Replaces a private file (`what`, for messages) in one step: a private temporary file
/// renamed over it, so a crash leaves either the old or the new file, never half of one.
pub(crate) fn replace_private(path: &Path, text: &str, what: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, text, what)?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(&format!("cannot replace {what}"), path, &e))
}

/// A private file's content (`what`, for messages), or `None` when there is none. A file
/// that others may read is refused: what it holds would no longer be the user's alone.
pub(crate) fn read_private(path: &Path, what: &str) -> Result<Option<String>, CliError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&format!("cannot read {what}"), path, &e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CliError::config(
                format!("{what} {} can be read by other users", path.display()),
                Some(
                    "run `chmod 600` on it (and consider replacing what it holds: rotate the key, ask Class for a new secret)",
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| io_error(&format!("cannot read {what}"), path, &e))
}

/// Creates a directory (and its parents) readable by the user only (0700); an existing
/// directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io_error("cannot create the directory", dir, &e))
}

/// Writes a new private file (`what`, for messages): the directory 0700, the file 0600,
/// never over an existing one.
fn write_private(path: &Path, spec: &str, what: &str) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| io_error(&format!("cannot create {what}"), path, &e))?;
    file.write_all(spec.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&format!("cannot write {what}"), path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a keyring that answers and holds no key, the new key is kept there (the mock
    /// keyring stands in for the platform's).
    #[test]
    fn a_new_key_goes_to_the_keyring_when_one_answers() {
        keyring_core::set_default_store(keyring_core::mock::Store::new().unwrap());
        let Some(Keyring::Empty(entry)) = os_keyring() else {
            panic!("the mock keyring answers and is empty");
        };
        let key = EncryptionKey::generate("k1").unwrap();
        let spec = key.to_spec();
        let stored = keyring_call(move || {
            entry.set_password(spec.as_str())?;
            entry.get_password()
        })
        .expect("answered")
        .expect("kept");
        assert!(stored.starts_with("k1:"));
        assert_eq!(
            KeySource::Keyring { created: true }.describe(),
            "the OS keyring (service `class-oauth`, entry `store-key`), created now"
        );
    }

    #[test]
    fn a_keyring_that_does_not_answer_counts_as_unavailable() {
        let limit = std::time::Duration::from_millis(100);
        let started = std::time::Instant::now();
        let answer = call_within(limit, move || std::thread::sleep(limit * 20));
        assert!(answer.is_none());
        assert!(
            started.elapsed() < limit * 10,
            "it did not wait for the call"
        );
        assert_eq!(call_within(limit, || 7), Some(7));
    }
}
