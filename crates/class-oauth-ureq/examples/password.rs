//! The password grant (Class customers' private clients reaching their own data), then a
//! Class API call with the token.
//!
//! ```sh
//! CLASS_OAUTH_ENV=pie CLASS_CLIENT_ID=... CLASS_CLIENT_SECRET=... CLASS_USERNAME=... CLASS_PASSWORD=... \
//!   CLASS_SCOPE="target:b/MYBIZ business.fund.list" cargo run -p class-oauth-ureq --example password
//! ```
//! `CLASS_OAUTH_ENV` takes `production`, `pie`, or an issuer URL (the emulator's, say).

use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
use class_oauth_ureq::ClassClient;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = Environment::parse(&var("CLASS_OAUTH_ENV").unwrap_or_else(|_| "pie".into()))?;
    let client = ClassClient::builder(env, ClientId::new(var("CLASS_CLIENT_ID")?))
        .secret(ClientSecret::new(var("CLASS_CLIENT_SECRET")?))
        .build()?;
    let scopes = Scopes::parse(&var("CLASS_SCOPE")?)?;
    let granted = client.password(
        Username::new(var("CLASS_USERNAME")?),
        Password::new(var("CLASS_PASSWORD")?),
        scopes,
    )?;
    let tokens = &granted.tokens;
    println!(
        "business {:?}, scope {}, expires {:?}",
        tokens.business_code(),
        tokens.scopes,
        tokens.expires_at
    );
    if let Some(code) = tokens.business_code() {
        let funds = client.api_get(&tokens.access_token, &format!("b/{code}/fund/list"))?;
        println!("fund list: {}", funds.data);
    }
    Ok(())
}
