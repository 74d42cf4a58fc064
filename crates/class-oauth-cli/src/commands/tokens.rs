//! Using and ending the grant: the access token, a forced refresh, UserInfo, revocation.

use super::*;

pub(super) fn token(ctx: &mut Ctx) -> Result<(), CliError> {
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

pub(super) fn refresh(ctx: &mut Ctx) -> Result<(), CliError> {
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

pub(super) fn userinfo(ctx: &mut Ctx) -> Result<(), CliError> {
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

pub(super) fn revoke(ctx: &mut Ctx) -> Result<(), CliError> {
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
