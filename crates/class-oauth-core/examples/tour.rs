//! A tour of the sans-IO core: prints the PIE authorization URL a partner would send a
//! user to, the scope catalogue entries it asks for, and then plays the rest of the
//! code flow (callback, token request, Class-shaped response) in memory.
//!
//! Run: `cargo run -p class-oauth-core --example tour`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use class_oauth_core::authorize::AuthorizationRequest;
use class_oauth_core::flow::{TokenFlow, drive_blocking};
use class_oauth_core::refresh::{RefreshDecision, RefreshPolicy};
use class_oauth_core::scope::{AccessSpecifier, Scopes, Target};
use class_oauth_core::token::TokenRequest;
use class_oauth_core::{Client, ClientId, ClientSecret, Environment, RedirectUrl};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The example is the driver, so it reads the clock; the library never does.
    #[allow(clippy::disallowed_methods, reason = "the driver owns the clock")]
    let now = SystemTime::now();
    let env = Environment::Pie;
    let client = Client::new(
        ClientId::new("1eaa3979-9caf-4c6b-bab8-2cbcd549d410"),
        env.preset(),
    )
    .with_secret(ClientSecret::new("example-secret"));

    // No `openid`: the PIE preset publishes no key set, so an ID token could not be
    // verified (the request would be refused before any code is spent).
    let scopes = Scopes::builder()
        .target(Target::AnyBusiness)
        .access(AccessSpecifier::FundRead)
        .offline_access()
        .require_refresh_token()
        .build()?;
    println!("Scopes requested, as Class's consent screen shows them:");
    for s in &scopes {
        println!(
            "  {:<16} {}",
            s.to_string(),
            s.consent_text().unwrap_or("(user picks the business)")
        );
    }

    let mut rng = pseudo_random(now);
    let redirect = RedirectUrl::new("https://partner.example/class-callback")?;
    let (url, pending) =
        AuthorizationRequest::new(&client, redirect, scopes).build(&mut rng, now)?;
    println!("\n1. Send the user to:\n   {url}");

    let callback = format!(
        "https://partner.example/class-callback?code=1fd827c4&state={}",
        pending.state().secret()
    );
    let verified = pending.verify_callback_url(&callback, now)?;
    println!("\n2. Callback verified (state matches, issuer ok); code received.");

    // The flow sends the token request, parses the answer and validates any ID token
    // (none here: openid was not requested); any HTTP client can drive it.
    let flow = TokenFlow::new(&client, TokenRequest::authorization_code(verified));
    let tokens = drive_blocking(
        flow,
        || now,
        |http_request| {
            println!(
                "\n3. Token request: {} {}",
                http_request.method(),
                http_request.uri()
            );
            println!(
                "   body: {}",
                String::from_utf8_lossy(http_request.body()).replace("1fd827c4", "[code]")
            );
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "application/json;charset=UTF-8")
                .body(
                    br#"{"access_token":"CBfgN5Z5","token_type":"bearer","expires_in":"899","refresh_token":"9e0fccdb",
                        "scope":"target:b/OAUTH_TEST offline_access fund.read",
                        "BusinessName":"OAuth Test Business","BusinessCode":"OAUTH_TEST"}"#
                        .to_vec(),
                )
                .expect("valid response"))
        },
        |_| {},
    )
    ?
    .tokens;
    println!(
        "\n4. Tokens for business {} ({}), access token {:?}, expires in {} s",
        tokens
            .business_code()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        tokens.business_name().unwrap_or("?"),
        tokens.access_token,
        tokens.expires_in.unwrap_or_default()
    );
    let policy = RefreshPolicy::default();
    if let RefreshDecision::Use { refresh_at, .. } = policy.decide(&tokens, now) {
        let secs = refresh_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        println!("5. The refresh policy will renew it in {secs} s.");
    }
    Ok(())
}

/// Not a CSPRNG: the example has no RNG dependency. Real code passes getrandom.
fn pseudo_random(seed: SystemTime) -> impl FnMut(&mut [u8]) {
    let mut x = seed
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}
