//! The commands, on the library's own layers: the blocking client (ureq), the token
//! manager, and the stores. This file holds what every command shares (the context,
//! the manager, the dispatch); each family of commands has its own file: `login`
//! (login, auth start/finish, password), `tokens` (token, refresh, userinfo, revoke),
//! `grants` (profiles, grants), `api`, `setup` (key rotate, scopes, discover, config)
//! and `demo` (emulator, demo).

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

mod api;
#[cfg(feature = "demo")]
mod demo;
mod grants;
mod login;
mod setup;
mod tokens;

pub(crate) use api::ApiArgs;
use api::*;
#[cfg(feature = "demo")]
use demo::*;
use grants::*;
use login::*;
use setup::*;
use tokens::*;

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
        Command::Api(args) => api(ctx, &args),
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
