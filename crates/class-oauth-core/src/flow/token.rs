//! The token flow: a token request, then (when an ID token comes back) its validation,
//! refetching the key set when it must.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Response;
use url::Url;

use super::{Flow, OnFailure, Step, misuse};
use crate::callback::VerifiedCallback;
use crate::client::Client;
use crate::error::Error;
use crate::id_token::{Expectations, IdTokenClaims, IdTokenError, IdTokenValidator};
use crate::jwks::KeySetCache;
use crate::secret::Nonce;
use crate::token::{TokenRequest, TokenSet};

/// Key-set caches owned by whoever drives the flows (a client keeps one behind its own
/// lock). A token flow borrows the cache for its key-set URI for a moment: to read the
/// keys while it validates an ID token, and to record a refetch's answer. The core
/// itself holds no lock and no shared mutable state.
pub trait KeyCache: Send + Sync + fmt::Debug {
    /// Runs `f` with the cache for `jwks_uri`: the one held, or a new empty one when the
    /// holder has none or one for another URI.
    fn with_cache(&self, jwks_uri: &Url, f: &mut dyn FnMut(&mut KeySetCache));
}

/// The key set a token flow validates against: a [`KeyCache`] and the provider's
/// key-set URI. Cheap to clone; every flow of one client shares the cache.
#[derive(Clone, Debug)]
pub struct SharedKeySet {
    cache: Arc<dyn KeyCache>,
    jwks_uri: Url,
}

impl SharedKeySet {
    /// The cache for `jwks_uri` in `cache`.
    #[must_use]
    pub fn new(cache: Arc<dyn KeyCache>, jwks_uri: Url) -> Self {
        Self { cache, jwks_uri }
    }

    /// The key-set URI.
    #[must_use]
    pub fn jwks_uri(&self) -> &Url {
        &self.jwks_uri
    }

    /// Runs `f` with the cache (borrowed from its owner for the call).
    pub fn with<R>(&self, f: impl FnOnce(&mut KeySetCache) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.cache.with_cache(&self.jwks_uri, &mut |cache| {
            if let Some(f) = f.take() {
                out = Some(f(cache));
            }
        });
        match out {
            Some(out) => out,
            // The owner did not call back: an empty cache of our own answers (no keys:
            // validation then fails, never passes).
            None => f.map_or_else(
                || unreachable!("the closure ran but left no result"),
                |f| f(&mut KeySetCache::new(self.jwks_uri.clone())),
            ),
        }
    }
}

/// Tokens with their validated ID-token claims.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatedTokens {
    /// The token set.
    pub tokens: TokenSet,
    /// The ID token's claims, when an ID token came and was validated.
    pub id_claims: Option<IdTokenClaims>,
}

impl ValidatedTokens {
    /// Tokens with (optionally) their validated ID-token claims.
    #[must_use]
    pub fn new(tokens: TokenSet, id_claims: Option<IdTokenClaims>) -> Self {
        Self { tokens, id_claims }
    }
}

/// What one validation pass decided.
enum Checked {
    /// Fetch the key set (this request; `None` when there is no cache to fetch into)
    /// and validate again.
    Fetch(Option<http::Request<Vec<u8>>>),
    /// Validated, or refused.
    Done(Result<IdTokenClaims, IdTokenError>),
}

#[derive(Debug)]
struct IdCheck {
    validator: IdTokenValidator,
    keys: Option<SharedKeySet>,
    nonce: Option<Nonce>,
    max_age: Option<Duration>,
    original: Option<IdTokenClaims>,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one short-lived value per flow; boxing buys nothing"
)]
enum Phase {
    Token,
    AwaitToken,
    Validate {
        tokens: TokenSet,
        fetched: bool,
    },
    AwaitKeys {
        tokens: TokenSet,
    },
    /// Failed before the caller polled again.
    Failed(Error),
    Finished,
}

/// A token request, then (when an ID token comes back) its validation. The token is
/// validated against the cached key set first, so a token that fails the claim checks
/// never causes a key-set request; only an otherwise acceptable token whose key is
/// missing (empty cache, unknown `kid`) or whose set is stale makes the flow fetch the
/// key set, once, and only outside the cache's cooldown; the token is then validated
/// again with the new set (a failed fetch keeps the last good set within its stale
/// window, see [`crate::jwks`]).
#[derive(Debug)]
pub struct TokenFlow {
    client: Client,
    request: TokenRequest,
    /// Boxed: most flows have none, and every flow is moved whole into its driver.
    id_check: Option<Box<IdCheck>>,
    phase: Phase,
    retain_received: bool,
    received: Option<Box<TokenSet>>,
}

impl TokenFlow {
    /// A token request with no ID-token validation (none is expected). An ID token in the
    /// response is dropped, never returned unvalidated; use
    /// [`TokenFlow::with_id_token_validation`] to receive one.
    #[must_use]
    pub fn new(client: &Client, request: TokenRequest) -> Self {
        Self {
            client: client.clone(),
            request,
            id_check: None,
            phase: Phase::Token,
            retain_received: false,
            received: None,
        }
    }

    /// Keeps a copy of the parsed token response for [`TokenFlow::received`] (off by
    /// default: it costs a copy of the token set per exchange).
    #[must_use]
    pub fn retain_received(mut self) -> Self {
        self.retain_received = true;
        self
    }

    /// The token set the server answered with, as soon as it has been parsed, whether or
    /// not the ID-token validation that follows succeeds (with
    /// [`TokenFlow::retain_received`]). A token manager writes its
    /// (rotated, one-time) refresh token durably before anything else can fail; the
    /// access token must still not be used unless the flow ends in `Ok`.
    #[must_use]
    pub fn received(&self) -> Option<&TokenSet> {
        self.received.as_deref()
    }

    /// The token request (after its HTTP request is built, a password grant's password
    /// is already gone from it).
    pub fn request(&self) -> &TokenRequest {
        &self.request
    }

    /// True while the flow waits for the key set (after the token response arrived).
    #[must_use]
    pub fn awaiting_keys(&self) -> bool {
        matches!(self.phase, Phase::AwaitKeys { .. })
    }

    /// Redeems the code of a verified callback and validates the ID token against the
    /// pending record's nonce and max_age.
    #[must_use]
    pub fn authorization_code(
        client: &Client,
        verified: VerifiedCallback,
        validator: IdTokenValidator,
        keys: Option<SharedKeySet>,
    ) -> Self {
        let (pending, code) = verified.into_parts();
        let nonce = pending.nonce.clone();
        let max_age = pending.max_age();
        let mut flow = Self::new(client, TokenRequest::from_pending(pending, code));
        flow.id_check = Some(Box::new(IdCheck {
            validator,
            keys,
            nonce,
            max_age,
            original: None,
        }));
        flow
    }

    /// Validates any ID token in the response (for the password grant and refresh).
    /// `original` is the first ID token's claims, for the refresh rules of OIDC Core 12.2.
    #[must_use]
    pub fn with_id_token_validation(
        mut self,
        validator: IdTokenValidator,
        keys: Option<SharedKeySet>,
        original: Option<IdTokenClaims>,
    ) -> Self {
        self.id_check = Some(Box::new(IdCheck {
            validator,
            keys,
            nonce: None,
            max_age: None,
            original,
        }));
        self
    }

    fn validate(
        &mut self,
        tokens: TokenSet,
        fetched: bool,
        now: SystemTime,
    ) -> Step<ValidatedTokens> {
        let Some(check) = &self.id_check else {
            // No validator: an ID token nobody checked is never handed out (the stored
            // one a refresh response kept was validated when it came).
            let mut tokens = tokens;
            if tokens.id_token.as_ref() != self.request.previous_id_token() {
                tokens.id_token = None;
            }
            return self.finish(Ok(ValidatedTokens {
                tokens,
                id_claims: None,
            }));
        };
        // A refresh response without an ID token keeps the stored one (OIDC Core 12.2
        // makes it optional); it was validated when it came and is not checked again (its
        // `exp` may have passed, its `at_hash` is for the first access token).
        let Some(id_token) = tokens
            .id_token
            .clone()
            .filter(|t| Some(t) != self.request.previous_id_token())
        else {
            return self.finish(Ok(ValidatedTokens {
                tokens,
                id_claims: None,
            }));
        };
        let decide = |guard: Option<&mut KeySetCache>| {
            let guard = guard.map(|g| &*g);
            let keys = guard.and_then(|g| g.usable_keys(now));
            let mut expect = Expectations {
                nonce: check.nonce.as_ref(),
                max_age: check.max_age,
                refreshed_from: check.original.as_ref(),
                ..Expectations::without_nonce()
            };
            expect = expect.with_access_token(&tokens.access_token);
            match check.validator.validate(&id_token, keys, now, &expect) {
                // An unknown `kid` (or no usable set): refetch, at most once per cooldown.
                Err(e)
                    if e.wants_key_refresh()
                        && !fetched
                        && guard.is_some_and(|g| g.may_refetch_for_unknown_kid(now)) =>
                {
                    Checked::Fetch(guard.map(KeySetCache::request))
                }
                // Accepted with a stale set: refetch and validate again, so a key the
                // provider has removed stops being trusted. A token that fails its
                // claim checks never gets here, so it never causes a fetch.
                Ok(_) if !fetched && guard.is_some_and(|g| g.needs_fetch(now).is_some()) => {
                    Checked::Fetch(guard.map(KeySetCache::request))
                }
                other => Checked::Done(other),
            }
        };
        let outcome = match &check.keys {
            Some(keys) => keys.with(|cache| decide(Some(cache))),
            None => decide(None),
        };
        match outcome {
            Checked::Fetch(Some(req)) => {
                self.phase = Phase::AwaitKeys { tokens };
                Step::Send(req)
            }
            Checked::Fetch(None) => self.finish(Err(misuse())),
            Checked::Done(Ok(claims)) => self.finish(Ok(ValidatedTokens {
                tokens,
                id_claims: Some(claims),
            })),
            Checked::Done(Err(e)) => self.finish(Err(e.into())),
        }
    }

    fn finish(&mut self, r: Result<ValidatedTokens, Error>) -> Step<ValidatedTokens> {
        self.phase = Phase::Finished;
        Step::Done(r)
    }

    fn keys_arrived(&mut self, now: SystemTime, response: Option<&Response<Vec<u8>>>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        let Phase::AwaitKeys { tokens } = phase else {
            self.phase = Phase::Failed(misuse());
            return;
        };
        if let Some(keys) = self.id_check.as_ref().and_then(|c| c.keys.as_ref()) {
            keys.with(|cache| match response {
                // A failed fetch keeps the last good set; validation then decides.
                Some(r) => drop(cache.handle_response(now, r)),
                None => cache.handle_transport_failure(now),
            });
        }
        self.phase = Phase::Validate {
            tokens,
            fetched: true,
        };
    }
}

impl Flow for TokenFlow {
    type Output = ValidatedTokens;

    fn poll(&mut self, now: SystemTime) -> Step<ValidatedTokens> {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Token => match self.request.to_http(&self.client) {
                Ok(req) => {
                    // The request carries the password now; the flow keeps no copy.
                    self.request.forget_password();
                    self.phase = Phase::AwaitToken;
                    Step::Send(req)
                }
                Err(e) => self.finish(Err(e)),
            },
            Phase::Validate { tokens, fetched } => self.validate(tokens, fetched, now),
            Phase::Failed(e) => self.finish(Err(e)),
            Phase::AwaitToken | Phase::AwaitKeys { .. } | Phase::Finished => {
                self.finish(Err(misuse()))
            }
        }
    }

    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        match &self.phase {
            Phase::AwaitToken => {
                self.phase = match self.request.parse_response(&self.client, &response, now) {
                    Ok(tokens) => {
                        if self.retain_received {
                            self.received = Some(Box::new(tokens.clone()));
                        }
                        Phase::Validate {
                            tokens,
                            fetched: false,
                        }
                    }
                    Err(e) => Phase::Failed(e),
                };
            }
            Phase::AwaitKeys { .. } => self.keys_arrived(now, Some(&response)),
            _ => self.phase = Phase::Failed(misuse()),
        }
    }

    fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure {
        match &self.phase {
            Phase::AwaitKeys { .. } => {
                self.keys_arrived(now, None);
                OnFailure::Continue
            }
            _ => OnFailure::Abort,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::flow::{DriveError, TransportError, TransportErrorKind, drive_blocking};
    use crate::scope::Scopes;
    use crate::secret::{ClientSecret, Password};
    use crate::types::{ClientId, Username};

    use crate::body::json_response as json;

    #[test]
    fn exchange_and_transport_failure() {
        let client = Client::new(ClientId::new("c"), Environment::Pie.preset())
            .with_secret(ClientSecret::new("s"));
        let req = TokenRequest::password(Username::new("u"), Password::new("p"), Scopes::default())
            .unwrap();
        let now = SystemTime::UNIX_EPOCH;
        let ok = drive_blocking(
            TokenFlow::new(&client, req.clone()),
            || now,
            |_| Ok(json(200, r#"{"access_token":"a"}"#)),
            |_| {},
        );
        assert_eq!(ok.unwrap().tokens.access_token.secret(), "a");
        let err = drive_blocking(
            TokenFlow::new(&client, req),
            || now,
            |_| {
                Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    "timed out",
                ))
            },
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(err, DriveError::Transport(ref t) if t.kind == TransportErrorKind::Timeout)
        );
        assert!(err.is_transient() && !err.requires_reauthorization());
    }

    #[test]
    fn password_is_gone_once_its_request_is_built() {
        let client = Client::new(ClientId::new("c"), Environment::Pie.preset())
            .with_secret(ClientSecret::new("s"));
        let req = TokenRequest::password(
            Username::new("u"),
            Password::new("hunter2"),
            Scopes::default(),
        )
        .unwrap();
        let mut flow = TokenFlow::new(&client, req);
        let Step::Send(http) = flow.poll(SystemTime::UNIX_EPOCH) else {
            panic!("the flow sends the token request first");
        };
        assert!(String::from_utf8_lossy(http.body()).contains("password=hunter2"));
        let crate::token::Grant::Password { password, .. } = flow.request().grant() else {
            panic!("a password grant");
        };
        assert_eq!(
            password.secret(),
            "",
            "the flow keeps no copy of the password"
        );
    }

    #[test]
    fn a_flow_without_a_validator_never_returns_an_unvalidated_id_token() {
        let client = Client::new(ClientId::new("c"), Environment::Pie.preset());
        let req = TokenRequest::password(Username::new("u"), Password::new("p"), Scopes::default())
            .unwrap();
        let out = drive_blocking(
            TokenFlow::new(&client, req),
            || SystemTime::UNIX_EPOCH,
            |_| {
                Ok(json(
                    200,
                    r#"{"access_token":"a","id_token":"forged.jwt.here"}"#,
                ))
            },
            |_| {},
        )
        .unwrap();
        assert!(out.tokens.id_token.is_none() && out.id_claims.is_none());
    }
}
