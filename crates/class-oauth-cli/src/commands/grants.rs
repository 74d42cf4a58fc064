//! What the store holds: the profiles, and every grant's health.

use super::*;

pub(super) fn profiles(ctx: &mut Ctx) -> Result<(), CliError> {
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
pub(super) fn grants(ctx: &mut Ctx, status: Option<&str>) -> Result<(), CliError> {
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

/// An age for people: days and hours, or minutes.
pub(super) fn age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}m", s / 60),
    }
}
