//! The row codec shared by the SQL backends: what is sealed, what stays in clear.

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::secret::ExposeSecrets;
use class_oauth_core::token::TokenSet;
use serde::{Deserialize, Serialize};

use crate::{Encryption, GrantStatus, GrantUpdate, StoreError, StoredGrant, TenantKey};

#[derive(Serialize, Deserialize)]
struct Payload {
    tokens: TokenSet,
    id_claims: Option<IdTokenClaims>,
}

/// A grant row ready to write.
pub(crate) struct GrantRow {
    pub(crate) storage_key: String,
    pub(crate) business_code: Option<String>,
    pub(crate) scope: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) key_id: String,
    pub(crate) sealed: String,
    /// When the tokens were received (Unix seconds): the refresh token's age starts here.
    pub(crate) received_at: i64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn encode_grant(
    enc: &Encryption,
    key: &TenantKey,
    tokens: &TokenSet,
    id_claims: Option<&IdTokenClaims>,
) -> Result<GrantRow, StoreError> {
    let storage_key = key.storage_key();
    let payload = zeroize::Zeroizing::new(
        // Sealed right below: the one place secrets are written in clear.
        serde_json::to_vec(&ExposeSecrets(&Payload {
            tokens: tokens.clone(),
            id_claims: id_claims.cloned(),
        }))
        .map_err(|e| StoreError::Backend(e.to_string()))?,
    );
    let (sealed, key_id) = enc.seal("grant", &storage_key, &payload)?;
    Ok(GrantRow {
        storage_key,
        business_code: tokens.business_code().map(|c| c.as_str().to_owned()),
        scope: tokens.scopes.to_string(),
        expires_at: tokens
            .expires_at
            .map(|t| to_i64(class_oauth_core::time::to_unix(t))),
        key_id,
        sealed,
        received_at: to_i64(class_oauth_core::time::to_unix(tokens.received_at)),
    })
}

pub(crate) fn decode_grant(
    enc: &Encryption,
    key: &TenantKey,
    sealed: &str,
    status: &str,
    reason: &str,
    version: i64,
) -> Result<StoredGrant, StoreError> {
    let plain = enc.open("grant", &key.storage_key(), sealed)?;
    let payload: Payload = serde_json::from_slice(&plain)
        .map_err(|e| StoreError::Backend(format!("stored grant does not parse: {e}")))?;
    Ok(StoredGrant {
        tokens: payload.tokens,
        id_claims: payload.id_claims,
        status: GrantStatus::from_parts(status, reason),
        version: u64::try_from(version).unwrap_or(0),
    })
}

/// The lookup column for a pending record: SHA-256 of the state, so a database dump does
/// not reveal live states.
pub(crate) fn pending_lookup(state: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn encode_pending(
    enc: &Encryption,
    lookup: &str,
    pending: &PendingAuthorization,
) -> Result<(String, String, i64), StoreError> {
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(&ExposeSecrets(pending))
            .map_err(|e| StoreError::Backend(e.to_string()))?,
    );
    let (sealed, _) = enc.seal("pending", lookup, &plain)?;
    Ok((
        pending_lookup(lookup),
        sealed,
        to_i64(class_oauth_core::time::to_unix(pending.expires_at())),
    ))
}

pub(crate) fn decode_pending(
    enc: &Encryption,
    lookup: &str,
    sealed: &str,
) -> Result<PendingAuthorization, StoreError> {
    let plain = enc.open("pending", lookup, sealed)?;
    serde_json::from_slice(&plain)
        .map_err(|e| StoreError::Backend(format!("pending record does not parse: {e}")))
}

/// The columns a grant is read from, in this order: sealed, status, status_reason,
/// version.
pub(crate) const GRANT_COLUMNS: &str = "sealed, status, status_reason, version";

/// The conditional write of [`GrantUpdate`], shared by the SQL backends (`$n`
/// placeholders; SQLite reads them as `?n`). Parameters: 1 status, 2 status_reason,
/// 3 updated_at, 4 the releasing owner (or NULL), then with tokens 5 business_code,
/// 6 scope, 7 expires_at, 8 key_id, 9 sealed; then the storage key and the expected
/// version, and with tokens 12 tokens_received_at. Every SET expression reads the row as it was, so the lease is released only
/// when `lease_owner` was the releasing owner.
pub(crate) fn update_sql(update: &GrantUpdate<'_>) -> String {
    let (tokens, key, version) = if update.tokens.is_some() {
        (
            ", business_code = $5, scope = $6, expires_at = $7, key_id = $8, sealed = $9, \
             tokens_received_at = $12, refreshed_at = $12, last_error = NULL, last_error_at = NULL",
            10,
            11,
        )
    } else {
        ("", 5, 6)
    };
    format!(
        "UPDATE class_oauth_grants SET status = $1, status_reason = $2, updated_at = $3, \
         lease_owner = CASE WHEN lease_owner = $4 THEN NULL ELSE lease_owner END, \
         lease_until = CASE WHEN lease_owner = $4 THEN NULL ELSE lease_until END, \
         version = version + 1{tokens} WHERE storage_key = ${key} AND version = ${version}"
    )
}

/// The upsert of a login ([`crate::TokenStore::save`] without an expected version):
/// status active, any lease cleared. Parameters: 1 storage_key, 2 client_id, 3 tenant,
/// 4 subject, 5 scope_key, 6 business_code, 7 scope, 8 expires_at, 9 key_id, 10 sealed,
/// 11 updated_at, 12 tokens_received_at (also the grant's `granted_at`).
pub(crate) const UPSERT_SQL: &str = "INSERT INTO class_oauth_grants (storage_key, client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, key_id, sealed, updated_at, tokens_received_at, granted_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', '', 1, $9, $10, $11, $12, $12) \
     ON CONFLICT (storage_key) DO UPDATE SET business_code = excluded.business_code, scope = excluded.scope, expires_at = excluded.expires_at, \
     status = 'active', status_reason = '', version = class_oauth_grants.version + 1, key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at, \
     tokens_received_at = excluded.tokens_received_at, granted_at = excluded.granted_at, refreshed_at = NULL, lease_owner = NULL, lease_until = NULL, \
     last_error = NULL, last_error_at = NULL \
     RETURNING version";

/// The conditional replace of a login with an expected version. Parameters: 1 storage_key,
/// 2 business_code, 3 scope, 4 expires_at, 5 key_id, 6 sealed, 7 updated_at, 8 version,
/// 9 tokens_received_at (also the grant's `granted_at`).
pub(crate) const REPLACE_SQL: &str = "UPDATE class_oauth_grants SET business_code = $2, scope = $3, expires_at = $4, status = 'active', status_reason = '', \
     version = version + 1, key_id = $5, sealed = $6, updated_at = $7, tokens_received_at = $9, granted_at = $9, refreshed_at = NULL, lease_owner = NULL, lease_until = NULL, \
     last_error = NULL, last_error_at = NULL \
     WHERE storage_key = $1 AND version = $8";

/// The listing, a page of it ([`crate::GrantQuery`]). Parameters: 1 the cursor (the last
/// row key of the previous page, or NULL), 2 a status name (or NULL), 3 the page size.
/// Columns: client_id, tenant, subject, scope_key, business_code, scope, expires_at,
/// status, status_reason, version, updated_at, tokens_received_at, granted_at,
/// refreshed_at, last_error, last_error_at.
pub(crate) const LIST_SQL: &str = "SELECT client_id, tenant, subject, scope_key, business_code, scope, expires_at, status, status_reason, version, updated_at, tokens_received_at, granted_at, refreshed_at, last_error, last_error_at \
     FROM class_oauth_grants WHERE (CAST($1 AS TEXT) IS NULL OR storage_key > CAST($1 AS TEXT)) AND (CAST($2 AS TEXT) IS NULL OR status = CAST($2 AS TEXT)) ORDER BY storage_key LIMIT $3";

/// Deletes a grant. Parameters: 1 storage_key.
pub(crate) const DELETE_SQL: &str = "DELETE FROM class_oauth_grants WHERE storage_key = $1";

/// Releases a lease, only its owner's, recording the failed refresh's error when there
/// is one. Parameters: 1 storage_key, 2 owner, 3 the error (or NULL: the last error
/// stays), 4 now (Unix seconds).
pub(crate) const RELEASE_SQL: &str = "UPDATE class_oauth_grants SET lease_owner = NULL, lease_until = NULL, \
     last_error = COALESCE(CAST($3 AS TEXT), last_error), \
     last_error_at = CASE WHEN CAST($3 AS TEXT) IS NULL THEN last_error_at ELSE CAST($4 AS BIGINT) END \
     WHERE storage_key = $1 AND lease_owner = $2";

/// Drops expired pending records. Parameters: 1 now (Unix seconds).
pub(crate) const PENDING_PURGE_SQL: &str = "DELETE FROM class_oauth_pending WHERE expires_at < $1";

/// Stores a pending record. Parameters: 1 lookup (hashed), 2 expires_at, 3 sealed.
pub(crate) const PENDING_PUT_SQL: &str = "INSERT INTO class_oauth_pending (lookup, expires_at, sealed) VALUES ($1, $2, $3) ON CONFLICT (lookup) DO UPDATE SET expires_at = excluded.expires_at, sealed = excluded.sealed";

/// Takes a pending record (it redeems once). Parameters: 1 lookup (hashed).
pub(crate) const PENDING_TAKE_SQL: &str =
    "DELETE FROM class_oauth_pending WHERE lookup = $1 RETURNING sealed, expires_at";

/// Claims the notice of a lapse at a lead: written (one row) only when this lapse has not
/// been announced at this lead or a shorter one. Parameters: 1 storage_key, 2 the lapse
/// (Unix seconds), 3 the lead (seconds).
pub(crate) const CLAIM_NOTICE_SQL: &str = "UPDATE class_oauth_grants SET lapse_notice_at = $2, lapse_notice_lead = $3 \
     WHERE storage_key = $1 AND (lapse_notice_at IS NULL OR lapse_notice_at <> $2 OR lapse_notice_lead > $3)";

/// A SQLite statement from the shared `$n` text.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A summary row from the listing's columns.
#[allow(clippy::too_many_arguments, reason = "one argument per column")]
pub(crate) fn summary(
    client_id: String,
    tenant: String,
    subject: String,
    scope_key: String,
    business_code: Option<String>,
    scope: String,
    expires_at: Option<i64>,
    status: &str,
    reason: &str,
    version: i64,
    updated_at: i64,
    tokens_received_at: Option<i64>,
    granted_at: Option<i64>,
    refreshed_at: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
) -> crate::GrantSummary {
    crate::GrantSummary {
        key: TenantKey::from_parts(client_id, tenant, subject, scope_key),
        business_code,
        scope,
        expires_at: expires_at.map(|v| v.max(0) as u64),
        status: GrantStatus::from_parts(status, reason),
        version: version.max(0) as u64,
        updated_at: updated_at.max(0) as u64,
        tokens_received_at: tokens_received_at.map(|v| v.max(0) as u64),
        granted_at: granted_at.map(|v| v.max(0) as u64),
        refreshed_at: refreshed_at.map(|v| v.max(0) as u64),
        last_error,
        last_error_at: last_error_at.map(|v| v.max(0) as u64),
    }
}
