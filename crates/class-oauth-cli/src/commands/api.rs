//! `class-oauth api PATH`: a Class API call with the stored grant.

use super::*;

/// The arguments of `class-oauth api`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// The path below the API base, e.g. b/OAUTH_TEST/fund/list.
    pub(crate) path: String,
    /// The HTTP method.
    #[arg(short = 'X', long = "method", default_value = "GET")]
    pub(crate) method: String,
    /// A JSON body: the text itself, @FILE, or @- for stdin.
    #[arg(short = 'd', long)]
    pub(crate) data: Option<String>,
    /// A query parameter NAME=VALUE (repeatable; encoded for you).
    #[arg(short = 'q', long = "query")]
    pub(crate) query: Vec<String>,
    /// Print the status and the rate-limit headers before the data.
    #[arg(short = 'i', long)]
    pub(crate) include: bool,
    /// The action version of the Accept type (application/vnd.superip.action.vN+json).
    #[arg(long, default_value_t = 1)]
    pub(crate) action_version: u32,
}

/// `class-oauth api PATH`: a Class API call as the profile's grant, through the manager
/// (the stored token, refreshed when due and once more on a 401; a 429 waited out).
pub(super) fn api(ctx: &mut Ctx, args: &ApiArgs) -> Result<(), CliError> {
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
