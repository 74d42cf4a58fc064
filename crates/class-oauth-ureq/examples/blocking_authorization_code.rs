//! The authorization-code flow end to end: print the URL, paste the callback URL the
//! browser lands on, get validated tokens, call UserInfo with the `sub` check.
//!
//! Without `CLASS_CLIENT_ID` it runs offline against the Class emulator. With Class:
//! ```sh
//! CLASS_OAUTH_ENV=pie CLASS_CLIENT_ID=... CLASS_CLIENT_SECRET=... \
//!   CLASS_REDIRECT_URI=https://your.app/class-callback cargo run -p class-oauth-ureq --example blocking_authorization_code
//! ```

use std::io::BufRead;

use class_oauth_core::scope::{AccessSpecifier, Scopes, Target};
use class_oauth_core::{ClientId, ClientSecret, Environment, RedirectUrl};
use class_oauth_ureq::{AuthorizeOptions, Callback, ClassClient, ExpectedSubject};

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
    let scopes = Scopes::builder()
        .openid()
        .class_profile()
        .target(Target::AnyBusiness)
        .access(AccessSpecifier::FundRead)
        .offline_access()
        .build()?;
    let (url, pending) = client.start_authorization(
        RedirectUrl::new(&target.var("CLASS_REDIRECT_URI")?)?,
        scopes,
        AuthorizeOptions::default(),
    )?;
    let line = match target.consent(url.as_str()) {
        Some(offline) => offline?,
        None => {
            println!(
                "Open this URL, consent, and paste the URL the browser is sent back to:\n{url}"
            );
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    let granted = client.finish_authorization(pending, Callback::Url(line.trim()))?;
    let sub = granted.id_claims.as_ref().map(|c| c.sub.clone());
    println!(
        "business {:?}, user {:?}",
        granted.tokens.business_code(),
        sub
    );
    let me = client.userinfo(
        &granted.tokens.access_token,
        granted
            .id_claims
            .as_ref()
            .map_or(ExpectedSubject::NoIdToken, ExpectedSubject::IdToken),
    )?;
    println!("userinfo: {} roles {:?}", me.sub, me.class_role);
    Ok(())
}
