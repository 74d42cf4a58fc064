//! ID-token validation: OpenID Connect Core 3.1.3.7 and 12.2, sans-IO.
//!
//! # The checks, in order, and what changes them
//! | # | check | fails with | configured by |
//! |---|---|---|---|
//! | 1 | at most 64 KiB, exactly three parts, strict base64url, JSON objects | `TooLarge`, `Malformed` | - |
//! | 2 | `alg` is on the allow-list (never `none`; HS* only with a client secret set on purpose) | `AlgorithmNone`, `AlgorithmNotAllowed` | [`IdTokenValidator::with_algorithms`], [`IdTokenValidator::for_endpoints`] (discovery's list ∩ supported), [`IdTokenValidator::danger_allow_hmac_with_client_secret`] |
//! | 3 | claim types are strict (an `exp` that is a string is an error, never "absent") | `InvalidClaim`, `MissingClaim` | - |
//! | 4 | `iss` equals the issuer exactly | `IssuerMismatch` | the issuer given to the validator |
//! | 5 | `aud` contains the client id; not empty; every other audience is one the caller trusts, with or without `azp`; `azp`, when present, is the client | `AudienceMismatch`, `UntrustedAudience`, `AzpMismatch` | [`IdTokenValidator::trust_audience`] |
//! | 6 | `exp`, `iat` (required) and `nbf` (when present) against `now` with leeway | `Expired`, `IssuedInFuture`, `NotYetValid` | [`IdTokenValidator::with_leeway`] (default 60 s, capped at 5 min) |
//! | 7 | `nonce` equals the one sent, when one was sent | `NonceMissing`, `NonceMismatch` | [`Expectations::nonce`] |
//! | 8 | `auth_time` within `max_age` when `max_age` was requested | `AuthTimeMissing`, `AuthenticationTooOld` | [`Expectations::max_age`] |
//! | 9 | refreshed token: same `iss` and `sub`, `nonce` only if equal to the original's, same `auth_time` | `RefreshIssuerChanged`, `RefreshSubjectChanged`, `RefreshNonceMismatch`, `RefreshAuthTimeChanged` | [`Expectations::refreshed_from`] |
//! | 10 | a key from the issuer's key set: by `kid`, or the only fitting key | `UnknownKid` (driver may refetch once per cooldown), `NoMatchingKey`, `AmbiguousKey`, `NoKeySet` | - |
//! | 11 | the signature | `BadSignature` | - |
//! | 12 | `at_hash`, when present | `AtHashMismatch` | [`Expectations::access_token`] |
//!
//! The claim checks (3 to 9) run before key selection, so a junk or expired token never
//! makes the driver refetch the key set; only a well-formed, otherwise acceptable token
//! whose `kid` is unknown does. Keys in the token header (`jwk`, `jku`, `x5u`, `x5c`)
//! are never used.
//!
//! # Driving it with a key-set cache
//! ```text
//! match validator.validate(token, cache.keys(), now, &expect) {
//!     Err(e) if e.wants_key_refresh() && cache.may_refetch_for_unknown_kid(now) => {
//!         send cache.request(); cache.handle_response(now, &resp); validate once more
//!     }
//!     other => other,
//! }
//! ```

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::authorize::PendingAuthorization;
use crate::client::IdTokenTrust;
use crate::environment::Endpoints;
use crate::jose::{Algorithm, Jws};
use crate::jwks::JwkSet;
use crate::secret::{AccessToken, ClientSecret, IdToken, Nonce, constant_time_eq};
use crate::types::{ClientId, IssuerUrl};

/// Default clock leeway.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Largest leeway accepted (FAPI rejects tokens expired more than 5 minutes ago).
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

pub use crate::jose::error::IdTokenError;

/// The claims of a validated ID token. Only [`IdTokenValidator::validate`] makes them
/// from a token (deserialising is for stores that kept validated claims).
///
/// `Debug` shows the subject, issuer, audiences and times, and which personal claims are
/// present, never their values (email, extra claims) or the nonce.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `iss`.
    pub iss: String,
    /// `sub`: the user's stable identifier at Class.
    pub sub: String,
    /// `aud`, as a list.
    pub aud: Vec<String>,
    /// `exp` (Unix seconds).
    pub exp: u64,
    /// `iat` (Unix seconds).
    pub iat: u64,
    /// `nbf`.
    pub nbf: Option<u64>,
    /// `auth_time`.
    pub auth_time: Option<u64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `azp`.
    pub azp: Option<String>,
    /// `at_hash`.
    pub at_hash: Option<String>,
    /// `acr`.
    pub acr: Option<String>,
    /// `amr`.
    pub amr: Option<Vec<String>>,
    /// `email` (Class: with the email scope).
    pub email: Option<String>,
    /// `email_verified`.
    pub email_verified: Option<bool>,
    /// Every other claim.
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for IdTokenClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::claims::{ClaimNames, presence};
        f.debug_struct("IdTokenClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("auth_time", &self.auth_time)
            .field("nonce", &presence(self.nonce.as_ref()))
            .field("azp", &self.azp)
            .field("at_hash", &presence(self.at_hash.as_ref()))
            .field("acr", &self.acr)
            .field("amr", &self.amr)
            .field("email", &presence(self.email.as_ref()))
            .field("email_verified", &self.email_verified)
            .field("extra", &ClaimNames(&self.extra))
            .finish()
    }
}

fn numeric_date(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, IdTokenError> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            match n.as_f64() {
                // Truncation intended: NumericDate may carry fractions.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
                _ => Err(IdTokenError::InvalidClaim {
                    claim: name,
                    detail: "not a non-negative time in seconds".into(),
                }),
            }
        }
        Some(other) => Err(IdTokenError::InvalidClaim {
            claim: name,
            detail: format!(
                "expected a number, found {}",
                crate::body::json_type(&other)
            ),
        }),
    }
}

fn string_claim(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, IdTokenError> {
    crate::claims::take_string(claims, name, crate::claims::Null::WrongType).map_err(|e| {
        IdTokenError::InvalidClaim {
            claim: name,
            detail: e.detail(),
        }
    })
}

impl IdTokenClaims {
    /// Parses claims with strict types (only the validator calls it).
    pub(crate) fn from_json(mut claims: Map<String, Value>) -> Result<Self, IdTokenError> {
        let iss = string_claim(&mut claims, "iss")?.ok_or(IdTokenError::MissingClaim("iss"))?;
        let sub = string_claim(&mut claims, "sub")?
            .filter(|s| !s.is_empty())
            .ok_or(IdTokenError::MissingClaim("sub"))?;
        let aud = match claims.remove("aud") {
            None => return Err(IdTokenError::MissingClaim("aud")),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(IdTokenError::InvalidClaim {
                        claim: "aud",
                        detail: "an empty list".into(),
                    });
                }
                items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(IdTokenError::InvalidClaim {
                            claim: "aud",
                            detail: "a list with a non-string".into(),
                        }),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => {
                return Err(IdTokenError::InvalidClaim {
                    claim: "aud",
                    detail: "neither a string nor a list".into(),
                });
            }
        };
        let exp = numeric_date(&mut claims, "exp")?.ok_or(IdTokenError::MissingClaim("exp"))?;
        let iat = numeric_date(&mut claims, "iat")?.ok_or(IdTokenError::MissingClaim("iat"))?;
        let nbf = numeric_date(&mut claims, "nbf")?;
        let auth_time = numeric_date(&mut claims, "auth_time")?;
        let nonce = string_claim(&mut claims, "nonce")?;
        let azp = string_claim(&mut claims, "azp")?;
        let at_hash = string_claim(&mut claims, "at_hash")?;
        let acr = string_claim(&mut claims, "acr")?;
        let amr = match claims.remove("amr") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(_) => {
                return Err(IdTokenError::InvalidClaim {
                    claim: "amr",
                    detail: "not a list".into(),
                });
            }
        };
        let email = string_claim(&mut claims, "email")?;
        let email_verified = crate::claims::take_bool(
            &mut claims,
            "email_verified",
            crate::claims::Null::WrongType,
            false,
        )
        .map_err(|e| IdTokenError::InvalidClaim {
            claim: "email_verified",
            detail: e.detail(),
        })?;
        Ok(Self {
            iss,
            sub,
            aud,
            exp,
            iat,
            nbf,
            auth_time,
            nonce,
            azp,
            at_hash,
            acr,
            amr,
            email,
            email_verified,
            extra: claims,
        })
    }
}

/// What the caller expects of this particular token. There is no `Default`: each
/// constructor says which checks apply ([`Expectations::for_pending`] with the nonce
/// sent, [`Expectations::for_refresh`], or [`Expectations::without_nonce`] for a grant
/// that sent none), so a nonce check cannot be left off by accident.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Expectations<'a> {
    /// The nonce sent in the authorization request.
    pub nonce: Option<&'a Nonce>,
    /// The access token issued with the ID token (for `at_hash`).
    pub access_token: Option<&'a AccessToken>,
    /// `max_age` sent in the authorization request.
    pub max_age: Option<Duration>,
    /// For a token from a refresh: the original token's claims.
    pub refreshed_from: Option<&'a IdTokenClaims>,
}

impl<'a> Expectations<'a> {
    /// Expectations for a token whose request sent no nonce (the password grant, or a
    /// login made with [`crate::NonceMode::Disabled`]).
    #[must_use]
    pub fn without_nonce() -> Self {
        Self {
            nonce: None,
            access_token: None,
            max_age: None,
            refreshed_from: None,
        }
    }

    /// Expectations for the token of a code exchange: the pending record's nonce and
    /// `max_age`.
    #[must_use]
    pub fn for_pending(pending: &'a PendingAuthorization) -> Self {
        Self {
            nonce: pending.nonce.as_ref(),
            max_age: pending.max_age.map(Duration::from_secs),
            ..Self::without_nonce()
        }
    }

    /// Expectations for the token of a refresh.
    #[must_use]
    pub fn for_refresh(original: &'a IdTokenClaims) -> Self {
        Self {
            refreshed_from: Some(original),
            ..Self::without_nonce()
        }
    }

    /// Adds the access token for the `at_hash` check.
    #[must_use]
    pub fn with_access_token(mut self, token: &'a AccessToken) -> Self {
        self.access_token = Some(token);
        self
    }

    /// Sets the nonce.
    #[must_use]
    pub fn with_nonce(mut self, nonce: &'a Nonce) -> Self {
        self.nonce = Some(nonce);
        self
    }
}

/// Validates ID tokens for one client of one issuer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IdTokenValidator {
    issuer: IssuerUrl,
    client_id: ClientId,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    trusted_audiences: Vec<String>,
    hmac_secret: Option<ClientSecret>,
    trust: IdTokenTrust,
}

impl IdTokenValidator {
    /// A validator with the defaults: RS256 only, 60 s leeway.
    #[must_use]
    pub fn new(issuer: IssuerUrl, client_id: ClientId) -> Self {
        Self {
            issuer,
            client_id,
            algorithms: vec![Algorithm::RS256],
            leeway: DEFAULT_LEEWAY,
            trusted_audiences: Vec::new(),
            hmac_secret: None,
            trust: IdTokenTrust::Signature,
        }
    }

    /// A validator for a client's endpoints: algorithms from discovery's
    /// `id_token_signing_alg_values_supported` intersected with the asymmetric ones this
    /// library verifies; RS256 when discovery says nothing.
    #[must_use]
    pub fn for_endpoints(endpoints: &Endpoints, client_id: ClientId) -> Self {
        let mut v = Self::new(endpoints.issuer.clone(), client_id);
        if let Some(advertised) = &endpoints.id_token_signing_alg_values_supported {
            v.algorithms = advertised
                .iter()
                .filter_map(|a| Algorithm::parse(a))
                .filter(|a| !a.is_hmac())
                .collect();
        }
        v
    }

    /// Sets the allowed algorithms (HS* are ignored here; see
    /// [`IdTokenValidator::danger_allow_hmac_with_client_secret`]).
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().filter(|a| !a.is_hmac()).collect();
        self
    }

    /// Sets the clock leeway for `exp`, `iat`, `nbf` and `auth_time`; capped at 5 minutes.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Trusts an extra audience (another client of the same partner, say). Without it, a
    /// token that lists any audience besides the client id is refused, whatever its
    /// `azp` (OIDC Core 3.1.3.7 (3)).
    #[must_use]
    pub fn trust_audience(mut self, audience: impl Into<String>) -> Self {
        self.trusted_audiences.push(audience.into());
        self
    }

    /// Accepts HS256/384/512 tokens keyed with the client secret (OIDC Core 10.1). Only
    /// for a provider known to sign that way: anyone holding the secret can mint tokens.
    #[must_use]
    pub fn danger_allow_hmac_with_client_secret(
        mut self,
        secret: ClientSecret,
        algorithms: &[Algorithm],
    ) -> Self {
        self.hmac_secret = Some(secret);
        self.algorithms
            .extend(algorithms.iter().copied().filter(|a| a.is_hmac()));
        self
    }

    /// Sets how tokens are trusted when no key set is available. With
    /// [`IdTokenTrust::DangerTokenEndpointTls`] a token validated without a key set has
    /// every claim checked but no signature verified (OIDC Core 3.1.3.7 (6)); only pass
    /// it tokens that came straight from the token endpoint over TLS.
    #[must_use]
    pub fn with_trust(mut self, trust: IdTokenTrust) -> Self {
        self.trust = trust;
        self
    }

    /// The leeway in force.
    #[must_use]
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The allowed algorithms.
    #[must_use]
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Validates `token` with the key set `keys` at `now`. See the module docs for the
    /// order of checks.
    pub fn validate(
        &self,
        token: &IdToken,
        keys: Option<&JwkSet>,
        now: SystemTime,
        expect: &Expectations<'_>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let raw = token.secret();
        let jws = Jws::parse(raw)?;
        if jws.header.alg.eq_ignore_ascii_case("none") {
            return Err(IdTokenError::AlgorithmNone);
        }
        let alg = Algorithm::parse(&jws.header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| {
                IdTokenError::AlgorithmNotAllowed(
                    crate::text::truncate(&jws.header.alg, 20).to_owned(),
                )
            })?;
        if alg.is_hmac() && self.hmac_secret.is_none() {
            return Err(IdTokenError::AlgorithmNotAllowed(alg.as_str().to_owned()));
        }
        let claims = IdTokenClaims::from_json(crate::jose::json_object(&jws.payload, "payload")?)?;
        self.check_claims(&claims, now, expect)?;

        let message = jws.signing_input(raw);
        match (&self.hmac_secret, alg.is_hmac()) {
            (Some(secret), true) => {
                crate::jose::verify_hmac(alg, secret.secret().as_bytes(), message, jws.signature())?
            }
            _ => match keys {
                Some(keys) => {
                    let key = keys.select(jws.header.kid.as_deref(), alg)?;
                    crate::jose::verify(alg, &key.key, message, jws.signature())?;
                }
                // The named opt-in: the token came from the token endpoint over TLS.
                None if self.trust == IdTokenTrust::DangerTokenEndpointTls => {}
                None => return Err(IdTokenError::NoKeySet),
            },
        }

        if let (Some(at_hash), Some(at)) = (&claims.at_hash, expect.access_token) {
            let digest = ring::digest::digest(alg.digest(), at.secret().as_bytes());
            let half = &digest.as_ref()[..digest.as_ref().len() / 2];
            if !constant_time_eq(URL_SAFE_NO_PAD.encode(half).as_bytes(), at_hash.as_bytes()) {
                return Err(IdTokenError::AtHashMismatch);
            }
        }
        Ok(claims)
    }

    fn check_claims(
        &self,
        c: &IdTokenClaims,
        now: SystemTime,
        expect: &Expectations<'_>,
    ) -> Result<(), IdTokenError> {
        if c.iss != self.issuer.as_str() {
            return Err(IdTokenError::IssuerMismatch {
                expected: self.issuer.as_str().to_owned(),
                found: crate::text::truncate(&c.iss, 200).to_owned(),
            });
        }
        let client = self.client_id.as_str();
        if !c.aud.iter().any(|a| a == client) {
            return Err(IdTokenError::AudienceMismatch);
        }
        if c.azp.as_deref().is_some_and(|azp| azp != client) {
            return Err(IdTokenError::AzpMismatch);
        }
        // OIDC Core 3.1.3.7 (3): reject the token if it lists an audience the client does
        // not trust, whatever `azp` says.
        if c.aud
            .iter()
            .any(|a| a != client && !self.trusted_audiences.contains(a))
        {
            return Err(IdTokenError::UntrustedAudience);
        }
        let now_s = crate::time::to_unix(now);
        let leeway = self.leeway.as_secs();
        if now_s > c.exp.saturating_add(leeway) {
            return Err(IdTokenError::Expired {
                exp: c.exp,
                now: now_s,
                leeway_secs: leeway,
            });
        }
        if c.iat > now_s.saturating_add(leeway) {
            return Err(IdTokenError::IssuedInFuture {
                iat: c.iat,
                now: now_s,
            });
        }
        if let Some(nbf) = c.nbf {
            if nbf > now_s.saturating_add(leeway) {
                return Err(IdTokenError::NotYetValid { nbf, now: now_s });
            }
        }
        if let Some(sent) = expect.nonce {
            match &c.nonce {
                None => return Err(IdTokenError::NonceMissing),
                Some(n) if !constant_time_eq(n.as_bytes(), sent.secret().as_bytes()) => {
                    return Err(IdTokenError::NonceMismatch);
                }
                Some(_) => {}
            }
        }
        if let Some(max_age) = expect.max_age {
            let auth_time = c.auth_time.ok_or(IdTokenError::AuthTimeMissing)?;
            if now_s
                > auth_time
                    .saturating_add(max_age.as_secs())
                    .saturating_add(leeway)
            {
                return Err(IdTokenError::AuthenticationTooOld {
                    auth_time,
                    max_age_secs: max_age.as_secs(),
                });
            }
        }
        if let Some(orig) = expect.refreshed_from {
            if c.iss != orig.iss {
                return Err(IdTokenError::RefreshIssuerChanged);
            }
            if c.sub != orig.sub {
                return Err(IdTokenError::RefreshSubjectChanged {
                    expected: orig.sub.clone(),
                    found: crate::text::truncate(&c.sub, 200).to_owned(),
                });
            }
            if c.nonce.is_some() && c.nonce != orig.nonce {
                return Err(IdTokenError::RefreshNonceMismatch);
            }
            if let (Some(a), Some(b)) = (c.auth_time, orig.auth_time) {
                if a != b {
                    return Err(IdTokenError::RefreshAuthTimeChanged);
                }
            }
        }
        Ok(())
    }
}
