//! Stored grants for the token manager's tests, against the one emulator of Class
//! (`class-oauth-testkit`): its one-time refresh tokens, rotated on every refresh, with
//! reuse detection that revokes the whole grant (a client that spends a refresh token
//! twice loses the tenant), and counts of what its token endpoint saw.

use std::time::{Duration, SystemTime};

use class_oauth_core::scope::Scopes;
use class_oauth_core::token::{TokenRequest, TokenSet};
use class_oauth_core::{Client, ClientId, Environment, IssuerUrl, RefreshToken};
pub use class_oauth_testkit::ClassEmulator;
use class_oauth_testkit::{Business, ClientRegistration, EmulatorConfig};
use serde_json::json;

/// The business every seeded grant is for.
pub const BUSINESS: &str = "OAUTH_TEST";

/// The scope every seeded grant has.
pub const SCOPE: &str = "target:b offline_access fund.read";

/// The emulator the manager's tests refresh against: business [`BUSINESS`], the fixture
/// client ([`crate::CLIENT_ID`], [`crate::CLIENT_SECRET`]) and `clients` registered,
/// every answer after `latency` (past a client's timeout: the refresh is spent and its
/// answer lost), no request log (storms send thousands).
#[must_use]
pub fn emulator_config(latency: Duration, clients: &[(&str, &str)]) -> EmulatorConfig {
    let config = EmulatorConfig::new()
        .business(Business::new(BUSINESS, "OAuth Test Business"))
        .client(ClientRegistration::new(
            crate::CLIENT_ID,
            crate::CLIENT_SECRET,
        ))
        .latency(latency)
        .without_request_log();
    clients.iter().fold(config, |config, (id, secret)| {
        config.client(ClientRegistration::new(*id, *secret))
    })
}

/// A new grant of `emulator` for `client_id` ([`SCOPE`] for [`BUSINESS`]); its first
/// refresh token.
#[must_use]
pub fn grant(emulator: &ClassEmulator, client_id: &str) -> String {
    emulator.seed_grant(client_id, BUSINESS, SCOPE)
}

/// A token set as a client would have stored it: `access_token`, `refresh_token`,
/// received at `received_at` with `expires_in`.
///
/// # Panics
/// Never for valid input.
#[must_use]
pub fn token_set(
    access_token: &str,
    refresh_token: &str,
    expires_in: u64,
    received_at: SystemTime,
) -> TokenSet {
    let client = Client::new(
        ClientId::new(crate::CLIENT_ID),
        Environment::Custom(IssuerUrl::new("https://class.test").expect("issuer")).preset(),
    );
    let body = json!({"access_token": access_token, "token_type": "bearer", "expires_in": expires_in, "refresh_token": refresh_token,
                      "scope": "target:b/OAUTH_TEST offline_access fund.read"});
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("response");
    let request = TokenRequest::refresh_token(RefreshToken::new(refresh_token), Scopes::default());
    class_oauth_core::flow::drive_blocking(
        class_oauth_core::flow::TokenFlow::new(&client, request),
        || received_at,
        |_| Ok(resp.clone()),
        |_| {},
    )
    .expect("token set")
    .tokens
}
