//! The store key, with no set-up: `CLASS_OAUTH_STORE_KEY` when set (it overrides), else a
//! private key file in the user's configuration directory, created on first use.
//!
//! The key file is `<config dir>/class-oauth/store-key` (on Linux
//! `$XDG_CONFIG_HOME/class-oauth/store-key`, else `~/.config/class-oauth/store-key`),
//! written once with mode 0600 in a 0700 directory, and refused when others can read it.
//! Its content is a key-ring spec (`id:base64`, older keys after a comma), the same text
//! `CLASS_OAUTH_STORE_KEY` takes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use class_oauth_store::{EncryptionKey, KeyRing};

use crate::output::CliError;

/// The environment variable that overrides the key file.
pub(crate) const KEY_VAR: &str = "CLASS_OAUTH_STORE_KEY";

/// Where the key came from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// `CLASS_OAUTH_STORE_KEY`.
    Environment,
    /// The key file (created by this run when `created`).
    File { path: PathBuf, created: bool },
}

impl KeySource {
    /// For `class-oauth key show` and messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Environment => format!("the {KEY_VAR} environment variable"),
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
    match read_private(&path)? {
        Some(spec) => Ok((
            KeyRing::parse(spec.trim())?,
            KeySource::File {
                path,
                created: false,
            },
        )),
        None => {
            let key = EncryptionKey::generate(format!(
                "k{}",
                class_oauth_core::time::to_unix(std::time::SystemTime::now())
            ))?;
            write_private(&path, key.to_spec().as_str())?;
            Ok((
                KeyRing::new(key),
                KeySource::File {
                    path,
                    created: true,
                },
            ))
        }
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::config(format!("{what} {}: {e}", path.display()), None)
}

/// The key file's text (a key-ring spec), for rotation.
pub(crate) fn read_spec(path: &Path) -> Result<String, CliError> {
    read_private(path)?
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| CliError::config(format!("no store key file at {}", path.display()), None))
}

/// Replaces the key file in one step (a private temporary file renamed over it), so a
/// crash leaves either the old or the new file, never half of one.
pub(crate) fn replace_key_file(path: &Path, spec: &str) -> Result<(), CliError> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, spec)?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("cannot replace the store key file", path, &e))
}

/// The key file's content, or `None` when there is none. A file that others may read is
/// refused: the key would no longer be the user's alone.
fn read_private(path: &Path) -> Result<Option<String>, CliError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read the store key file", path, &e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CliError::config(
                format!(
                    "the store key file {} can be read by other users",
                    path.display()
                ),
                Some("run `chmod 600` on it (and consider rotating the key)"),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| io_error("cannot read the store key file", path, &e))
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

/// Writes a new key file: the directory 0700, the file 0600, never over an existing one.
fn write_private(path: &Path, spec: &str) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| io_error("cannot create the store key file", path, &e))?;
    file.write_all(spec.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("cannot write the store key file", path, &e))
}
