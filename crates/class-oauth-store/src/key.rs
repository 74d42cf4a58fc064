//! `TenantKey`: which client's grant for which tenant (business) a row holds.

use std::fmt;

use class_oauth_core::ClientId;
use class_oauth_core::scope::Scopes;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct KeyParts {
    client_id: String,
    tenant: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    scope: String,
    #[serde(skip)]
    storage_key: String,
    #[serde(skip)]
    hash: u64,
}

/// Identifies one stored grant: the client, the tenant (a business code, a profile name,
/// your own tenant id), the subject (user) when grants are per user, and the scope set.
///
/// Cheap to clone and to look up: the parts are shared, the row key and a hash (keyed
/// per process) are computed once, `Hash` writes that one `u64`, and equality checks the
/// pointer before the text. Keep the keys you
/// use in hot paths rather than rebuilding them per call.
#[derive(Clone)]
pub struct TenantKey(std::sync::Arc<KeyParts>, u64);

impl TenantKey {
    /// A key for `tenant` of `client_id`.
    pub fn new(client_id: &ClientId, tenant: impl Into<String>) -> Self {
        Self::from_parts(client_id.as_str(), tenant, "", "")
    }

    pub(crate) fn from_parts(
        client_id: impl Into<String>,
        tenant: impl Into<String>,
        subject: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        let mut parts = KeyParts {
            client_id: client_id.into(),
            tenant: tenant.into(),
            subject: subject.into(),
            scope: scope.into(),
            storage_key: String::new(),
            hash: 0,
        };
        let enc = |s: &str| {
            class_oauth_core::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        };
        parts.storage_key = format!(
            "{}|{}|{}|{}",
            enc(&parts.client_id),
            enc(&parts.tenant),
            enc(&parts.subject),
            enc(&parts.scope)
        );
        // Keyed per process (SipHash with random keys), so tenant names chosen by
        // outsiders cannot be crafted to collide; maps may use this value as their hash.
        static HASH_KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        parts.hash = std::hash::BuildHasher::hash_one(
            HASH_KEYS.get_or_init(std::hash::RandomState::new),
            &parts.storage_key,
        );
        let hash = parts.hash;
        Self(std::sync::Arc::new(parts), hash)
    }

    /// Adds the subject (for grants per user).
    #[must_use]
    pub fn with_subject(self, subject: impl Into<String>) -> Self {
        Self::from_parts(
            self.0.client_id.clone(),
            self.0.tenant.clone(),
            subject,
            self.0.scope.clone(),
        )
    }

    /// Adds the scope set (for several grants per tenant with different scopes). The set
    /// is keyed in its canonical (sorted) form, so the order the scopes were listed in
    /// does not make another key.
    #[must_use]
    pub fn with_scope(self, scope: &Scopes) -> Self {
        Self::from_parts(
            self.0.client_id.clone(),
            self.0.tenant.clone(),
            self.0.subject.clone(),
            scope.canonical(),
        )
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// The tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// The subject (empty when not used).
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The scope set (empty when not used).
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.0.scope
    }

    /// The row key: the four parts percent-encoded and joined by `|`.
    #[must_use]
    pub fn storage_key(&self) -> String {
        self.0.storage_key.clone()
    }
}

impl PartialEq for TenantKey {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || (self.1 == other.1 && self.0.storage_key == other.0.storage_key)
    }
}

impl Eq for TenantKey {}

impl std::hash::Hash for TenantKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Kept beside the pointer: hashing reads no other memory.
        state.write_u64(self.1);
    }
}

impl PartialOrd for TenantKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TenantKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.storage_key.cmp(&other.0.storage_key)
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantKey({self})")
    }
}

impl Serialize for TenantKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TenantKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = KeyParts::deserialize(d)?;
        Ok(Self::from_parts(p.client_id, p.tenant, p.subject, p.scope))
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.client_id, self.0.tenant)?;
        if !self.0.subject.is_empty() {
            write!(f, "/{}", self.0.subject)?;
        }
        Ok(())
    }
}
