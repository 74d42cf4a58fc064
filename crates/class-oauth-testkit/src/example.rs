//! For examples: run against Class when given credentials, else against this emulator.
//!
//! ```
//! let target = class_oauth_testkit::example::Target::start_blocking();
//! // With CLASS_CLIENT_ID unset, every variable has the emulator's demo value:
//! # if target.emulator().is_some() {
//! assert_eq!(target.var("CLASS_CLIENT_ID")?, "demo-client");
//! # }
//! # Ok::<(), String>(())
//! ```

use crate::{ClassEmulator, EmulatorConfig};

/// Where an example runs: Class, when `CLASS_CLIENT_ID` is set in the environment;
/// otherwise a Class emulator with [`EmulatorConfig::demo`], started here.
#[derive(Debug)]
pub struct Target {
    emulator: Option<ClassEmulator>,
}

impl Target {
    fn offline() -> bool {
        std::env::var_os("CLASS_CLIENT_ID").is_none()
    }

    /// From an async `main` (tokio).
    pub async fn start() -> Self {
        let emulator = if Self::offline() {
            Some(ClassEmulator::start(EmulatorConfig::demo()).await)
        } else {
            None
        };
        Self::announce(emulator)
    }

    /// From a blocking `main` (the emulator gets a runtime of its own).
    #[must_use]
    pub fn start_blocking() -> Self {
        let emulator =
            Self::offline().then(|| ClassEmulator::start_blocking(EmulatorConfig::demo()));
        Self::announce(emulator)
    }

    fn announce(emulator: Option<ClassEmulator>) -> Self {
        if let Some(e) = &emulator {
            eprintln!(
                "No CLASS_CLIENT_ID: running against the Class emulator at {} \
                 (set CLASS_CLIENT_ID and the other CLASS_* variables for Class).",
                e.issuer()
            );
        }
        Self { emulator }
    }

    /// The running emulator, when offline.
    #[must_use]
    pub fn emulator(&self) -> Option<&ClassEmulator> {
        self.emulator.as_ref()
    }

    /// The variable `name` from the environment; offline, the emulator's demo value
    /// for the `CLASS_*` variables the examples read (`CLASS_OAUTH_ENV` is its issuer).
    pub fn var(&self, name: &str) -> Result<String, String> {
        if let Some(e) = &self.emulator {
            let demo = match name {
                "CLASS_OAUTH_ENV" => Some(e.issuer()),
                "CLASS_CLIENT_ID" => Some("demo-client".into()),
                "CLASS_CLIENT_SECRET" => Some("demo-secret".into()),
                "CLASS_USERNAME" => Some("sam@example.com".into()),
                "CLASS_PASSWORD" => Some("demo-password".into()),
                "CLASS_REDIRECT_URI" => Some("https://partner.example/class-callback".into()),
                "CLASS_SCOPE" => Some(
                    "openid profile class_profile target:b/OAUTH_TEST offline_access \
                     business.fund.list"
                        .into(),
                ),
                _ => None,
            };
            if let Some(v) = demo {
                return Ok(v);
            }
        }
        std::env::var(name).map_err(|_| format!("set {name}"))
    }

    /// Offline, consents at `authorization_url` as the emulator's signed-in user and
    /// returns the callback URL; with Class, `None` (a person does it in a browser).
    pub fn consent(&self, authorization_url: &str) -> Option<Result<String, String>> {
        self.emulator.as_ref().map(|e| e.browse(authorization_url))
    }
}
