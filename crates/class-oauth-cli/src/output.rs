//! Output: machine JSON on stdout, human text on stderr; errors with exit codes.

use class_oauth_core::Error;
use class_oauth_core::flow::DriveError;
use class_oauth_manager::ManagerError;
use class_oauth_store::StoreError;
use serde_json::{Value, json};

/// A failure with its exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit_code: u8,
    pub(crate) kind: &'static str,
    pub(crate) code: Option<String>,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            exit_code: 2,
            kind: "usage",
            code: None,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn config(message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            exit_code: 2,
            kind: "configuration",
            code: None,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self {
            exit_code: 4,
            kind: "validation",
            code: None,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn reauth(message: impl Into<String>) -> Self {
        Self {
            exit_code: 6,
            kind: "reauthorization_required",
            code: None,
            message: message.into(),
            hint: Some(
                "run `class-oauth login` (or `auth start` / `auth finish`) for this profile".into(),
            ),
        }
    }
}

fn hint_for(e: &Error) -> Option<String> {
    let code = e.code().map(|c| c.as_str().to_owned());
    match code.as_deref() {
        Some("invalid_client") => Some("check the client id and secret for this environment: Class issues one pair per environment (PIE and Production differ)".into()),
        Some("invalid_grant") => Some("the code or refresh token was used, expired or revoked, or the redirect URI differs: Class requires the exact registered redirect URL".into()),
        Some("invalid_scope") => Some("access specifiers need exactly one target (target:b or target:b/<CODE>); run `class-oauth scopes`".into()),
        Some("access_denied") => Some("the user declined, or has no access to the business".into()),
        _ => match e {
            Error::PolicyViolation(class_oauth_core::error::PolicyViolation::PendingAuthorizationMismatch(_)) => {
                Some("the callback must arrive at the exact redirect URI used to start the flow".into())
            }
            Error::MalformedResponse(m) if m.status.is_redirection() => Some("check the --env URL: the server redirected".into()),
            _ => None,
        },
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let (exit_code, kind) = if e.requires_reauthorization()
            && e.code().is_some_and(|c| c.as_str() == "invalid_grant")
        {
            (6, "reauthorization_required")
        } else if e.is_transient() {
            (5, "transport")
        } else {
            match e.kind() {
                class_oauth_core::ErrorKind::ServerRefused
                | class_oauth_core::ErrorKind::ApiRefused => (3, "server_refused"),
                class_oauth_core::ErrorKind::InvalidInput => (2, "usage"),
                _ => (4, "validation"),
            }
        };
        Self {
            exit_code,
            kind,
            code: e.code().map(|c| c.as_str().to_owned()),
            hint: hint_for(&e),
            message: e.to_string(),
        }
    }
}

impl From<DriveError> for CliError {
    fn from(e: DriveError) -> Self {
        match e {
            DriveError::Protocol(p) => p.into(),
            DriveError::Transport(t) => Self {
                exit_code: 5,
                kind: "transport",
                code: Some(t.kind.as_str().to_owned()),
                message: t.to_string(),
                hint: Some("check the network and the --env URL".into()),
            },
            other => Self {
                exit_code: 5,
                kind: "transport",
                code: None,
                message: other.to_string(),
                hint: None,
            },
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoEncryptionKey => Self::config(
                e.to_string(),
                Some(
                    "the CLI keeps its own key (see `class-oauth key show`); CLASS_OAUTH_STORE_KEY overrides it",
                ),
            ),
            StoreError::Config(_) => Self::config(e.to_string(), None),
            StoreError::Crypto(_) => Self::config(
                e.to_string(),
                Some(
                    "is the store key the one the profile was stored with? `class-oauth key show` says where it lives; CLASS_OAUTH_STORE_KEY overrides it",
                ),
            ),
            other => Self::store(other.to_string()),
        }
    }
}

impl CliError {
    /// Exit 7: the local store failed (damaged, unreadable, read-only, wrong
    /// permissions), or another process's refresh did not finish within the wait.
    pub(crate) fn store(message: impl Into<String>) -> Self {
        Self {
            exit_code: 7,
            kind: "store",
            code: None,
            message: message.into(),
            hint: Some(
                "the local token store failed: check the store file (CLASS_OAUTH_STORE, `class-oauth key show` says where) is writable by you and the disk is not full".into(),
            ),
        }
    }
}

impl From<ManagerError> for CliError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::NoGrant { .. } | ManagerError::NeedsReauthorization { .. } => {
                Self::reauth(e.to_string())
            }
            ManagerError::Refused(p)
            | ManagerError::Validation(p)
            | ManagerError::Malformed(p)
            | ManagerError::Api(p) => p.into(),
            ManagerError::Transport(t) => DriveError::Transport(t).into(),
            ManagerError::Store(s) => s.into(),
            ManagerError::Config(m) => Self::config(m, None),
            ManagerError::Contended { .. } => Self {
                exit_code: 7,
                kind: "contended",
                code: None,
                message: e.to_string(),
                hint: Some(
                    "another class-oauth process is refreshing this grant and did not finish within the wait; try again".into(),
                ),
            },
            other => Self {
                exit_code: 5,
                kind: "transport",
                code: None,
                message: other.to_string(),
                hint: None,
            },
        }
    }
}

impl From<class_oauth_core::error::InputError> for CliError {
    fn from(e: class_oauth_core::error::InputError) -> Self {
        Self::usage(e.to_string())
    }
}

impl From<class_oauth_core::scope::ScopeError> for CliError {
    fn from(e: class_oauth_core::scope::ScopeError) -> Self {
        Self::usage(e.to_string())
    }
}

pub(crate) fn report_error(e: &CliError, json: bool) {
    if json {
        println!(
            "{}",
            json!({"error": {"kind": e.kind, "code": e.code, "message": e.message}})
        );
    }
    eprintln!("error: {}", e.message);
    if let Some(h) = &e.hint {
        eprintln!("hint: {h}");
    }
}

/// Prints a command's result on stdout: the JSON value with `--json` (and nothing else),
/// the human text otherwise. Diagnostics (progress, hints, errors) go to stderr.
pub(crate) fn emit(json: bool, value: &Value, human: &str) {
    if json {
        println!("{value}");
    } else if !human.is_empty() {
        println!("{human}");
    }
}
