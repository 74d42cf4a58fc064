//! Getting a grant: the browser login (loopback redirect), the two-step `auth start` / `auth finish`, and the password grant.

use super::*;

pub(super) fn options(
    prompt: Option<String>,
    login_hint: Option<String>,
) -> Result<AuthorizeOptions, CliError> {
    let mut o = AuthorizeOptions::default();
    o.prompt = prompt.as_deref().map(Prompt::parse).transpose()?;
    o.login_hint = login_hint;
    Ok(o)
}

/// The `login` command's arguments.
pub(super) struct LoginArgs {
    pub(super) scopes: Vec<String>,
    pub(super) redirect_uri: String,
    pub(super) no_browser: bool,
    pub(super) prompt: Option<String>,
    pub(super) login_hint: Option<String>,
    pub(super) timeout: Duration,
}

/// The page the browser sees at the end of a login.
pub(super) fn page(
    status: u16,
    title: &str,
    text: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
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

pub(super) fn login(ctx: &mut Ctx, args: &LoginArgs) -> Result<(), CliError> {
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

pub(super) fn auth_start(
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

pub(super) fn auth_finish(ctx: &mut Ctx, callback_url: &str) -> Result<(), CliError> {
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
pub(super) fn ready_store(ctx: &mut Ctx) -> Result<(), CliError> {
    let store = ctx.store()?;
    block_on(store.load(&ctx.tenant()?))?;
    Ok(())
}

pub(super) fn password(
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
pub(super) fn refused_grant(e: class_oauth_core::flow::DriveError, hint: &str) -> CliError {
    let mut err = CliError::from(e);
    if err.code.as_deref() == Some("invalid_grant") {
        err.exit_code = 3;
        err.kind = "server_refused";
        err.hint = Some(hint.into());
    }
    err
}

pub(super) const CODE_REFUSED_HINT: &str = "the code was used, expired, or redeemed with another redirect URI (Class requires the exact registered one); sign in again";
