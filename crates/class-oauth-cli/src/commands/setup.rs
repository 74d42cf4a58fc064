//! The set-up commands: the store key's rotation, the scope catalogue, discovery, and the profile config file.

use super::*;

/// `key rotate`: a new key, every grant re-encrypted with it, the old key retired. The
/// key file always holds a ring that opens every row: first the new key with the old
/// one behind it, then (once every grant is rewritten) the new key alone.
pub(super) fn rotate_key(ctx: &mut Ctx) -> Result<(), CliError> {
    let (_, source) = crate::keys::resolve()?;
    type Write = Box<dyn Fn(&str) -> Result<(), CliError>>;
    let (old_spec, write): (String, Write) = match &source {
        crate::keys::KeySource::File { path, .. } => {
            let path = path.clone();
            (
                crate::keys::read_spec(&path)?,
                Box::new(move |spec: &str| crate::keys::replace_key_file(&path, spec)),
            )
        }
        crate::keys::KeySource::Keyring { .. } => (
            crate::keys::keyring_spec()?,
            Box::new(crate::keys::replace_keyring_spec),
        ),
        crate::keys::KeySource::Environment => {
            return Err(CliError::config(
                "the store key comes from CLASS_OAUTH_STORE_KEY, which this command cannot rewrite",
                Some(
                    "put a new key first in CLASS_OAUTH_STORE_KEY (`class-oauth key generate`), keep the old one after a comma until the rows are rewritten, then drop it",
                ),
            ));
        }
    };
    // A key id the ring does not have yet (rows name the key that sealed them).
    let taken: Vec<&str> = old_spec
        .split(',')
        .filter_map(|k| k.split(':').next())
        .map(str::trim)
        .collect();
    let base = format!("k{}", class_oauth_core::time::to_unix(SystemTime::now()));
    let id = (0..)
        .map(|n| {
            if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| !taken.contains(&id.as_str()))
        .expect("an unused id exists");
    let new_key = class_oauth_store::EncryptionKey::generate(id)?;
    let new_spec = new_key.to_spec();
    // 1. New key first, old keys after: every row stays readable whatever happens next.
    write(&format!("{},{old_spec}", new_spec.as_str()))?;
    // 2. Rewrite every grant: a write seals with the current (new) key.
    let store = ctx.store()?;
    let mut rewritten = 0usize;
    for summary in block_on(store.list(&GrantQuery::all()))? {
        let Some(grant) = block_on(store.load(&summary.key))? else {
            continue;
        };
        block_on(store.update(
            &summary.key,
            &class_oauth_store::GrantUpdate::tokens(
                grant.version,
                &grant.tokens,
                grant.id_claims.as_ref(),
                &grant.status,
            ),
        ))?;
        rewritten += 1;
    }
    // 3. Retire the old key.
    write(new_spec.as_str())?;
    emit(
        ctx.cli.json,
        &json!({"rotated": true, "grants": rewritten, "kept_in": source.describe()}),
        &format!(
            "Rotated the store key in {}: {rewritten} grant(s) re-encrypted; the old key is retired.",
            source.describe()
        ),
    );
    Ok(())
}

pub(super) fn scopes(ctx: &Ctx) -> Result<(), CliError> {
    let rows: Vec<Value> = CATALOGUE
        .iter()
        .map(|e| json!({"scope": e.scope, "consent_text": e.consent_text, "description": e.description, "rule": e.rule, "confidence": format!("{:?}", e.confidence).to_lowercase()}))
        .collect();
    let mut human =
        String::from("Class scopes (consent text as Class shows it; * = unconfirmed mapping)\n");
    for e in CATALOGUE {
        let mark = if e.confidence == Confidence::Documented {
            " "
        } else {
            "*"
        };
        let _ = writeln!(
            human,
            "{mark} {:<28} {}",
            e.scope,
            e.consent_text.unwrap_or("-")
        );
        let _ = writeln!(
            human,
            "  {:<28} {}{}",
            "",
            e.description,
            e.rule.map(|r| format!(" Rule: {r}.")).unwrap_or_default()
        );
    }
    human.push_str("Rules: an access specifier needs exactly one target; class_profile needs openid; a refresh token needs offline_access.");
    emit(ctx.cli.json, &Value::Array(rows), &human);
    Ok(())
}

pub(super) fn discover(ctx: &mut Ctx) -> Result<(), CliError> {
    let env = ctx.env()?;
    let client = ClassClient::builder(
        env.clone(),
        ClientId::new(ctx.cli.client_id.clone().unwrap_or_default()),
    )
    .build()
    .map_err(|e| CliError::from(class_oauth_core::flow::DriveError::Transport(e)))?;
    let e = client.endpoints()?;
    let opt = |u: &Option<class_oauth_core::url::Url>| u.as_ref().map(ToString::to_string);
    let value = json!({
        "environment": env.name(),
        "source": e.source,
        "issuer": e.issuer.as_str(),
        "authorization_endpoint": e.authorization_endpoint.as_str(),
        "token_endpoint": e.token_endpoint.as_str(),
        "userinfo_endpoint": opt(&e.userinfo_endpoint),
        "revocation_endpoint": opt(&e.revocation_endpoint),
        "jwks_uri": opt(&e.jwks_uri),
        "api_base": opt(&e.api_base),
    });
    let mut human = format!(
        "{} endpoints, from the {}:\n",
        env.name(),
        e.source.describe()
    );
    for k in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "jwks_uri",
        "api_base",
    ] {
        let _ = writeln!(human, "  {k:<23} {}", value[k].as_str().unwrap_or("(none)"));
    }
    emit(ctx.cli.json, &value, human.trim_end());
    Ok(())
}

/// `class-oauth config ...`.
pub(super) fn configure(ctx: &mut Ctx, action: ConfigAction) -> Result<(), CliError> {
    let profile = ctx.cli.profile.clone();
    match action {
        ConfigAction::Set { key, value } => {
            let where_ = crate::config::set(&profile, &key, value, || ctx.stdin_line(0))?;
            emit(
                ctx.cli.json,
                &json!({"profile": profile, "key": key, "set": true}),
                &format!("Set {key} for profile `{profile}` ({where_})."),
            );
        }
        ConfigAction::Get { key } => {
            let value = crate::config::get(&profile, &key)?;
            if ctx.cli.json {
                println!(
                    "{}",
                    json!({"profile": profile, "key": key, "value": value})
                );
            } else if let Some(v) = value {
                println!("{v}");
            } else {
                return Err(CliError::config(
                    format!("profile `{profile}` has no {key} in the config"),
                    Some("set it with `class-oauth config set`"),
                ));
            }
        }
        ConfigAction::Unset { key } => {
            crate::config::unset(&profile, &key)?;
            emit(
                ctx.cli.json,
                &json!({"profile": profile, "key": key, "set": false}),
                &format!("Unset {key} for profile `{profile}`."),
            );
        }
        ConfigAction::List => {
            let p = crate::config::profile(&profile)?;
            let secret = crate::config::secret(&profile)?.is_some();
            let path = crate::config::path()?;
            emit(
                ctx.cli.json,
                &json!({"profile": profile, "file": path.display().to_string(), "env": p.env,
                    "client_id": p.client_id, "store": p.store, "client_secret_kept": secret}),
                &format!(
                    "Profile `{profile}` in {}:\n  env            {}\n  client-id      {}\n  store          {}\n  client-secret  {}",
                    path.display(),
                    or_dash(p.env.as_deref()),
                    or_dash(p.client_id.as_deref()),
                    or_dash(p.store.as_deref()),
                    if secret { "(kept)" } else { "-" },
                ),
            );
        }
    }
    Ok(())
}
