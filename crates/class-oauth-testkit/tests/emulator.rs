//! The library against the emulator: every endpoint, rotation, reuse detection,
//! revocation in "Partner Application Access", and faults.

use std::time::Duration;

use class_oauth_core::scope::Scopes;
use class_oauth_core::{
    ClientId, ClientSecret, EndpointSource, Environment, IssuerUrl, Password, RedirectUrl, Username,
};
use class_oauth_testkit::{ClassEmulator, EmulatorConfig, Fault};
use class_oauth_ureq::{AuthorizeOptions, Callback, ClassClient, TransportConfig, UreqTransport};

fn client(emulator: &ClassEmulator) -> ClassClient {
    ClassClient::builder(
        Environment::Custom(IssuerUrl::new(&emulator.issuer()).unwrap()),
        ClientId::new("demo-client"),
    )
    .secret(ClientSecret::new("demo-secret"))
    .http(
        UreqTransport::with_config(TransportConfig::default().timeout(Duration::from_millis(800)))
            .unwrap(),
    )
    .build()
    .unwrap()
}

fn scopes() -> Scopes {
    Scopes::parse("openid profile email class_profile target:b offline_access business.fund.list")
        .unwrap()
}

/// The code flow through the emulator's browser: the validated tokens and the callback
/// URL they were redeemed from.
fn sign_in(
    emulator: &ClassEmulator,
    c: &ClassClient,
) -> (class_oauth_core::flow::ValidatedTokens, String) {
    let (url, pending) = c
        .start_authorization(
            RedirectUrl::new("https://partner.example/class-callback").unwrap(),
            scopes(),
            AuthorizeOptions::default(),
        )
        .unwrap();
    let callback = emulator.browse(url.as_str()).unwrap();
    let granted = c
        .finish_authorization(pending, Callback::Url(&callback))
        .unwrap();
    (granted, callback)
}

#[test]
fn code_flow_refresh_userinfo_api_and_revocation() {
    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = client(&emulator);
    assert_eq!(c.endpoints().unwrap().source, EndpointSource::Discovery);
    let (granted, _) = sign_in(&emulator, &c);
    let claims = granted
        .id_claims
        .clone()
        .expect("the ID token was validated");
    assert_eq!(claims.sub, "4b3f7c2a-class-user-0001");
    assert_eq!(
        granted.tokens.business_code().unwrap().as_str(),
        "OAUTH_TEST"
    );
    assert_eq!(granted.tokens.expires_in, Some(899));
    assert_eq!(granted.tokens.token_type, "bearer");

    let me = c
        .userinfo(
            &granted.tokens.access_token,
            class_oauth_core::userinfo::ExpectedSubject::IdToken(&claims),
        )
        .unwrap();
    assert_eq!(
        me.class_role,
        ["Administrator", "Access Controller", "adviser"]
    );
    assert_eq!(me.business_code.as_deref(), Some("OAUTH_TEST"));

    let funds = c
        .api_get(&granted.tokens.access_token, "b/OAUTH_TEST/fund/list")
        .unwrap();
    assert_eq!(funds.data["Funds"][0]["Code"], "SMSF01");
    assert_eq!(funds.rate_limit.remaining, Some(499));
    let other = c
        .api_get(&granted.tokens.access_token, "b/SECOND_BIZ/fund/list")
        .unwrap_err();
    assert_eq!(
        other
            .protocol()
            .and_then(|e| e.status())
            .map(|s| s.as_u16()),
        Some(404)
    );

    // Refresh after a key rotation: the emulator published the next key before using it.
    emulator.rotate_keys();
    let refreshed = c.refresh(&granted.tokens, Some(&claims)).unwrap();
    assert_ne!(
        refreshed.tokens.refresh_token, granted.tokens.refresh_token,
        "rotated"
    );
    // Reusing the spent refresh token revokes the grant (reuse detection).
    let reuse = c.refresh(&granted.tokens, Some(&claims)).unwrap_err();
    assert!(reuse.requires_reauthorization());
    let after = c.refresh(&refreshed.tokens, Some(&claims)).unwrap_err();
    assert!(
        after.requires_reauthorization(),
        "the whole grant was revoked"
    );

    // A fresh grant, then the user revokes partner access in Class.
    let p = c
        .password(
            Username::new("sam@example.com"),
            Password::new("demo-password"),
            Scopes::parse("target:b/OAUTH_TEST offline_access fund.read").unwrap(),
        )
        .unwrap();
    emulator.revoke_partner_access("OAUTH_TEST");
    assert!(
        c.refresh(&p.tokens, None)
            .unwrap_err()
            .requires_reauthorization()
    );
    assert!(emulator.count("/connect/token") >= 5);
}

#[test]
fn denials_faults_and_no_discovery() {
    let mut config = EmulatorConfig::demo();
    config.discovery = false;
    config.expires_in_as_string = true;
    let emulator = ClassEmulator::start_blocking(config);
    let c = client(&emulator);
    assert_eq!(
        c.endpoints().unwrap().source,
        EndpointSource::PresetNoDiscovery
    );

    // The presets publish no key set: `openid` is refused before any code is spent.
    let err = c
        .start_authorization(
            RedirectUrl::new("https://partner.example/class-callback").unwrap(),
            scopes(),
            AuthorizeOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.protocol(),
        Some(&class_oauth_core::Error::InvalidInput(
            class_oauth_core::error::InputError::OpenIdWithoutKeySet
        ))
    );
    let plain = || Scopes::parse("target:b offline_access business.fund.list").unwrap();

    emulator.deny_next_authorization("consent_required");
    let (url, pending) = c
        .start_authorization(
            RedirectUrl::new("https://partner.example/class-callback").unwrap(),
            plain(),
            AuthorizeOptions::default(),
        )
        .unwrap();
    let callback = emulator.browse(url.as_str()).unwrap();
    let err = c
        .finish_authorization(pending, Callback::Url(&callback))
        .unwrap_err();
    assert_eq!(
        err.protocol()
            .and_then(|e| e.code())
            .map(|c| c.as_str().to_owned())
            .as_deref(),
        Some("consent_required")
    );
    assert_eq!(
        emulator.count("/connect/token"),
        0,
        "no token request after a denial"
    );

    // Unregistered redirect URI: no redirect at all.
    let (url, _) = c
        .start_authorization(
            RedirectUrl::new("https://evil.example/cb").unwrap(),
            plain(),
            AuthorizeOptions::default(),
        )
        .unwrap();
    assert!(emulator.browse(url.as_str()).is_err());

    let pw = || {
        c.password(
            Username::new("sam@example.com"),
            Password::new("demo-password"),
            Scopes::parse("target:b/OAUTH_TEST fund.read").unwrap(),
        )
    };
    emulator.inject("/connect/token", Fault::Html502, 1);
    let e = pw().unwrap_err();
    assert!(e.is_transient() && !e.requires_reauthorization(), "{e:?}");
    emulator.inject("/connect/token", Fault::Delay(Duration::from_secs(2)), 1);
    assert!(matches!(
        pw().unwrap_err(),
        class_oauth_ureq::DriveError::Transport(_)
    ));
    let ok = pw().unwrap();
    assert_eq!(
        ok.tokens.expires_in,
        Some(899),
        "expires_in sent as a string"
    );
    emulator.inject("/api/", Fault::TooManyRequests { reset_after: 1 }, 1);
    let funds = c
        .api_get(&ok.tokens.access_token, "b/OAUTH_TEST/fund/list")
        .unwrap();
    assert_eq!(funds.status.as_u16(), 200, "one 429 waited out");
    let bad = c
        .password(
            Username::new("sam@example.com"),
            Password::new("wrong"),
            Scopes::default(),
        )
        .unwrap_err();
    assert_eq!(
        bad.protocol()
            .and_then(|e| e.code())
            .map(|c| c.as_str().to_owned())
            .as_deref(),
        Some("invalid_grant")
    );
}

/// A reused authorization code revokes what it issued (RFC 6749 4.1.2): the grant's
/// refresh token stops working. The recording keeps request headers.
#[test]
fn a_reused_code_revokes_its_grant_and_headers_are_recorded() {
    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = client(&emulator);
    let redirect = "https://partner.example/class-callback";
    let (granted, callback) = sign_in(&emulator, &c);
    let token_request = emulator
        .requests()
        .into_iter()
        .find(|r| r.path == "/connect/token")
        .unwrap();
    let authorization = token_request
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(authorization.starts_with("Basic "), "headers recorded");

    // Someone replays the code.
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let replay = ureq::post(format!("{}/connect/token", emulator.issuer()))
        .header("authorization", &authorization)
        .config()
        .http_status_as_error(false)
        .build()
        .send_form([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
        ])
        .unwrap();
    assert_eq!(replay.status(), 400);
    // The grant the code issued is revoked.
    let err = c
        .refresh(&granted.tokens, granted.id_claims.as_ref())
        .unwrap_err();
    assert!(err.requires_reauthorization(), "{err:?}");
}

/// `browse` goes over HTTP like a browser: the authorization request is recorded and
/// faults injected on it apply.
#[test]
fn browse_goes_over_http() {
    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = client(&emulator);
    let (url, _pending) = c
        .start_authorization(
            RedirectUrl::new("https://partner.example/class-callback").unwrap(),
            scopes(),
            AuthorizeOptions::default(),
        )
        .unwrap();
    emulator.inject("/connect/authorize", Fault::Status(503), 1);
    assert!(emulator.browse(url.as_str()).is_err(), "the fault applied");
    let callback = emulator.browse(url.as_str()).unwrap();
    assert!(callback.starts_with("https://partner.example/class-callback?code="));
    assert_eq!(
        emulator.count("/connect/authorize"),
        2,
        "both were recorded"
    );
}

/// The emulator's clock can be moved: after 15 minutes the access token no longer opens
/// the API, after 30 days the refresh token is expired too.
#[test]
fn the_clock_can_be_advanced() {
    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = client(&emulator);
    let granted = c
        .password(
            Username::new("sam@example.com"),
            Password::new("demo-password"),
            Scopes::parse("target:b/OAUTH_TEST offline_access business.fund.list").unwrap(),
        )
        .unwrap();
    let call = |at: &class_oauth_core::AccessToken| c.api_get(at, "b/OAUTH_TEST/fund/list");
    assert!(call(&granted.tokens.access_token).is_ok());
    emulator.advance_clock(Duration::from_secs(960));
    assert!(
        call(&granted.tokens.access_token).is_err(),
        "expired at the emulator"
    );
    let refreshed = c.refresh(&granted.tokens, None).unwrap();
    assert!(call(&refreshed.tokens.access_token).is_ok());
    emulator.advance_clock(Duration::from_secs(31 * 24 * 3600));
    assert!(
        c.refresh(&refreshed.tokens, None)
            .unwrap_err()
            .requires_reauthorization()
    );
}

/// The refresh-token mode: one-time (Class) revokes on reuse; a grace window accepts a
/// spent token for a while, then revokes.
#[test]
fn refresh_token_modes() {
    let grant = |emulator: &ClassEmulator| {
        client(emulator)
            .password(
                Username::new("sam@example.com"),
                Password::new("demo-password"),
                Scopes::parse("target:b/OAUTH_TEST offline_access business.fund.list").unwrap(),
            )
            .unwrap()
            .tokens
    };
    // One-time: the spent token revokes the grant, so even the new one stops working.
    let one_time = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let c = client(&one_time);
    let first = grant(&one_time);
    let second = c.refresh(&first, None).unwrap().tokens;
    assert!(
        c.refresh(&first, None)
            .unwrap_err()
            .requires_reauthorization()
    );
    assert!(c.refresh(&second, None).is_err(), "the grant was revoked");

    // A grace window: the spent token works again within it, not after.
    let mut config = EmulatorConfig::demo();
    config = config.refresh_token_mode(class_oauth_testkit::RefreshTokenMode::ReusableWithin(
        Duration::from_secs(60),
    ));
    let graceful = ClassEmulator::start_blocking(config);
    let c = client(&graceful);
    let first = grant(&graceful);
    let second = c.refresh(&first, None).unwrap().tokens;
    let again = c.refresh(&first, None).unwrap().tokens;
    assert_ne!(again.access_token, second.access_token);
    graceful.advance_clock(Duration::from_secs(61));
    assert!(
        c.refresh(&first, None)
            .unwrap_err()
            .requires_reauthorization()
    );
}

/// A seeded grant refreshes like a signed-in one: its refresh token is one-time, a reuse
/// revokes the grant, and the counts say so. The log can be switched off.
#[test]
fn seeded_grants_and_refresh_counts() {
    use class_oauth_core::flow::TokenFlow;
    use class_oauth_core::token::TokenRequest;
    use class_oauth_core::{Client, RefreshToken};

    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo().without_request_log());
    let c = client(&emulator);
    let core = Client::new(
        ClientId::new("demo-client"),
        (*c.endpoints().unwrap()).clone(),
    )
    .with_secret(ClientSecret::new("demo-secret"));
    let refresh = |refresh_token: &str| {
        c.drive(TokenFlow::new(
            &core,
            TokenRequest::refresh_token(RefreshToken::new(refresh_token), Scopes::default()),
        ))
    };
    let seeded = emulator.seed_grant("demo-client", "OAUTH_TEST", "target:b offline_access");
    assert!(emulator.is_current_refresh_token(&seeded));
    let refreshed = refresh(&seeded).unwrap().tokens;
    assert_eq!(refreshed.business_code().unwrap().as_str(), "OAUTH_TEST");
    assert!(!emulator.is_current_refresh_token(&seeded), "spent");
    let next = refreshed
        .refresh_token
        .as_ref()
        .unwrap()
        .secret()
        .to_owned();
    assert!(emulator.is_current_refresh_token(&next));
    let reused = refresh(&seeded).unwrap_err();
    assert!(
        matches!(&reused, class_oauth_ureq::DriveError::Protocol(e) if e.requires_reauthorization()),
        "{reused:?}"
    );
    assert!(
        !emulator.is_current_refresh_token(&next),
        "the reuse revoked the grant"
    );
    let counts = emulator.refresh_counts();
    assert_eq!(
        (
            counts.refreshes,
            counts.invalid_grants,
            counts.reuse_detected
        ),
        (2, 1, 1)
    );
    assert!(emulator.requests().is_empty(), "no request log");
}
