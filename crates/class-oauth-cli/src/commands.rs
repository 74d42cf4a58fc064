//! The commands, on the library's own layers: the blocking client (ureq), the token
//! manager, and the stores.

use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use class_oauth_core::authorize::Prompt;
use class_oauth_core::flow::ValidatedTokens;
use class_oauth_core::revocation::RevocationRequest;
use class_oauth_core::scope::{CATALOGUE, Confidence, Scope, Scopes};
use class_oauth_core::userinfo::ExpectedSubject;
use class_oauth_core::{ClientId, ClientSecret, Environment, Password, RedirectUrl, Username};
use class_oauth_manager::Settings;
use class_oauth_manager::blocking::TokenManager;
use class_oauth_store::{
    Encryption, GrantQuery, PostgresStore, RecoveryFile, SqliteStore, StoredGrant, TenantKey,
    TokenStore,
};
use class_oauth_ureq::block_on;
use class_oauth_ureq::{AuthorizeOptions, Callback, ClassClient, UreqTransport};
use serde_json::{Value, json};

use crate::output::{CliError, emit};
use crate::{AuthStep, Cli, Command, ConfigAction, KeyAction};

const DEFAULT_SCOPES: &str =
    "openid profile email class_profile target:b offline_access business.fund.list";

type Store = Arc<dyn TokenStore>;
type Manager = TokenManager<UreqTransport, dyn TokenStore>;

struct Ctx {
    cli: Cli,
    stdin_lines: Option<Vec<String>>,
    /// Opened once per run (a pool and the migrations), shared by every step.
    store: Option<Store>,
    /// Beside the store: rotated tokens an earlier run could not write.
    recovery: Option<RecoveryFile>,
    /// One manager per run, so that what it holds at the end can be kept.
    manager: Option<Manager>,
}

impl Ctx {
    /// All of stdin (a request body), when no secret is read from it.
    fn stdin_all(&mut self) -> Result<Vec<u8>, CliError> {
        if self.cli.client_secret_stdin {
            return Err(CliError::usage(
                "--data @- and --client-secret-stdin both read stdin: pass the body as @FILE",
            ));
        }
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| CliError::usage(format!("reading stdin: {e}")))?;
        Ok(body)
    }

    /// Lines of stdin, read once (client secret first, then the password).
    fn stdin_line(&mut self, index: usize) -> Result<String, CliError> {
        if self.stdin_lines.is_none() {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::usage(format!("reading stdin: {e}")))?;
            self.stdin_lines = Some(text.lines().map(str::to_owned).collect());
        }
        self.stdin_lines
            .as_ref()
            .and_then(|l| l.get(index).cloned())
            .ok_or_else(|| CliError::usage("stdin ended before the expected secret"))
    }

    fn env(&self) -> Result<Environment, CliError> {
        Environment::parse(self.cli.environment.as_deref().unwrap_or("pie")).map_err(|e| {
            CliError::config(
                format!("--env: {e}"),
                Some("use production, pie, or an https issuer URL (http only on loopback)"),
            )
        })
    }

    fn client_id(&self) -> Result<ClientId, CliError> {
        self.cli
            .client_id
            .clone()
            .map(ClientId::new)
            .ok_or_else(|| {
                CliError::config(
                    "no client id",
                    Some("set CLASS_CLIENT_ID or pass --client-id"),
                )
            })
    }

    fn secret(&mut self) -> Result<Option<ClientSecret>, CliError> {
        if self.cli.client_secret_stdin {
            return self
                .stdin_line(0)
                .map(|s| Some(ClientSecret::new(s.trim())));
        }
        match std::env::var("CLASS_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
        {
            Some(s) => Ok(Some(ClientSecret::new(s))),
            // The one `config set client-secret` kept for this profile.
            None => crate::config::secret(&self.cli.profile),
        }
    }

    fn client(&mut self) -> Result<ClassClient, CliError> {
        let env = self.env()?;
        let id = self.client_id()?;
        let mut b = ClassClient::builder(env, id);
        if let Some(s) = self.secret()? {
            b = b.secret(s);
        }
        b.build()
            .map_err(|e| CliError::from(class_oauth_core::flow::DriveError::Transport(e)))
    }

    fn store(&mut self) -> Result<Store, CliError> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let (store, recovery) = self.open_store()?;
        self.store = Some(store.clone());
        self.recovery = Some(recovery);
        Ok(store)
    }

    fn open_store(&self) -> Result<(Store, RecoveryFile), CliError> {
        let (ring, source) = crate::keys::resolve()?;
        if let crate::keys::KeySource::File { created: true, .. }
        | crate::keys::KeySource::Keyring { created: true } = &source
        {
            eprintln!("class-oauth: created the store key: {}", source.describe());
        }
        let encryption = Encryption::Keys(ring.clone());
        let location = match &self.cli.store {
            Some(s) => s.clone(),
            None => {
                let dir = dirs::data_dir()
                    .ok_or_else(|| CliError::config("no user data directory; pass --store", None))?
                    .join("class-oauth");
                crate::keys::create_private_dir(&dir)?;
                dir.join("grants.sqlite3").to_string_lossy().into_owned()
            }
        };
        let is_postgres =
            location.starts_with("postgres://") || location.starts_with("postgresql://");
        if !is_postgres && self.cli.store.is_some() {
            // An explicit path is taken as given: a missing directory is a typo far more
            // often than a wish to create one.
            let parent = std::path::Path::new(&location)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent.filter(|d| !d.is_dir()) {
                return Err(CliError::config(
                    format!(
                        "the directory of --store `{location}` does not exist: {}",
                        dir.display()
                    ),
                    Some("create it first, or leave --store out to use the default location"),
                ));
            }
        }
        let recovery_path = if is_postgres {
            let dir = dirs::data_dir()
                .ok_or_else(|| {
                    CliError::config("no user data directory for the recovery file", None)
                })?
                .join("class-oauth");
            crate::keys::create_private_dir(&dir)?;
            dir.join("postgres.recovery")
        } else {
            std::path::PathBuf::from(format!("{location}.recovery"))
        };
        let store: Store = if is_postgres {
            Arc::new(PostgresStore::connect_blocking(&location, 4, encryption)?)
        } else {
            Arc::new(SqliteStore::open(&location, encryption)?)
        };
        Ok((
            store,
            RecoveryFile::new(recovery_path, Encryption::Keys(ring)),
        ))
    }

    fn tenant(&self) -> Result<TenantKey, CliError> {
        Ok(TenantKey::new(&self.client_id()?, self.cli.profile.clone()))
    }
}

fn scopes_from(args: &[String], default: &str) -> Result<Scopes, CliError> {
    let text = if args.is_empty() {
        default.to_owned()
    } else {
        args.join(" ")
    };
    let scopes = Scopes::parse(&text)?;
    // The Class grammar: a scope this library does not know is almost always a typo
    // (Class refuses unknown scopes with invalid_scope after the user has signed in).
    for scope in &scopes {
        if let Scope::Other(unknown) = scope {
            let suggestion = CATALOGUE
                .iter()
                .map(|e| (strsim::levenshtein(unknown, e.scope), e.scope))
                .min()
                .filter(|(distance, _)| *distance <= unknown.len().max(4) / 2)
                .map(|(_, s)| s);
            let mut err = CliError::usage(format!("unknown scope `{unknown}`"));
            err.hint = Some(match suggestion {
                Some(s) => format!("did you mean `{s}`? `class-oauth scopes` lists them all"),
                None => "`class-oauth scopes` lists the Class scopes".into(),
            });
            return Err(err);
        }
    }
    scopes.validate()?;
    Ok(scopes)
}

fn consent_lines(scopes: &Scopes) -> String {
    let mut out = String::new();
    for s in scopes {
        let text = match s {
            Scope::Target(t) => match t.business_code() {
                Some(code) => format!("business {code}"),
                None => "the user picks the business".to_owned(),
            },
            other => other
                .consent_text()
                .unwrap_or("(no consent text published)")
                .to_owned(),
        };
        let _ = writeln!(out, "  {:<22} {text}", s.to_string());
    }
    out
}

fn summary(grant: &StoredGrant) -> Value {
    let t = &grant.tokens;
    json!({
        "business_code": t.business_code().map(|c| c.to_string()),
        "business_name": t.business_name(),
        "scope": t.scopes.to_string(),
        "expires_at": t.expires_at.map(class_oauth_core::time::to_unix),
        "has_refresh_token": t.refresh_token.is_some(),
        "subject": grant.id_claims.as_ref().map(|c| c.sub.clone()),
        "version": grant.version,
    })
}

/// A Unix time as a date people read (`2026-11-27T09:38:35Z`).
fn date(unix: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .to_string()
}

/// An optional value for people: the value, or a dash.
fn or_dash(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

fn describe_grant(title: &str, grant: &StoredGrant) -> String {
    let t = &grant.tokens;
    let mut out = format!("{title}\n");
    let _ = writeln!(
        out,
        "business: {} ({})",
        t.business_code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into()),
        t.business_name().unwrap_or("name not sent")
    );
    if let Some(exp) = t.expires_at {
        let secs = exp
            .duration_since(SystemTime::now())
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "access token: valid until {} ({secs} s){}",
            date(class_oauth_core::time::to_unix(exp)),
            if t.refresh_token.is_some() {
                "; refresh token stored"
            } else {
                "; no refresh token (offline_access not granted)"
            }
        );
    }
    if let Some(c) = &grant.id_claims {
        let _ = writeln!(
            out,
            "signed-in user (ID token validated): {}{}, issuer {}, signed in at {}{}",
            c.sub,
            c.email
                .as_deref()
                .map(|e| format!(" <{e}>"))
                .unwrap_or_default(),
            c.iss,
            c.auth_time.map_or_else(|| "-".to_owned(), date),
            c.amr
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(|a| format!(" with {}", a.join(", ")))
                .unwrap_or_default()
        );
    }
    let _ = write!(out, "granted scope:\n{}", consent_lines(&t.scopes));
    out
}

/// The run's manager. A short-lived process keeps trying to write rotated tokens for a
/// bounded time (4 attempts), then keeps them in the recovery file (see [`keep_held`]);
/// whatever an earlier run left there is written before anything else.
fn manager(ctx: &mut Ctx) -> Result<Manager, CliError> {
    if let Some(m) = &ctx.manager {
        return Ok(m.clone());
    }
    let mut settings = Settings::default();
    settings.persist_retries = 3;
    settings.persist_backoff = Duration::from_millis(100);
    let m = TokenManager::builder_shared(ctx.client()?, ctx.store()?)
        .settings(settings)
        .build();
    ctx.manager = Some(m.clone());
    if let Some(recovery) = ctx.recovery.clone() {
        for (key, held) in recovery.entries()? {
            match m.write_held(&key, held) {
                Ok(()) => recovery.forget(&key)?,
                Err(e) => {
                    return Err(CliError::store(format!(
                        "the rotated tokens an earlier run kept in {} still cannot be written to the store ({e}); they stay there: fix the store and run the command again",
                        recovery.path().display()
                    )));
                }
            }
        }
    }
    Ok(m)
}

/// At the end of a run: rotated tokens the store would not take are not left to die with
/// the process. They are sealed into the recovery file (0600, beside the store), and the
/// run fails with exit 7 saying the grant is at risk.
fn keep_held(ctx: &Ctx, result: Result<(), CliError>) -> Result<(), CliError> {
    let Some(m) = &ctx.manager else {
        return result;
    };
    let held = m.held();
    if held.is_empty() {
        return result;
    }
    let cause = result
        .err()
        .map_or_else(|| "the store refused the write".to_owned(), |e| e.message);
    let Some(recovery) = &ctx.recovery else {
        return Err(CliError::store(format!(
            "the grant is lost: Class rotated its refresh token and the store could not keep the new one ({cause})"
        )));
    };
    for (key, h) in &held {
        if let Err(e) = recovery.keep(key, h) {
            return Err(CliError::store(format!(
                "the grant is lost: Class rotated its refresh token, the store could not keep the new one ({cause}), and neither could {} ({e})",
                recovery.path().display()
            )));
        }
    }
    Err(CliError::store(format!(
        "the grant is at risk: Class rotated its refresh token and the store could not keep the new one ({cause}); it is sealed in {}, which the next class-oauth command writes to the store first: keep that file, and fix the store",
        recovery.path().display()
    )))
}

fn store_login(ctx: &mut Ctx, granted: &ValidatedTokens) -> Result<(), CliError> {
    let m = manager(ctx)?;
    let grant = m.store_tokens(&ctx.tenant()?, granted)?;
    emit(
        ctx.cli.json,
        &summary(&grant),
        &describe_grant(
            &format!("Signed in; stored as profile `{}`.", ctx.cli.profile),
            &grant,
        ),
    );
    Ok(())
}

/// Runs the command.
pub(crate) fn run(mut cli: Cli) -> Result<(), CliError> {
    if !matches!(
        cli.command,
        Command::Config { .. } | Command::Completions { .. } | Command::Man
    ) {
        // The profile's config under the flags and the environment.
        let p = crate::config::profile(&cli.profile)?;
        cli.environment = cli.environment.or(p.env);
        cli.client_id = cli.client_id.or(p.client_id);
        cli.store = cli.store.or(p.store);
    }
    let mut ctx = Ctx {
        cli,
        stdin_lines: None,
        store: None,
        recovery: None,
        manager: None,
    };
    let result = dispatch(&mut ctx);
    keep_held(&ctx, result)
}

fn dispatch(ctx: &mut Ctx) -> Result<(), CliError> {
    match std::mem::replace(&mut ctx.cli.command, Command::Scopes) {
        Command::Scopes => scopes(ctx),
        Command::Discover => discover(ctx),
        Command::Login {
            scopes,
            redirect_uri,
            no_browser,
            prompt,
            login_hint,
            timeout,
        } => login(
            ctx,
            &LoginArgs {
                scopes,
                redirect_uri,
                no_browser,
                prompt,
                login_hint,
                timeout: Duration::from_secs(timeout),
            },
        ),
        Command::Auth {
            step:
                AuthStep::Start {
                    scopes,
                    redirect_uri,
                    prompt,
                    login_hint,
                },
        } => auth_start(ctx, &scopes, &redirect_uri, prompt, login_hint),
        Command::Auth {
            step: AuthStep::Finish { callback_url },
        } => auth_finish(ctx, &callback_url),
        Command::Password {
            username,
            password_stdin,
            scopes,
        } => password(ctx, &username, password_stdin, &scopes),
        Command::Token => token(ctx),
        Command::Refresh => refresh(ctx),
        Command::Userinfo => userinfo(ctx),
        Command::Revoke => revoke(ctx),
        Command::Profiles => profiles(ctx),
        Command::Grants { status } => grants(ctx, status.as_deref()),
        Command::Api {
            path,
            method,
            data,
            query,
            include,
            action_version,
        } => api(
            ctx,
            &ApiArgs {
                path,
                method,
                data,
                query,
                include,
                action_version,
            },
        ),
        #[cfg(feature = "demo")]
        Command::Demo => demo(ctx),
        #[cfg(feature = "demo")]
        Command::Emulator { port } => emulator(ctx.cli.json, port),
        #[cfg(not(feature = "demo"))]
        Command::Demo | Command::Emulator { .. } => Err(CliError::usage(
            "this class-oauth was built without the demo and the emulator (cargo feature `demo`)",
        )),
        Command::Key {
            action: KeyAction::Show,
        } => {
            let (_, source) = crate::keys::resolve()?;
            let (kind, path) = match &source {
                crate::keys::KeySource::Environment => ("environment", None),
                crate::keys::KeySource::Keyring { .. } => ("keyring", None),
                crate::keys::KeySource::File { path, .. } => {
                    ("file", Some(path.display().to_string()))
                }
            };
            emit(
                ctx.cli.json,
                &json!({"source": kind, "path": path}),
                &format!("The store key is kept in {}.", source.describe()),
            );
            Ok(())
        }
        Command::Key {
            action: KeyAction::Rotate,
        } => rotate_key(ctx),
        Command::Config { action } => configure(ctx, action),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "class-oauth", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::usage(format!("writing the manual page: {e}")))
        }
        Command::Key {
            action: KeyAction::Generate,
        } => {
            let id = format!("k{}", class_oauth_core::time::to_unix(SystemTime::now()));
            let key = class_oauth_store::EncryptionKey::generate(id)?;
            let spec = key.to_spec();
            if ctx.cli.json {
                println!("{}", json!({"key": spec.as_str()}));
            } else {
                // The key alone on stdout, so `$(class-oauth key generate)` captures it.
                eprintln!(
                    "A new store key (keep it secret; export it as CLASS_OAUTH_STORE_KEY, older keys after a comma to keep reading rows they sealed):"
                );
                println!("{}", spec.as_str());
            }
            Ok(())
        }
    }
}

/// `key rotate`: a new key, every grant re-encrypted with it, the old key retired. The
/// key file always holds a ring that opens every row: first the new key with the old
/// one behind it, then (once every grant is rewritten) the new key alone.
fn rotate_key(ctx: &mut Ctx) -> Result<(), CliError> {
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

fn scopes(ctx: &Ctx) -> Result<(), CliError> {
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

fn discover(ctx: &mut Ctx) -> Result<(), CliError> {
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

fn options(
    prompt: Option<String>,
    login_hint: Option<String>,
) -> Result<AuthorizeOptions, CliError> {
    let mut o = AuthorizeOptions::default();
    o.prompt = prompt.as_deref().map(Prompt::parse).transpose()?;
    o.login_hint = login_hint;
    Ok(o)
}

/// The `login` command's arguments.
struct LoginArgs {
    scopes: Vec<String>,
    redirect_uri: String,
    no_browser: bool,
    prompt: Option<String>,
    login_hint: Option<String>,
    timeout: Duration,
}

/// The page the browser sees at the end of a login.
fn page(status: u16, title: &str, text: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>",
        escape(title),
        escape(text)
    );
    let header = |name: &str, value: &str| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
            .expect("static header names and values are valid")
    };
    tiny_http::Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Referrer-Policy", "no-referrer"))
        .with_header(header("Cache-Control", "no-store"))
}

fn login(ctx: &mut Ctx, args: &LoginArgs) -> Result<(), CliError> {
    let redirect = RedirectUrl::new(&args.redirect_uri)?;
    let url = redirect.url().clone();
    let loopback = url.scheme() == "http" && class_oauth_core::types::is_loopback(&url);
    if !loopback {
        return Err(CliError::usage(
            "login listens on a loopback redirect URI (http://127.0.0.1:PORT/...); for other URIs use `auth start` and `auth finish`",
        ));
    }
    ready_store(ctx)?;
    // `host_str` keeps the brackets of an IPv6 literal, as a socket address needs them.
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let server = tiny_http::Server::http(&addr)
        .map_err(|e| CliError::config(format!("cannot listen on {addr}: {e}"), None))?;
    let client = ctx.client()?;
    let (auth_url, pending) = client.start_authorization(
        redirect.clone(),
        scopes_from(&args.scopes, DEFAULT_SCOPES)?,
        options(args.prompt.clone(), args.login_hint.clone())?,
    )?;
    eprintln!("Open this URL to sign in to Class and choose the business:\n{auth_url}");
    if !args.no_browser && webbrowser::open(auth_url.as_str()).is_err() {
        eprintln!("(could not open a browser; open the URL yourself)");
    }
    let deadline = std::time::Instant::now() + args.timeout;
    // Wait for the redirect: other paths (favicon, preconnects) get a 404, and a request
    // at the redirect path whose state is not this login's gets an error page; neither
    // uses up the login.
    let callback = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let request = match server.recv_timeout(left) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(CliError {
                    exit_code: 5,
                    kind: "transport",
                    code: Some("timeout".into()),
                    message: format!(
                        "no browser came back to {redirect} within {} s",
                        args.timeout.as_secs()
                    ),
                    hint: Some("sign in within the time, or pass a longer --timeout".into()),
                });
            }
            Err(e) => {
                return Err(CliError::config(
                    format!("waiting for the callback: {e}"),
                    None,
                ));
            }
        };
        let target = request.url().to_owned();
        let path = target.split('?').next().unwrap_or_default();
        if request.method() != &tiny_http::Method::Get || path != url.path() {
            let _ = request.respond(page(
                404,
                "Not found",
                "This is the class-oauth sign-in listener.",
            ));
            continue;
        }
        let callback = format!("{}://{}{target}", url.scheme(), url.authority());
        let state_matches = class_oauth_core::callback::CallbackParams::from_url(&callback)
            .ok()
            .and_then(|p| p.state)
            .is_some_and(|s| s == *pending.state());
        if !state_matches {
            let _ = request.respond(page(
                400,
                "Sign-in not accepted",
                "This response does not belong to the sign-in class-oauth started (its state differs). Nothing was signed in.",
            ));
            eprintln!("(ignored a request at the redirect URI whose state is not this login's)");
            continue;
        }
        break (request, callback);
    };
    let (request, callback_url) = callback;
    // The state is this login's: finish it (iss, error=, the code exchange and the ID
    // token), and only then tell the browser how it went.
    let result = client
        .finish_authorization(pending, Callback::Url(&callback_url))
        .map_err(|e| refused_grant(e, CODE_REFUSED_HINT));
    match &result {
        Ok(_) => {
            let _ = request.respond(page(
                200,
                "Signed in to Class",
                "class-oauth has the tokens. You can close this window.",
            ));
        }
        Err(e) => {
            let _ = request.respond(page(400, "Sign-in failed", &e.message));
        }
    }
    store_login(ctx, &result?)
}

fn auth_start(
    ctx: &mut Ctx,
    scopes: &[String],
    redirect: &str,
    prompt: Option<String>,
    hint: Option<String>,
) -> Result<(), CliError> {
    let store = ctx.store()?;
    let client = ctx.client()?;
    let (url, pending) = client.start_authorization(
        RedirectUrl::new(redirect)?,
        scopes_from(scopes, DEFAULT_SCOPES)?,
        options(prompt, hint)?,
    )?;
    let state = pending.state().secret().to_owned();
    block_on(store.put_pending(&state, pending))?;
    let value = json!({"authorization_url": url.as_str(), "state": state});
    if ctx.cli.json {
        println!("{value}");
    } else {
        println!("{url}");
    }
    eprintln!(
        "Send the user to the URL above; then run `class-oauth auth finish --callback-url <the URL Class redirected to>`."
    );
    Ok(())
}

fn auth_finish(ctx: &mut Ctx, callback_url: &str) -> Result<(), CliError> {
    let params = class_oauth_core::callback::CallbackParams::from_url(callback_url)
        .map_err(CliError::from)?;
    let state = params
        .state
        .ok_or_else(|| CliError::validation("the callback URL has no state parameter"))?;
    ready_store(ctx)?;
    let store = ctx.store()?;
    let pending = block_on(store
        .take_pending(state.secret(), SystemTime::now()))?
        .ok_or_else(|| CliError::validation("no pending authorization matches this callback's state (already used, expired, or started elsewhere)"))?;
    let client = ctx.client()?;
    let granted = client
        .finish_authorization(pending, Callback::Url(callback_url))
        .map_err(|e| refused_grant(e, CODE_REFUSED_HINT))?;
    store_login(ctx, &granted)
}

/// Opens the store and checks its key against the profile's stored grant, if any:
/// before a request that spends a password or an authorization code, so that a store
/// that cannot keep the tokens fails first.
fn ready_store(ctx: &mut Ctx) -> Result<(), CliError> {
    let store = ctx.store()?;
    block_on(store.load(&ctx.tenant()?))?;
    Ok(())
}

fn password(
    ctx: &mut Ctx,
    username: &str,
    password_stdin: bool,
    scopes: &[String],
) -> Result<(), CliError> {
    ready_store(ctx)?;
    let pw = if !password_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // On a terminal: a prompt, without echo.
        Password::new(
            rpassword::prompt_password(format!("Class password for {username}: "))
                .map_err(|e| CliError::usage(format!("reading the password: {e}")))?,
        )
    } else {
        let index = usize::from(ctx.cli.client_secret_stdin);
        Password::new(
            ctx.stdin_line(index)?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )
    };
    let client = ctx.client()?;
    let granted = client
        .password(
            Username::new(username),
            pw,
            scopes_from(scopes, "target:b offline_access business.fund.list")?,
        )
        .map_err(|e| {
            refused_grant(
                e,
                "check the username and password (and that the customer's SSLA covers API access)",
            )
        })?;
    store_login(ctx, &granted)
}

/// A grant request (password, or a code exchange) that Class refused with
/// `invalid_grant` is a refusal (exit 3): nothing stored was lost, the credentials or the
/// code were wrong. Only for a stored grant's refresh does `invalid_grant` mean
/// "authorize again" (exit 6).
fn refused_grant(e: class_oauth_core::flow::DriveError, hint: &str) -> CliError {
    let mut err = CliError::from(e);
    if err.code.as_deref() == Some("invalid_grant") {
        err.exit_code = 3;
        err.kind = "server_refused";
        err.hint = Some(hint.into());
    }
    err
}

const CODE_REFUSED_HINT: &str = "the code was used, expired, or redeemed with another redirect URI (Class requires the exact registered one); sign in again";

fn token(ctx: &mut Ctx) -> Result<(), CliError> {
    let m = manager(ctx)?;
    let grant = m.grant(&ctx.tenant()?)?;
    if ctx.cli.json {
        let mut v = summary(&grant);
        v["access_token"] = json!(grant.tokens.access_token.secret());
        println!("{v}");
    } else {
        println!("{}", grant.tokens.access_token.secret());
    }
    Ok(())
}

fn refresh(ctx: &mut Ctx) -> Result<(), CliError> {
    let m = manager(ctx)?;
    let tenant = ctx.tenant()?;
    let current = block_on(m.store().load(&tenant))?.ok_or_else(|| {
        CliError::reauth(format!(
            "no grant is stored for profile `{}`",
            ctx.cli.profile
        ))
    })?;
    if current.tokens.refresh_token.is_none() {
        return Err(CliError::reauth(format!(
            "the grant of profile `{}` has no refresh token (offline_access was not granted); sign in again to renew it",
            ctx.cli.profile
        )));
    }
    // A failed refresh is reported with its real cause (refused 3, validation 4,
    // transport 5, re-authorization 6), whatever the current token's expiry.
    let grant = m.force_refresh(&tenant, current.version)?;
    emit(
        ctx.cli.json,
        &summary(&grant),
        &describe_grant("Refreshed (the new refresh token is stored).", &grant),
    );
    Ok(())
}

fn userinfo(ctx: &mut Ctx) -> Result<(), CliError> {
    let m = manager(ctx)?;
    let grant = m.grant(&ctx.tenant()?)?;
    let sub = grant.id_claims.as_ref().map(|c| c.sub.clone());
    let expected = grant
        .id_claims
        .as_ref()
        .map_or(ExpectedSubject::NoIdToken, ExpectedSubject::IdToken);
    let info = m.client().userinfo(&grant.tokens.access_token, expected)?;
    let value = json!({"sub": info.sub, "name": info.name, "given_name": info.given_name, "family_name": info.family_name, "email": info.email,
        "business_code": info.business_code, "business_name": info.business_name, "class_role": info.class_role, "extra": info.extra});
    let human = format!(
        "UserInfo{}\n  sub       {}\n  name      {}\n  email     {}\n  business  {} ({})\n  roles     {}",
        if sub.is_some() {
            " (sub matches the ID token)"
        } else {
            ""
        },
        info.sub,
        or_dash(info.name.as_deref()),
        or_dash(info.email.as_deref()),
        or_dash(info.business_code.as_deref()),
        or_dash(info.business_name.as_deref()),
        if info.class_role.is_empty() {
            "-".to_owned()
        } else {
            info.class_role.join(", ")
        }
    );
    emit(ctx.cli.json, &value, &human);
    Ok(())
}

fn revoke(ctx: &mut Ctx) -> Result<(), CliError> {
    let store = ctx.store()?;
    let tenant = ctx.tenant()?;
    let client = ctx.client()?;
    let endpoints = client.endpoints()?;
    let mut revoked = false;
    if endpoints.revocation_endpoint.is_some()
        && let Some(grant) = block_on(store.load(&tenant))?
        && let Some(rt) = grant.tokens.refresh_token
    {
        client.revoke(RevocationRequest::RefreshToken(rt))?;
        revoked = true;
    }
    let deleted = block_on(store.delete(&tenant))?;
    let human = match (revoked, deleted) {
        (true, _) => format!(
            "Revoked the refresh token at Class and deleted profile `{}`.",
            ctx.cli.profile
        ),
        (false, true) => format!(
            "Deleted profile `{}`. Class publishes no revocation endpoint: to revoke the grant itself, use Business > Partner Application Access > Revoke Access in Class.",
            ctx.cli.profile
        ),
        (false, false) => format!("No grant was stored for profile `{}`.", ctx.cli.profile),
    };
    emit(
        ctx.cli.json,
        &json!({"revoked": revoked, "deleted": deleted}),
        &human,
    );
    Ok(())
}

fn profiles(ctx: &mut Ctx) -> Result<(), CliError> {
    let store = ctx.store()?;
    let rows = block_on(store.list(&GrantQuery::all()))?;
    let value: Vec<Value> = rows
        .iter()
        .map(|r| json!({"profile": r.key.tenant(), "client_id": r.key.client_id(), "business_code": r.business_code, "scope": r.scope, "expires_at": r.expires_at,
            "status": r.status.as_parts().0}))
        .collect();
    let mut human = format!("{} profile(s):\n", rows.len());
    for v in &value {
        let _ = writeln!(
            human,
            "  {:<16} {:<14} {:<24} {:<21} {}  {}",
            v["profile"].as_str().unwrap_or(""),
            v["business_code"].as_str().unwrap_or("-"),
            v["status"].as_str().unwrap_or(""),
            v["expires_at"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), date),
            v["client_id"].as_str().unwrap_or(""),
            v["scope"].as_str().unwrap_or("")
        );
    }
    emit(ctx.cli.json, &Value::Array(value), human.trim_end());
    Ok(())
}

/// Grant health over the store: the manager's view ([`class_oauth_manager::GrantHealth`])
/// without a client, since it only reads the store.
fn grants(ctx: &mut Ctx, status: Option<&str>) -> Result<(), CliError> {
    const STATUSES: [&str; 4] = class_oauth_store::GrantStatus::NAMES;
    let mut query = GrantQuery::all();
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(CliError::usage(format!(
                "unknown status `{s}`: one of {}",
                STATUSES.join(", ")
            )));
        }
        query.status = Some(s.to_owned());
    }
    let store = ctx.store()?;
    let rows = block_on(store.list(&query))?;
    let settings = Settings::default();
    let now = SystemTime::now();
    let unix = |t: Option<SystemTime>| t.map(class_oauth_core::time::to_unix);
    let health: Vec<_> = rows
        .iter()
        .map(|r| class_oauth_manager::GrantHealth::new(r, &settings, now))
        .collect();
    let value: Vec<Value> = health
        .iter()
        .map(|h| {
            let (status, reason) = h.status.as_parts();
            json!({
                "profile": h.key.tenant(),
                "client_id": h.key.client_id(),
                "business_code": h.business_code,
                "status": status,
                "reason": reason,
                "access_expires_at": unix(h.access_expires_at),
                "refresh_token_age_s": h.refresh_token_age.map(|d| d.as_secs()),
                "lapses_at": unix(h.lapses_at),
                "last_refresh_at": unix(h.last_refresh),
                "granted_at": unix(h.granted_at),
                "last_error": h.last_error.as_ref().map(|(e, _)| e),
                "last_error_at": h.last_error.as_ref().map(|(_, at)| class_oauth_core::time::to_unix(*at)),
                "action": h.action,
            })
        })
        .collect();
    let mut human = format!("{} grant(s):\n", health.len());
    for h in &health {
        let _ = writeln!(
            human,
            "  {:<16} {:<14} {:<22} refresh token {:>8} old, lapses {}{}{}",
            h.key.tenant(),
            or_dash(h.business_code.as_deref()),
            h.status.as_parts().0,
            h.refresh_token_age
                .map_or_else(|| "?".to_owned(), |d| age(d.as_secs())),
            unix(h.lapses_at).map_or_else(|| "-".to_owned(), date),
            h.last_error
                .as_ref()
                .map_or_else(String::new, |(e, at)| format!(
                    "\n    last refresh failed {}: {e}",
                    date(class_oauth_core::time::to_unix(*at))
                )),
            h.action
                .as_deref()
                .map_or_else(String::new, |a| format!("\n    -> {a}")),
        );
    }
    emit(ctx.cli.json, &Value::Array(value), human.trim_end());
    Ok(())
}

/// `class-oauth config ...`.
fn configure(ctx: &mut Ctx, action: ConfigAction) -> Result<(), CliError> {
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

struct ApiArgs {
    path: String,
    method: String,
    data: Option<String>,
    query: Vec<String>,
    include: bool,
    action_version: u32,
}

/// `class-oauth api PATH`: a Class API call as the profile's grant, through the manager
/// (the stored token, refreshed when due and once more on a 401; a 429 waited out).
fn api(ctx: &mut Ctx, args: &ApiArgs) -> Result<(), CliError> {
    let method =
        class_oauth_core::http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| CliError::usage(format!("-X {}: not an HTTP method", args.method)))?;
    let mut path = args.path.trim_start_matches('/').to_owned();
    if !args.query.is_empty() {
        let mut pairs = class_oauth_core::url::form_urlencoded::Serializer::new(String::new());
        for q in &args.query {
            let (name, value) = q.split_once('=').ok_or_else(|| {
                CliError::usage(format!("-q {q}: write a query parameter as NAME=VALUE"))
            })?;
            pairs.append_pair(name, value);
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!("{path}{sep}{}", pairs.finish());
    }
    let body = match args.data.as_deref() {
        None => None,
        Some("@-") => Some(ctx.stdin_all()?),
        Some(file) if file.starts_with('@') => Some(
            std::fs::read(&file[1..])
                .map_err(|e| CliError::usage(format!("--data {file}: {e}")))?,
        ),
        Some(text) => Some(text.as_bytes().to_vec()),
    };
    if let Some(b) = &body {
        serde_json::from_slice::<Value>(b)
            .map_err(|e| CliError::usage(format!("--data is not JSON: {e}")))?;
    }
    let m = manager(ctx)?;
    let endpoints = m.client().endpoints().map_err(CliError::from)?;
    let base = endpoints.api_base.as_ref().ok_or_else(|| {
        CliError::config(
            "this environment has no API base URL",
            Some("use --env production or pie, or an issuer whose API host is known"),
        )
    })?;
    let mut request = class_oauth_core::api::ApiRequest::new(method, base, &path)
        .map_err(|e| CliError::usage(format!("{path}: {e}")))?
        .action_version(args.action_version);
    if let Some(b) = body {
        request = request.json_body(b);
    }
    let response = m.api(&ctx.tenant()?, request)?;
    let limit = &response.rate_limit;
    if ctx.cli.json {
        println!(
            "{}",
            json!({
                "status": response.status.as_u16(),
                "rate_limit": {
                    "remaining": limit.remaining,
                    "reset_after_s": limit.reset_after.map(|d| d.as_secs()),
                },
                "data": response.data,
            })
        );
        return Ok(());
    }
    if args.include {
        println!("HTTP {}", response.status);
        if let Some(n) = limit.remaining {
            println!("X-RateLimit-1Min-Remaining: {n}");
        }
        if let Some(d) = limit.reset_after {
            println!("X-RateLimit-ResetAfter: {}", d.as_secs());
        }
        println!();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&response.data).unwrap_or_else(|_| response.data.to_string())
    );
    Ok(())
}

/// An age for people: days and hours, or minutes.
fn age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}m", s / 60),
    }
}

/// The tour, against the built-in emulator: code flow with ID-token validation, the
/// token manager with an encrypted SQLite store, refresh, UserInfo, a Class API call,
/// revocation.
/// `class-oauth emulator`: the demo emulator on a loopback port until interrupted.
#[cfg(feature = "demo")]
fn emulator(json: bool, port: u16) -> Result<(), CliError> {
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

#[cfg(feature = "demo")]
fn demo(ctx: &mut Ctx) -> Result<(), CliError> {
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
