//! The profile config file, so scripts need not repeat the environment, the client id and
//! the store: `<config dir>/class-oauth/config.toml` (`$XDG_CONFIG_HOME`, else
//! `~/.config`), one table per profile. Flags and environment variables override it.
//! The client secret is never in it: `config set client-secret` keeps it in a private
//! file beside it (0600, in a 0700 directory), as the store key is kept when no OS
//! keyring answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use class_oauth_core::ClientSecret;
use serde::{Deserialize, Serialize};

use crate::output::CliError;

/// What the client secret's file is called in messages.
const SECRET_FILE: &str = "the client secret file";

/// The settings a profile can keep.
pub(crate) const KEYS: [&str; 4] = ["env", "client-id", "store", "client-secret"];

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One profile's settings (what is unset stays to flags, environment and defaults).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<String>,
}

impl Profile {
    fn field(&mut self, key: &str) -> &mut Option<String> {
        match key {
            "env" => &mut self.env,
            "client-id" => &mut self.client_id,
            _ => &mut self.store,
        }
    }
}

fn dir() -> Result<PathBuf, CliError> {
    Ok(dirs::config_dir()
        .ok_or_else(|| {
            CliError::config(
                "no user config directory for the config file",
                Some("set HOME (or XDG_CONFIG_HOME)"),
            )
        })?
        .join("class-oauth"))
}

/// Where the config file is.
pub(crate) fn path() -> Result<PathBuf, CliError> {
    Ok(dir()?.join("config.toml"))
}

fn load() -> Result<File, CliError> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CliError::config(
                format!("the config file {} cannot be read: {e}", path.display()),
                Some(
                    "fix it, or remove it and set the profile again with `class-oauth config set`",
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(CliError::config(
            format!("the config file {}: {e}", path.display()),
            None,
        )),
    }
}

/// Replaces the config file in one step (a private temporary file renamed over it).
fn save(file: &File) -> Result<(), CliError> {
    let path = path()?;
    let text = toml::to_string_pretty(file)
        .map_err(|e| CliError::config(format!("writing the config: {e}"), None))?;
    crate::keys::replace_private(&path, &text, "the config file")
}

/// `profile`'s settings (none when the file or the profile does not exist).
pub(crate) fn profile(name: &str) -> Result<Profile, CliError> {
    Ok(load()?.profiles.remove(name).unwrap_or_default())
}

fn secret_path(profile: &str) -> Result<PathBuf, CliError> {
    if profile.is_empty()
        || !profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || profile.starts_with('.')
    {
        return Err(CliError::usage(format!(
            "profile `{profile}`: a profile that keeps a client secret is named with letters, digits, -, _ and ."
        )));
    }
    Ok(dir()?.join(format!("client-secret.{profile}")))
}

/// The client secret kept for `profile`, if any. A file others may read is refused.
pub(crate) fn secret(profile: &str) -> Result<Option<ClientSecret>, CliError> {
    let Ok(path) = secret_path(profile) else {
        return Ok(None);
    };
    Ok(crate::keys::read_private(&path, SECRET_FILE)?.map(|text| ClientSecret::new(text.trim())))
}

fn check_key(key: &str) -> Result<(), CliError> {
    if KEYS.contains(&key) {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "unknown setting `{key}`: one of {}",
            KEYS.join(", ")
        )))
    }
}

/// `config set KEY VALUE` (`client-secret` from `secret_line`, never an argument).
pub(crate) fn set(
    profile: &str,
    key: &str,
    value: Option<String>,
    secret_line: impl FnOnce() -> Result<String, CliError>,
) -> Result<String, CliError> {
    check_key(key)?;
    if key == "client-secret" {
        if value.is_some() {
            return Err(CliError::usage(
                "a secret is never an argument: pipe it in (`class-oauth config set client-secret < file`)",
            ));
        }
        let secret = secret_line()?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(CliError::usage("stdin held no client secret"));
        }
        let path = secret_path(profile)?;
        crate::keys::replace_private(&path, secret, SECRET_FILE)?;
        return Ok(format!("kept in {}", path.display()));
    }
    let value = value.ok_or_else(|| CliError::usage(format!("config set {key} VALUE")))?;
    if key == "env" {
        class_oauth_core::Environment::parse(&value)
            .map_err(|e| CliError::usage(format!("env {value}: {e}")))?;
    }
    let mut file = load()?;
    *file
        .profiles
        .entry(profile.to_owned())
        .or_default()
        .field(key) = Some(value);
    save(&file)?;
    Ok(format!("in {}", path()?.display()))
}

/// `config unset KEY`.
pub(crate) fn unset(profile: &str, key: &str) -> Result<(), CliError> {
    check_key(key)?;
    if key == "client-secret" {
        let path = secret_path(profile)?;
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CliError::config(format!("{}: {e}", path.display()), None))
            }
            _ => Ok(()),
        };
    }
    let mut file = load()?;
    if let Some(p) = file.profiles.get_mut(profile) {
        *p.field(key) = None;
        save(&file)?;
    }
    Ok(())
}

/// `config get KEY`: the value (`client-secret`: whether one is kept, never the value).
pub(crate) fn get(profile_name: &str, key: &str) -> Result<Option<String>, CliError> {
    check_key(key)?;
    if key == "client-secret" {
        return Ok(secret(profile_name)?.map(|_| "(kept)".to_owned()));
    }
    Ok(profile(profile_name)?.field(key).clone())
}
