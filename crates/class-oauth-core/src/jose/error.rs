//! Why an ID token was refused.

/// Why an ID token was rejected. The messages say which check failed and never contain
/// the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Larger than the cap.
    #[error("the ID token is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// Not a well-formed compact JWS.
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// `alg` is `none`: an unsigned token.
    #[error("the ID token is unsigned (alg none); unsigned ID tokens are never accepted")]
    AlgorithmNone,
    /// `alg` is not on the allow-list.
    #[error(
        "the ID token is signed with {0}, which is not on the allowed list; configure the algorithm Class uses"
    )]
    AlgorithmNotAllowed(String),
    /// A required claim is absent.
    #[error("the ID token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or value.
    #[error("the ID token's `{claim}` claim is invalid: {detail}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `iss` is not the issuer.
    #[error("the ID token was issued by `{found}`, not by the expected issuer `{expected}`")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `aud` does not contain the client id (or is empty).
    #[error("the ID token is not meant for this client (aud does not contain the client id)")]
    AudienceMismatch,
    /// `aud` lists an audience that is neither the client nor one it trusts.
    #[error(
        "the ID token is also meant for an audience this client does not trust; name it with trust_audience if it is yours"
    )]
    UntrustedAudience,
    /// `azp` is present and not the client id.
    #[error("the ID token's azp is another client")]
    AzpMismatch,
    /// `exp` is in the past (beyond the leeway).
    #[error(
        "the ID token expired at {exp} (now {now}, leeway {leeway_secs} s); check the server's and this machine's clocks"
    )]
    Expired {
        /// `exp` (Unix seconds).
        exp: u64,
        /// `now` (Unix seconds).
        now: u64,
        /// Leeway in seconds.
        leeway_secs: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("the ID token was issued in the future (iat {iat}, now {now}); check the clocks")]
    IssuedInFuture {
        /// `iat`.
        iat: u64,
        /// `now`.
        now: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("the ID token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// `nbf`.
        nbf: u64,
        /// `now`.
        now: u64,
    },
    /// A nonce was sent but the token has none.
    #[error(
        "the ID token has no nonce although one was sent; it may be replayed from another login"
    )]
    NonceMissing,
    /// The nonce differs from the one sent.
    #[error("the ID token's nonce is not the one sent with this login (possible replay)")]
    NonceMismatch,
    /// `max_age` was requested but `auth_time` is absent.
    #[error("max_age was requested but the ID token has no auth_time")]
    AuthTimeMissing,
    /// The authentication is older than `max_age`.
    #[error(
        "the user authenticated at {auth_time}, longer ago than the requested max_age of {max_age_secs} s"
    )]
    AuthenticationTooOld {
        /// `auth_time`.
        auth_time: u64,
        /// `max_age` in seconds.
        max_age_secs: u64,
    },
    /// Refreshed token: another issuer.
    #[error("the refreshed ID token has another issuer than the original")]
    RefreshIssuerChanged,
    /// Refreshed token: another subject (OIDC Core 12.2).
    #[error(
        "the refreshed ID token is about another user: sub mismatch, expected `{expected}`, got `{found}`"
    )]
    RefreshSubjectChanged {
        /// Original `sub`.
        expected: String,
        /// New `sub`.
        found: String,
    },
    /// Refreshed token: a nonce that is not the original's.
    #[error("the refreshed ID token carries a nonce that is not the original's")]
    RefreshNonceMismatch,
    /// Refreshed token: another `auth_time`.
    #[error("the refreshed ID token's auth_time differs from the original's")]
    RefreshAuthTimeChanged,
    /// No key set is available.
    #[error(
        "no key set is available to verify the ID token (the provider advertises no jwks_uri, or it could not be fetched)"
    )]
    NoKeySet,
    /// The header names a `kid` the key set does not have.
    #[error("the ID token was signed with key `{0}`, which is not in the issuer's key set")]
    UnknownKid(String),
    /// No key fits the algorithm (and `kid`).
    #[error("no key in the issuer's key set fits {alg}{}", kid.as_ref().map(|k| format!(" with kid `{k}`")).unwrap_or_default())]
    NoMatchingKey {
        /// The algorithm.
        alg: &'static str,
        /// The `kid`, when sent.
        kid: Option<String>,
    },
    /// No `kid` and several keys fit.
    #[error("the ID token names no kid and several keys fit; the provider must send kid")]
    AmbiguousKey,
    /// The signature does not verify.
    #[error("the ID token's signature does not verify with the issuer's key")]
    BadSignature,
    /// `at_hash` does not match the access token.
    #[error("the ID token's at_hash does not match the access token it came with")]
    AtHashMismatch,
}

impl IdTokenError {
    /// True for [`IdTokenError::UnknownKid`]: a refetch of the key set (at most once per
    /// cooldown) may find the key after a rotation.
    #[must_use]
    pub fn wants_key_refresh(&self) -> bool {
        matches!(self, Self::UnknownKid(_) | Self::NoKeySet)
    }
}
