//! Runs the partner app (see the library docs).
//!
//! ```sh
//! cargo run -p class-oauth-partner-app            # offline, against the Class emulator
//! CLASS_CLIENT_ID=... CLASS_CLIENT_SECRET=... CLASS_OAUTH_ENV=pie \
//!   CLASS_OAUTH_STORE_KEY=... CLASS_REDIRECT_URI=https://your.app/callback \
//!   cargo run -p class-oauth-partner-app          # against Class
//! ```
//! `PORT` picks the port (default 3000). Several instances behind one address share
//! `CLASS_OAUTH_COOKIE_SECRET` (32 bytes or more), the key of the consent cookie.

use class_oauth_axum::Key;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, RedirectUrl};
use class_oauth_partner_app::{App, Config};
use class_oauth_store::{Encryption, EncryptionKey, KeyRing};
use class_oauth_testkit::{ClassEmulator, ClientRegistration, EmulatorConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let here = format!("http://{}", listener.local_addr()?);
    let (config, _emulator) = match (
        std::env::var("CLASS_CLIENT_ID"),
        std::env::var("CLASS_CLIENT_SECRET"),
    ) {
        (Ok(id), Ok(secret)) => {
            let env = std::env::var("CLASS_OAUTH_ENV").unwrap_or_else(|_| "pie".into());
            let key = std::env::var("CLASS_OAUTH_STORE_KEY")
                .map_err(|_| "set CLASS_OAUTH_STORE_KEY (class-oauth key generate prints one)")?;
            let config = Config {
                environment: Environment::parse(&env)?,
                client_id: ClientId::new(id),
                client_secret: ClientSecret::new(secret),
                redirect_uri: RedirectUrl::new(
                    &std::env::var("CLASS_REDIRECT_URI")
                        .unwrap_or_else(|_| format!("{here}/callback")),
                )?,
                database: "partner-app.sqlite3".into(),
                encryption: Encryption::Keys(KeyRing::parse(&key)?),
                // Several instances behind one address need one cookie key.
                cookie_key: match std::env::var("CLASS_OAUTH_COOKIE_SECRET") {
                    Ok(secret) if secret.len() >= 32 => Key::derive_from(secret.as_bytes()),
                    Ok(_) => return Err("CLASS_OAUTH_COOKIE_SECRET needs 32 bytes or more".into()),
                    Err(_) => Key::generate(),
                },
            };
            (config, None)
        }
        _ => {
            let emulator = ClassEmulator::start(
                EmulatorConfig::demo().with_consent_page().client(
                    ClientRegistration::new("partner-app", "partner-secret")
                        .redirect_uri(format!("{here}/callback")),
                ),
            )
            .await;
            let config = Config {
                environment: Environment::Custom(IssuerUrl::new(&emulator.issuer())?),
                client_id: ClientId::new("partner-app"),
                client_secret: ClientSecret::new("partner-secret"),
                redirect_uri: RedirectUrl::new(&format!("{here}/callback"))?,
                database: std::env::temp_dir().join(format!(
                    "class-oauth-partner-app-{}.sqlite3",
                    std::process::id()
                )),
                encryption: Encryption::Keys(KeyRing::new(EncryptionKey::generate("demo")?)),
                cookie_key: Key::generate(),
            };
            println!(
                "No CLASS_CLIENT_ID/CLASS_CLIENT_SECRET: using the Class emulator at {} \
                 (signed in as sam@example.com; businesses OAUTH_TEST and SECOND_BIZ).",
                emulator.issuer()
            );
            (config, Some(emulator))
        }
    };
    let app = App::new(config)?;
    println!("Partner app on {here}/");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
