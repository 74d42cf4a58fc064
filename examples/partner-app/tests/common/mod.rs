//! What the partner app's tests share: the app and the Class emulator it talks to.

use class_oauth_axum::Key;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, RedirectUrl};
use class_oauth_partner_app::{App, Config};
use class_oauth_store::{Encryption, EncryptionKey, KeyRing};
use class_oauth_testkit::{ClassEmulator, ClientRegistration, EmulatorConfig};

/// The app serving on a loopback port, and the emulator standing in for Class.
pub(crate) struct Rig {
    /// The app's address (`http://127.0.0.1:<port>`).
    pub(crate) base: String,
    /// The emulator.
    pub(crate) emulator: ClassEmulator,
    _dir: tempfile::TempDir,
}

/// Starts the emulator (`config`, with the app registered) and the app on a free port.
pub(crate) async fn start(config: EmulatorConfig) -> Rig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let emulator = ClassEmulator::start(
        config.client(
            ClientRegistration::new("partner-app", "partner-secret")
                .redirect_uri(format!("{base}/callback")),
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Config {
        environment: Environment::Custom(IssuerUrl::new(&emulator.issuer()).unwrap()),
        client_id: ClientId::new("partner-app"),
        client_secret: ClientSecret::new("partner-secret"),
        redirect_uri: RedirectUrl::new(&format!("{base}/callback")).unwrap(),
        database: dir.path().join("tenants.sqlite3"),
        encryption: Encryption::Keys(KeyRing::new(EncryptionKey::generate("k1").unwrap())),
        cookie_key: Key::generate(),
    })
    .unwrap();
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Rig {
        base,
        emulator,
        _dir: dir,
    }
}
