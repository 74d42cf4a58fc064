//! Key sets (JWKS, RFC 7517) and a sans-IO key-set cache.
//!
//! The key types ([`JwkSet`], [`Jwk`], [`PublicKey`], [`Curve`]) are parsed by the JOSE
//! layer and re-exported here. Parsing keeps RSA keys and EC P-256/P-384 keys; keys whose
//! `use` is not `sig`, symmetric keys, and keys that do not decode are skipped (and
//! counted). Selection is by `kid`; without a `kid`, only when exactly one key fits the
//! algorithm.
//!
//! [`KeySetCache`] tells its driver when to fetch: when it holds no keys, when they are
//! older than their lifetime, and after an unknown `kid`, but never more than once per
//! `cooldown` (60 s by default, as openid-client does).
//!
//! # How long a key set is trusted
//! - Its lifetime is the `Cache-Control: max-age` of the key-set response, clamped to
//!   [`KeySetCache::min_ttl`]..=[`KeySetCache::max_ttl`] (60 s to 24 h by default), or
//!   [`KeySetCache::max_age`] (10 minutes) when the response sends none (or `no-cache` /
//!   `no-store`, which give the minimum).
//! - Past its lifetime the set is stale: a driver that validates a token refetches it
//!   first (at most once per cooldown), so a key the provider removed stops being trusted
//!   as soon as the new set arrives.
//! - A failed refetch keeps the last good set usable for [`KeySetCache::stale_window`]
//!   (1 hour by default) past its lifetime; after that [`KeySetCache::usable_keys`] gives
//!   nothing and tokens fail with `NoKeySet` until a fetch succeeds.
//!
//! The cache exports to, and imports from, a serialisable snapshot for serverless
//! callers.

use std::time::{Duration, SystemTime};

use http::{Method, Request, Response};
use serde_json::Value;
use url::Url;

use crate::body;
use crate::error::{EndpointKind, Error, MalformedReason};
use crate::jose::error::IdTokenError;
pub use crate::jose::jwk::{Curve, Jwk, JwkSet, PublicKey};

/// Why the cache wants a fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchReason {
    /// No key set yet.
    Empty,
    /// The set is older than `max_age`.
    Stale,
    /// A token named a `kid` the set does not have.
    UnknownKid,
}

/// A serialisable snapshot of a [`KeySetCache`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct KeySetSnapshot {
    /// The key-set URL.
    pub jwks_uri: String,
    /// The last good document, as received.
    pub jwks: String,
    /// When it was fetched (Unix seconds).
    #[serde(with = "crate::time::unix_seconds")]
    pub fetched_at: SystemTime,
}

/// The key-set cache policy as a state machine. It does no I/O and speaks the
/// [`Flow`](crate::flow::Flow) verbs: its driver (the token flow, which decides when a
/// token needs fresh keys) asks [`KeySetCache::needs_fetch`], sends
/// [`KeySetCache::request`], and reports back with [`KeySetCache::handle_response`] or
/// [`KeySetCache::handle_transport_failure`]. See the module docs for how long a set is
/// trusted.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeySetCache {
    jwks_uri: Url,
    keys: Option<JwkSet>,
    raw: Option<String>,
    fetched_at: Option<SystemTime>,
    ttl: Duration,
    last_attempt: Option<SystemTime>,
    /// The lifetime of a set whose response names none (default 10 minutes).
    pub max_age: Duration,
    /// The shortest lifetime a `Cache-Control: max-age` may set (default 60 s).
    pub min_ttl: Duration,
    /// The longest lifetime a `Cache-Control: max-age` may set (default 24 h).
    pub max_ttl: Duration,
    /// How long past its lifetime a set stays usable while refetches fail (default 1 h).
    pub stale_window: Duration,
    /// At most one fetch per this interval (default 60 s).
    pub cooldown: Duration,
    /// Body cap.
    pub max_body: usize,
}

/// The `max-age` of a `Cache-Control` header; `Some(0)` for `no-cache` / `no-store`.
fn cache_control_max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive
                .split_once('=')
                .map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim())));
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                max_age = arg
                    .map(|a| a.trim_matches('"'))
                    .and_then(|a| a.parse::<u64>().ok())
                    .map(Duration::from_secs);
            }
        }
    }
    max_age
}

impl KeySetCache {
    /// An empty cache for `jwks_uri`.
    #[must_use]
    pub fn new(jwks_uri: Url) -> Self {
        Self {
            jwks_uri,
            keys: None,
            raw: None,
            fetched_at: None,
            ttl: Duration::from_secs(600),
            last_attempt: None,
            max_age: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            stale_window: Duration::from_secs(3600),
            cooldown: Duration::from_secs(60),
            max_body: body::DEFAULT_MAX_BODY,
        }
    }

    /// The key-set URL.
    #[must_use]
    pub fn jwks_uri(&self) -> &Url {
        &self.jwks_uri
    }

    /// The fetch request.
    #[must_use]
    pub fn request(&self) -> Request<Vec<u8>> {
        Request::builder()
            .method(Method::GET)
            .uri(self.jwks_uri.as_str())
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .body(Vec::new())
            .expect("a parsed URL is a valid URI")
    }

    fn cooled_down(&self, now: SystemTime) -> bool {
        self.last_attempt
            .is_none_or(|t| now >= crate::time::add(t, self.cooldown))
    }

    /// When the current set stops being fresh (`None` without a set).
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.fetched_at.map(|t| crate::time::add(t, self.ttl))
    }

    /// Should the driver fetch now, before trusting the set? (Empty or stale, and not
    /// within the cooldown of the last attempt.)
    #[must_use]
    pub fn needs_fetch(&self, now: SystemTime) -> Option<FetchReason> {
        if !self.cooled_down(now) {
            return None;
        }
        match self.expires_at() {
            None => Some(FetchReason::Empty),
            Some(t) if now >= t => Some(FetchReason::Stale),
            Some(_) => None,
        }
    }

    /// After a token named an unknown `kid`: may the driver refetch now? At most once
    /// per cooldown, so random `kid`s cannot force a fetch storm.
    #[must_use]
    pub fn may_refetch_for_unknown_kid(&self, now: SystemTime) -> bool {
        self.cooled_down(now)
    }

    /// Feeds a fetch response. On success the set is replaced and its lifetime taken
    /// from `Cache-Control: max-age` (bounded); on failure the last good set stays and
    /// the error is returned.
    pub fn handle_response(
        &mut self,
        now: SystemTime,
        resp: &Response<Vec<u8>>,
    ) -> Result<&JwkSet, Error> {
        self.last_attempt = Some(now);
        if !resp.status().is_success() {
            return Err(crate::error::malformed(
                EndpointKind::Jwks,
                resp,
                MalformedReason::UnexpectedStatus,
            ));
        }
        let map = body::object(EndpointKind::Jwks, resp, self.max_body)?;
        let raw = Value::Object(map).to_string();
        let set = JwkSet::parse(raw.as_bytes()).map_err(|e| {
            crate::error::malformed(
                EndpointKind::Jwks,
                resp,
                MalformedReason::InvalidJson {
                    detail: e.to_string(),
                },
            )
        })?;
        self.ttl = cache_control_max_age(resp.headers())
            .map_or(self.max_age, |age| age.clamp(self.min_ttl, self.max_ttl));
        self.keys = Some(set);
        self.raw = Some(raw);
        self.fetched_at = Some(now);
        Ok(self.keys.as_ref().expect("just set"))
    }

    /// Records a failed fetch (transport error). The last good set stays.
    pub fn handle_transport_failure(&mut self, now: SystemTime) {
        self.last_attempt = Some(now);
    }

    /// The last good set, whatever its age (see [`KeySetCache::usable_keys`]).
    #[must_use]
    pub fn keys(&self) -> Option<&JwkSet> {
        self.keys.as_ref()
    }

    /// The set to verify with at `now`: the last good set while it is fresh or within
    /// [`KeySetCache::stale_window`] past its lifetime; `None` after that (and with no
    /// set), so a set that can no longer be refreshed stops being trusted.
    #[must_use]
    pub fn usable_keys(&self, now: SystemTime) -> Option<&JwkSet> {
        let until = crate::time::add(self.expires_at()?, self.stale_window);
        (now < until).then_some(self.keys.as_ref()).flatten()
    }

    /// When the current set was fetched.
    #[must_use]
    pub fn fetched_at(&self) -> Option<SystemTime> {
        self.fetched_at
    }

    /// Exports the last good set.
    #[must_use]
    pub fn export(&self) -> Option<KeySetSnapshot> {
        Some(KeySetSnapshot {
            jwks_uri: self.jwks_uri.to_string(),
            jwks: self.raw.clone()?,
            fetched_at: self.fetched_at?,
        })
    }

    /// Rebuilds a cache from a snapshot (its age counts from the original fetch; its
    /// lifetime is [`KeySetCache::max_age`]).
    pub fn import(snapshot: &KeySetSnapshot) -> Result<Self, IdTokenError> {
        let jwks_uri = Url::parse(&snapshot.jwks_uri)
            .map_err(|e| IdTokenError::Malformed(format!("snapshot URL: {e}")))?;
        let mut cache = Self::new(jwks_uri);
        cache.keys = Some(JwkSet::parse(snapshot.jwks.as_bytes())?);
        cache.raw = Some(snapshot.jwks.clone());
        cache.fetched_at = Some(snapshot.fetched_at);
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Algorithm;

    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

    fn doc(keys: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    fn rsa(kid: Option<&str>, usage: Option<&str>) -> Value {
        let mut v = serde_json::json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"});
        if let Some(k) = kid {
            v["kid"] = k.into();
        }
        if let Some(u) = usage {
            v["use"] = u.into();
        }
        v
    }

    #[test]
    fn parse_skips_non_signing_and_symmetric_keys() {
        let set = JwkSet::parse(&doc(&[
            rsa(Some("a"), Some("sig")),
            rsa(Some("b"), Some("enc")),
            serde_json::json!({"kty": "oct", "k": "AAAA"}),
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        ]))
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped, 3);
        assert!(JwkSet::parse(b"{}").is_err());
        assert!(JwkSet::parse(b"[]").is_err());
    }

    #[test]
    fn selection_rules() {
        let one = JwkSet::parse(&doc(&[rsa(None, None)])).unwrap();
        assert!(one.select(None, Algorithm::RS256).is_ok());
        assert!(matches!(
            one.select(None, Algorithm::ES256),
            Err(IdTokenError::NoMatchingKey { .. })
        ));
        assert!(matches!(
            one.select(Some("x"), Algorithm::RS256),
            Err(IdTokenError::UnknownKid(_))
        ));
        let two = JwkSet::parse(&doc(&[rsa(Some("a"), None), rsa(Some("b"), None)])).unwrap();
        assert_eq!(
            two.select(None, Algorithm::RS256).unwrap_err(),
            IdTokenError::AmbiguousKey
        );
        assert_eq!(
            two.select(Some("b"), Algorithm::RS256)
                .unwrap()
                .kid
                .as_deref(),
            Some("b")
        );
        let mut restricted = rsa(Some("c"), None);
        restricted["alg"] = "PS256".into();
        let r = JwkSet::parse(&doc(&[restricted])).unwrap();
        assert!(r.select(Some("c"), Algorithm::RS256).is_err());
        assert!(r.select(Some("c"), Algorithm::PS256).is_ok());
    }

    #[test]
    fn cache_control_max_age_sets_the_lifetime_within_bounds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let fetch = |cache_control: Option<&str>| {
            let mut c = KeySetCache::new(Url::parse("https://idp.example/jwks").unwrap());
            let mut b = Response::builder()
                .status(200)
                .header("content-type", "application/json");
            if let Some(cc) = cache_control {
                b = b.header("cache-control", cc);
            }
            c.handle_response(t0, &b.body(doc(&[rsa(Some("a"), None)])).unwrap())
                .unwrap();
            c.expires_at().unwrap().duration_since(t0).unwrap()
        };
        assert_eq!(fetch(None), Duration::from_secs(600), "the default");
        assert_eq!(
            fetch(Some("public, max-age=7200")),
            Duration::from_secs(7200)
        );
        assert_eq!(
            fetch(Some("max-age=5")),
            Duration::from_secs(60),
            "lower bound"
        );
        assert_eq!(
            fetch(Some("max-age=99999999")),
            Duration::from_secs(86_400),
            "upper bound"
        );
        assert_eq!(fetch(Some("no-store")), Duration::from_secs(60));
        assert_eq!(fetch(Some("max-age=junk")), Duration::from_secs(600));
    }

    #[test]
    fn cache_policy() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut c = KeySetCache::new(Url::parse("https://idp.example/jwks").unwrap());
        assert_eq!(c.needs_fetch(t0), Some(FetchReason::Empty));
        let ok = Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(doc(&[rsa(Some("a"), None)]))
            .unwrap();
        c.handle_response(t0, &ok).unwrap();
        assert_eq!(c.needs_fetch(t0), None);
        assert!(!c.may_refetch_for_unknown_kid(t0 + Duration::from_secs(59)));
        assert!(c.may_refetch_for_unknown_kid(t0 + Duration::from_secs(60)));
        let later = t0 + Duration::from_secs(601);
        assert_eq!(c.needs_fetch(later), Some(FetchReason::Stale));
        let bad = Response::builder().status(503).body(Vec::new()).unwrap();
        assert!(c.handle_response(later, &bad).is_err());
        assert_eq!(c.keys().unwrap().keys.len(), 1, "last good set kept");
        assert_eq!(
            c.needs_fetch(later + Duration::from_secs(10)),
            None,
            "cooldown after a failed attempt"
        );
        // Within the stale window the last good set is still usable; past it, not.
        assert!(c.usable_keys(later).is_some());
        assert!(
            c.usable_keys(t0 + Duration::from_secs(600 + 3600))
                .is_none()
        );
        let snap = c.export().unwrap();
        let json = serde_json::to_string(&snap).unwrap();
        let back = KeySetCache::import(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.keys(), c.keys());
        assert_eq!(back.fetched_at(), Some(t0));
    }
}
