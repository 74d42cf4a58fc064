//! The row codec shared by the SQL backends: what is sealed, what stays in clear.

use class_oauth_core::authorize::PendingAuthorization;
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::token::TokenSet;
use serde::{Deserialize, Serialize};

use crate::{Encryption, GrantStatus, StoreError, StoredGrant, TenantKey};

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
        serde_json::to_vec(&Payload {
            tokens: tokens.clone(),
            id_claims: id_claims.cloned(),
        })
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
        serde_json::to_vec(pending).map_err(|e| StoreError::Backend(e.to_string()))?,
    );
    let (sealed, _) = enc.seal("pending", lookup, &plain)?;
    Ok((
        pending_lookup(lookup),
        sealed,
        to_i64(class_oauth_core::time::to_unix(pending.expires_at)),
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
