//! The emulator on a loopback port, and the tour against it (feature `demo`).

use super::*;

/// `class-oauth emulator`: the demo emulator on a loopback port until interrupted.
pub(super) fn emulator(json: bool, port: u16) -> Result<(), CliError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| CliError::config(format!("cannot listen on 127.0.0.1:{port}: {e}"), None))?;
    let emulator = class_oauth_testkit::ClassEmulator::start_blocking_on(
        listener,
        class_oauth_testkit::EmulatorConfig::demo(),
    );
    let issuer = emulator.issuer();
    emit(
        json,
        &json!({"issuer": issuer, "client_id": "demo-client", "client_secret": "demo-secret",
            "username": "sam@example.com", "password": "demo-password",
            "redirect_uris": ["http://127.0.0.1:8765/callback", "https://partner.example/class-callback"]}),
        &format!(
            "Class emulator at {issuer} (discovery at {issuer}/.well-known/openid-configuration)\n\
             client demo-client / demo-secret; user sam@example.com / demo-password; businesses OAUTH_TEST, SECOND_BIZ\n\
             redirect URIs http://127.0.0.1:8765/callback, https://partner.example/class-callback\n\
             Its keys are public: trust nothing it signs outside tests. Ctrl-C stops it."
        ),
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::park();
    }
}

/// The tour, against the built-in emulator: code flow with ID-token validation, the
/// token manager with an encrypted SQLite store, refresh, UserInfo, a Class API call,
/// revocation.
pub(super) fn demo(ctx: &mut Ctx) -> Result<(), CliError> {
    let json = ctx.cli.json;
    let say = |step: &str| eprintln!("\n== {step}");
    let emulator = class_oauth_testkit::ClassEmulator::start_blocking(
        class_oauth_testkit::EmulatorConfig::demo(),
    );
    let issuer = emulator.issuer();
    eprintln!(
        "class-oauth demo: a Class emulator is running at {issuer} (client demo-client, user sam@example.com, business OAUTH_TEST)."
    );

    say("1. Discovery");
    let env = Environment::parse(&issuer)?;
    let client = ClassClient::builder(env, ClientId::new("demo-client"))
        .secret(ClientSecret::new("demo-secret"))
        .build()
        .map_err(|e| CliError::from(class_oauth_core::flow::DriveError::Transport(e)))?;
    let endpoints = client.endpoints()?;
    eprintln!(
        "endpoints from the {}: token {} userinfo {}",
        endpoints.source.describe(),
        endpoints.token_endpoint,
        endpoints
            .userinfo_endpoint
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );

    say("2. Authorization-code flow (state, nonce, PKCE S256)");
    let scopes = scopes_from(&[], DEFAULT_SCOPES)?;
    eprint!("requesting:\n{}", consent_lines(&scopes));
    let (url, pending) = client.start_authorization(
        RedirectUrl::new("https://partner.example/class-callback")?,
        scopes,
        AuthorizeOptions::default(),
    )?;
    eprintln!(
        "authorization URL: {}...",
        &url.as_str()[..url.as_str().len().min(90)]
    );
    let callback = emulator
        .browse(url.as_str())
        .map_err(CliError::validation)?;
    eprintln!(
        "the user consented (business picked: OAUTH_TEST); Class redirected to the callback with code, state and iss"
    );
    let granted = client.finish_authorization(pending, Callback::Url(&callback))?;

    say("3. Stored per tenant, encrypted at rest (AES-256-GCM)");
    // With --store, the demo writes where it is told (with the CLI's own key); else a
    // throw-away SQLite file.
    let dir = std::env::temp_dir().join(format!("class-oauth-demo-{}", std::process::id()));
    let store: Store = if ctx.cli.store.is_some() {
        ctx.store()?
    } else {
        let key = class_oauth_store::EncryptionKey::generate("demo")?;
        Arc::new(SqliteStore::open(
            dir.join("grants.sqlite3"),
            Encryption::Keys(class_oauth_store::KeyRing::new(key)),
        )?)
    };
    eprintln!(
        "store: {}",
        ctx.cli
            .store
            .as_deref()
            .unwrap_or("a temporary SQLite file (pass --store to keep it elsewhere)")
    );
    let manager: Manager = TokenManager::builder_shared(client.clone(), store.clone())
        .on_event(|e| eprintln!("   event: {e}"))
        .build();
    let tenant = TenantKey::new(&ClientId::new("demo-client"), "OAUTH_TEST");
    let grant = manager.store_tokens(&tenant, &granted)?;
    eprintln!("{}", describe_grant("signed in:", &grant));

    say(
        "4. A valid token from the manager (cached), then a forced refresh (one-time refresh token rotated)",
    );
    let cached = manager.access_token(&tenant)?;
    eprintln!(
        "cached access token: {} bytes (never printed)",
        cached.secret().len()
    );
    let refreshed = manager.force_refresh(&tenant, grant.version)?;
    eprintln!(
        "refreshed: version {} -> {}, new refresh token stored before the new access token was used",
        grant.version, refreshed.version
    );

    if let Some(h) = manager
        .grants(&GrantQuery::all())?
        .iter()
        .find(|h| h.key == tenant)
    {
        eprintln!(
            "grant health (`class-oauth grants`): {}, refresh token {} old, lapses if unused by {}",
            h.status.as_parts().0,
            h.refresh_token_age
                .map_or_else(|| "?".to_owned(), |d| age(d.as_secs())),
            h.lapses_at.map_or_else(
                || "-".to_owned(),
                |t| date(class_oauth_core::time::to_unix(t))
            )
        );
    }

    say("5. UserInfo (sub checked against the ID token)");
    let sub = refreshed.id_claims.as_ref().map(|c| c.sub.clone());
    let expected = refreshed
        .id_claims
        .as_ref()
        .map_or(ExpectedSubject::NoIdToken, ExpectedSubject::IdToken);
    let info = client.userinfo(&refreshed.tokens.access_token, expected)?;
    eprintln!(
        "sub {} name {} business {} roles {}",
        info.sub,
        or_dash(info.name.as_deref()),
        or_dash(info.business_code.as_deref()),
        info.class_role.join(", ")
    );

    say("6. A Class API call (Bearer, vendor Accept header, Errors envelope, rate-limit headers)");
    let funds = manager.api_get(&tenant, "b/OAUTH_TEST/fund/list")?;
    eprintln!(
        "{} funds; {} calls left this minute",
        funds.data["Funds"].as_array().map_or(0, Vec::len),
        funds
            .rate_limit
            .remaining
            .map_or_else(|| "?".into(), |r| r.to_string())
    );

    say("7. Revocation (RFC 7009), then the grant is gone");
    if let Some(rt) = refreshed.tokens.refresh_token.clone() {
        client.revoke(RevocationRequest::RefreshToken(rt))?;
    }
    let after = client
        .refresh(&refreshed.tokens, refreshed.id_claims.as_ref())
        .map(|_| ())
        .map_err(CliError::from);
    eprintln!(
        "refresh after revocation: {}",
        after.as_ref().err().map_or_else(
            || "unexpectedly worked".to_owned(),
            |e| format!("{} (exit code {})", e.message, e.exit_code)
        )
    );
    block_on(store.delete(&tenant))?;
    let _ = std::fs::remove_dir_all(&dir);

    let requests = emulator.requests();
    let value = json!({
        "issuer": issuer,
        "business_code": refreshed.tokens.business_code().map(|c| c.to_string()),
        "subject": sub,
        "refreshed": refreshed.version > grant.version,
        "funds": funds.data["Funds"].as_array().map_or(0, Vec::len),
        "revoked": after.is_err(),
        "requests": requests.len(),
    });
    emit(
        json,
        &value,
        &format!(
            "\nDemo complete: {} requests to the emulator, every response validated. Next: `class-oauth --env pie --client-id ... login`.",
            requests.len()
        ),
    );
    if after.is_ok() {
        return Err(CliError::validation("the revoked grant still refreshed"));
    }
    Ok(())
}
