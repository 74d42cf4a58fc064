//! `class-oauth`: the Class (Class Super) OAuth command line.
//!
//! Exit codes: 0 ok; 2 usage or configuration; 3 the server refused; 4 validation failed
//! (ID token, state, issuer, discovery policy, malformed response); 5 transport failure
//! (connect, timeout, 5xx, non-JSON body); 6 re-authorization needed; 7 the local store
//! failed (or another process's refresh did not finish within the wait).

#![forbid(unsafe_code)]

mod commands;
mod config;
mod keys;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Environment:
  CLASS_OAUTH_ENV        production, pie, or an issuer URL (--env)
  CLASS_CLIENT_ID        the client id (--client-id)
  CLASS_CLIENT_SECRET    the client secret (or --client-secret-stdin; never an argument)
  CLASS_OAUTH_STORE      a SQLite file or a postgres:// URL (--store; TLS as libpq reads
                         sslmode, sslrootcert, sslcert and sslkey)
  CLASS_OAUTH_PROFILE    the profile (--profile)
  CLASS_OAUTH_STORE_KEY  the store key ring, overriding the key the CLI keeps in the OS
                         keyring or a private key file (see `class-oauth key show`)
  CLASS_OAUTH_KEYRING    `off`: never use the OS keyring (the key file instead)
  RUST_LOG               library tracing (e.g. class_oauth=debug); or -v / -vv

Exit codes:
  0 ok  2 usage or configuration  3 the server refused (invalid_grant, invalid_client, ...)
  4 validation failed (ID token, state, issuer, discovery policy, malformed response)
  5 transport failure (connect, timeout, 5xx, non-JSON body)
  6 re-authorization needed (no stored grant, refresh token expired or revoked)
  7 the local store failed (damaged, unreadable, read-only, wrong permissions), or another
    process's refresh did not finish within the wait";

/// Log in to Class, keep a grant per profile, and print valid tokens.
#[derive(Debug, Parser)]
#[command(name = "class-oauth", version, about, long_about = None, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// production, pie, or an issuer URL (http only for loopback hosts) [default: the
    /// profile's config, else pie].
    #[arg(long = "env", env = "CLASS_OAUTH_ENV", global = true)]
    pub(crate) environment: Option<String>,
    /// The client id Class issued for this environment.
    #[arg(long, env = "CLASS_CLIENT_ID", global = true)]
    pub(crate) client_id: Option<String>,
    /// Read the client secret from the first line of stdin (else CLASS_CLIENT_SECRET).
    #[arg(long, global = true)]
    pub(crate) client_secret_stdin: bool,
    /// A SQLite file or a postgres:// URL, TLS parameters included (`?sslmode=verify-full&sslrootcert=ca.pem`) (default: a SQLite file in the user's data directory).
    #[arg(long, env = "CLASS_OAUTH_STORE", global = true)]
    pub(crate) store: Option<String>,
    /// The profile: one stored grant per profile.
    #[arg(
        long,
        env = "CLASS_OAUTH_PROFILE",
        default_value = "default",
        global = true
    )]
    pub(crate) profile: String,
    /// Machine output: one JSON value on stdout instead of the human text, failures
    /// (usage errors included) as {"error": {"kind", "code", "message"}}.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Show the library's tracing on stderr (-v info, -vv debug); RUST_LOG overrides.
    /// Secrets never appear in it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The scope catalogue: scope strings, Class's consent texts, rules.
    Scopes,
    /// The resolved endpoints and where they came from.
    Discover,
    /// Authorization-code flow with a loopback listener on the redirect URI.
    Login {
        /// A scope (repeatable); default: openid profile email class_profile target:b offline_access business.fund.list.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A loopback redirect URI registered with Class.
        #[arg(long, default_value = "http://127.0.0.1:8765/callback")]
        redirect_uri: String,
        /// Print the URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// prompt: none, login, consent.
        #[arg(long)]
        prompt: Option<String>,
        /// login_hint: the user's email.
        #[arg(long)]
        login_hint: Option<String>,
        /// How long to wait for the browser to come back, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Two-step authorization for redirect URIs that are not loopback.
    Auth {
        #[command(subcommand)]
        step: AuthStep,
    },
    /// The legacy password grant (Class customers' private clients).
    Password {
        /// The Class username.
        #[arg(long)]
        username: String,
        /// Read the password from stdin (after the client secret, when that is read too).
        /// Without it the password is prompted for, without echo, on a terminal, and read
        /// from stdin when stdin is a pipe.
        #[arg(long)]
        password_stdin: bool,
        /// A scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Print a valid access token, refreshing first when due.
    Token,
    /// Refresh now.
    Refresh,
    /// Call UserInfo (the sub is checked against the ID token).
    Userinfo,
    /// Revoke at the revocation endpoint when advertised, then delete the profile.
    Revoke,
    /// The stored profiles (never a secret).
    Profiles,
    /// Grant health: every stored grant's status and reason, refresh-token age and
    /// estimated lapse, last refresh, and which customers must connect again.
    Grants {
        /// Only grants with this status (active, needs_reauthorization, unverified,
        /// in_doubt).
        #[arg(long)]
        status: Option<String>,
    },
    /// Call the Class API as the profile's grant, the way `gh api` does: the stored token
    /// (refreshed when due, once more on a 401), Class's Accept type, a 429 waited out
    /// (bounded); the response's data on stdout.
    Api(commands::ApiArgs),
    /// The whole tour against the built-in Class emulator: no credentials needed.
    Demo,
    /// Run the Class emulator as a standalone server (demo client, user and businesses)
    /// until interrupted, so programs in any language can be tested against it.
    Emulator {
        /// The loopback port to listen on (0: any free port; the issuer is printed).
        #[arg(long, default_value_t = 8790)]
        port: u16,
    },
    /// Store encryption keys.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// A completion script for SHELL on stdout (bash, elvish, fish, powershell, zsh), e.g.
    /// `class-oauth completions bash > ~/.local/share/bash-completion/completions/class-oauth`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout: `class-oauth man | man -l -` (cargo xtask man
    /// writes it to target/man/class-oauth.1).
    Man,
    /// The profile's settings in the config file (env, client-id, store; client-secret
    /// from stdin, kept in a private file), so they need not be repeated. Flags and
    /// environment variables still override them.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Set a setting of the profile (client-secret: read from stdin).
    Set {
        /// env, client-id, store or client-secret.
        key: String,
        /// The value (none for client-secret).
        value: Option<String>,
    },
    /// Print a setting of the profile (client-secret: only whether one is kept).
    Get {
        /// env, client-id, store or client-secret.
        key: String,
    },
    /// Remove a setting of the profile.
    Unset {
        /// env, client-id, store or client-secret.
        key: String,
    },
    /// The profile's settings and where the file is (never the secret).
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthStep {
    /// Print {"authorization_url","state"} and save the pending authorization in the store.
    Start {
        /// A scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The redirect URI registered with Class (exact).
        #[arg(long)]
        redirect_uri: String,
        /// prompt: none, login, consent.
        #[arg(long)]
        prompt: Option<String>,
        /// login_hint.
        #[arg(long)]
        login_hint: Option<String>,
    },
    /// Finish from the callback URL the browser landed on.
    Finish {
        /// The full callback URL.
        #[arg(long)]
        callback_url: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyAction {
    /// Where the store key lives (CLASS_OAUTH_STORE_KEY, or the key file created on
    /// first use); never prints the key.
    Show,
    /// Print a new key for CLASS_OAUTH_STORE_KEY.
    Generate,
    /// Replace the key in the key file with a new one and re-encrypt every stored grant
    /// with it; the old key is then retired (pending authorizations sealed with it are
    /// dropped: start those sign-ins again).
    Rotate,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // A usage error: under --json it is a JSON error on stdout like every other
            // failure (clap has not parsed the flag, so look for it).
            let json = std::env::args_os().any(|a| a == "--json");
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let error =
                output::CliError::usage(first.strip_prefix("error:").unwrap_or(first).trim());
            if json {
                output::report_error(&error, true);
            } else {
                let _ = e.print();
            }
            return ExitCode::from(error.exit_code);
        }
    };
    init_tracing(cli.verbose);
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::report_error(&e, json);
            ExitCode::from(e.exit_code)
        }
    }
}

/// Library tracing on stderr: `RUST_LOG` when set, else `-v` (info) / `-vv` (debug) for
/// the class_oauth crates; nothing without either.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => match verbose {
            0 => return,
            1 => EnvFilter::new("class_oauth=info"),
            _ => EnvFilter::new("class_oauth=debug"),
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
