//! The password grant (Class customers' private clients reaching their own data), then a
//! Class API call with the token.
//!
//! Without `CLASS_CLIENT_ID` it runs offline against the Class emulator. With Class:
//! ```sh
//! CLASS_OAUTH_ENV=pie CLASS_CLIENT_ID=... CLASS_CLIENT_SECRET=... CLASS_USERNAME=... CLASS_PASSWORD=... \
//!   CLASS_SCOPE="target:b/MYBIZ business.fund.list" cargo run -p class-oauth-ureq --example blocking_password
//! ```
//! `CLASS_OAUTH_ENV` takes `production`, `pie`, or an issuer URL (the emulator's, say).

use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
use class_oauth_ureq::ClassClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Class with CLASS_CLIENT_ID and friends set; the Class emulator otherwise.
    let target = class_oauth_testkit::example::Target::start_blocking();
    let env = Environment::parse(
        &target
            .var("CLASS_OAUTH_ENV")
            .unwrap_or_else(|_| "pie".into()),
    )?;
    let client = ClassClient::builder(env, ClientId::new(target.var("CLASS_CLIENT_ID")?))
        .secret(ClientSecret::new(target.var("CLASS_CLIENT_SECRET")?))
        .build()?;
    let scopes = Scopes::parse(&target.var("CLASS_SCOPE")?)?;
    let granted = client.password(
        Username::new(target.var("CLASS_USERNAME")?),
        Password::new(target.var("CLASS_PASSWORD")?),
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
