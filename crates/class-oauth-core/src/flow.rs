//! Multi-step operations as sans-IO state machines, and the transport-failure type
//! every driver reports.
//!
//! A [`Flow`] says what to do next ([`Flow::poll`]): send a request, wait, or stop
//! with a result. The driver performs the step and reports back
//! ([`Flow::handle_response`] or [`Flow::handle_transport_failure`]). Every protocol
//! decision (which request, how to parse it, whether to refetch keys, whether to retry
//! after a 429) is made here; a driver only moves bytes, reads the clock and sleeps.
//! Drivers: [`drive_blocking`] (closures; the ureq transport uses it),
//! `class-oauth-reqwest` (async), and the in-memory fixture replay.
//!
//! Call order: `poll` until [`Step::Done`]; after every [`Step::Send`] report exactly
//! one outcome before polling again; after [`Step::Wait`] poll again once the time has
//! passed.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{Request, Response};

use crate::api::{self, ApiRequest};
use crate::callback::VerifiedCallback;
use crate::client::Client;
use crate::error::Error;
use crate::id_token::{Expectations, IdTokenClaims, IdTokenValidator};
use crate::jwks::KeySetCache;
use crate::secret::{AccessToken, Nonce};
use crate::token::{TokenRequest, TokenSet};

/// What the driver should do next.
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
pub enum Step<T> {
    /// Send this request and report the outcome.
    Send(Request<Vec<u8>>),
    /// Wait this long, then poll again.
    Wait(Duration),
    /// The flow is over.
    Done(Result<T, Error>),
}

/// What a flow does after a transport failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Stop; the driver returns the transport error.
    Abort,
    /// Carry on (e.g. a failed key-set refetch: the last good keys are used).
    Continue,
}

/// A multi-step operation.
pub trait Flow {
    /// The result.
    type Output;

    /// The next step at `now`.
    fn poll(&mut self, now: SystemTime) -> Step<Self::Output>;

    /// The response to the last [`Step::Send`].
    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>);

    /// The last [`Step::Send`] failed in transport (connect, timeout, reset).
    fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure;
}

impl<F: Flow + ?Sized> Flow for Box<F> {
    type Output = F::Output;
    fn poll(&mut self, now: SystemTime) -> Step<Self::Output> {
        (**self).poll(now)
    }
    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        (**self).handle_response(now, response);
    }
    fn handle_transport_failure(&mut self, now: SystemTime) -> OnFailure {
        (**self).handle_transport_failure(now)
    }
}

/// Timeouts and limits every transport applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Total time for a request after connecting, body included (default 30 s). The
    /// reqwest transport applies it as one timeout. The ureq transport bounds each phase
    /// (send, response head, body) by it, because ureq's single "global" timeout costs
    /// about 1 ms per request (measured: 0.9 to 1.8 ms against 40 µs); a ureq request so
    /// takes at most connect + 3 x this.
    pub timeout: Duration,
    /// Response body cap in bytes (default 1 MiB), enforced while reading.
    pub max_body: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body: crate::body::DEFAULT_MAX_BODY,
        }
    }
}

impl TransportConfig {
    /// Sets the total timeout.
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets the body cap.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

/// How a transport failed. Plain data, so both transports report identical values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connect or total timeout elapsed.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke while sending or receiving (reset, truncated body).
    Io,
    /// The server redirected; redirects are never followed.
    Redirect,
    /// Anything else the HTTP client reported.
    Other,
}

impl TransportErrorKind {
    /// Snake-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Redirect => "redirect",
            Self::Other => "other",
        }
    }
}

/// A transport failure, with the HTTP client's error as `source()`.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportError {
    /// What happened.
    pub kind: TransportErrorKind,
    /// A message without secrets (no URL query, no body).
    pub message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl TransportError {
    /// A transport error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the HTTP client's error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transport failure ({}): {}",
            self.kind.as_str(),
            self.message
        )
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for TransportError {}

/// The error a driver returns: the protocol said no, or the transport failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    /// A protocol error from the core (refusal, malformed response, policy, ID token).
    #[error(transparent)]
    Protocol(#[from] Error),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

macro_rules! drive_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DriveError {
            fn from(e: $t) -> Self {
                Self::Protocol(e.into())
            }
        }
    )*};
}

drive_error_from!(
    crate::error::InputError,
    crate::error::PolicyViolation,
    crate::scope::ScopeError,
    crate::id_token::IdTokenError
);

impl DriveError {
    /// The protocol error, if that is what it is.
    #[must_use]
    pub fn protocol(&self) -> Option<&Error> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Transport(_) => None,
        }
    }

    /// True when the same call may succeed later: every transport failure, and
    /// transient protocol errors. For a refresh, see the token manager: a refresh whose
    /// response was lost may already have spent the one-time refresh token.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Protocol(e) => e.is_transient(),
            Self::Transport(_) => true,
        }
    }

    /// True when the user must authorize again.
    #[must_use]
    pub fn requires_reauthorization(&self) -> bool {
        self.protocol().is_some_and(Error::requires_reauthorization)
    }
}

/// A URI as it may appear in logs: scheme, host, port and path; never the query (which
/// could carry a code or a token) or userinfo.
#[must_use]
pub fn loggable_uri(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority()
            .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or("")),
        uri.path()
    )
}

/// Drives a flow with closures: the blocking driver (and the in-memory replay).
pub fn drive_blocking<F: Flow>(
    mut flow: F,
    mut now: impl FnMut() -> SystemTime,
    mut send: impl FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>,
    mut sleep: impl FnMut(Duration),
) -> Result<F::Output, DriveError> {
    loop {
        match flow.poll(now()) {
            Step::Done(result) => return result.map_err(DriveError::from),
            Step::Wait(d) => sleep(d),
            Step::Send(req) => match send(req) {
                Ok(resp) => flow.handle_response(now(), resp),
                Err(e) => {
                    if flow.handle_transport_failure(now()) == OnFailure::Abort {
                        return Err(e.into());
                    }
                }
            },
        }
    }
}

type Parser<T> = Box<dyn FnOnce(&Response<Vec<u8>>, SystemTime) -> Result<T, Error> + Send>;

/// A single request and its parser: most operations.
pub struct Exchange<T> {
    request: Option<Result<Request<Vec<u8>>, Error>>,
    parse: Option<Parser<T>>,
    result: Option<Result<T, Error>>,
}

impl<T> fmt::Debug for Exchange<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

impl<T> Exchange<T> {
    /// A flow that sends `request` (or fails with its build error) and parses the
    /// response with `parse`.
    pub fn new(
        request: Result<Request<Vec<u8>>, Error>,
        parse: impl FnOnce(&Response<Vec<u8>>, SystemTime) -> Result<T, Error> + Send + 'static,
    ) -> Self {
        Self {
            request: Some(request),
            parse: Some(Box::new(parse)),
            result: None,
        }
    }
}

impl<T> Flow for Exchange<T> {
    type Output = T;

    fn poll(&mut self, _now: SystemTime) -> Step<T> {
        if let Some(r) = self.request.take() {
            return match r {
                Ok(req) => Step::Send(req),
                Err(e) => Step::Done(Err(e)),
            };
        }
        Step::Done(self.result.take().unwrap_or_else(|| Err(misuse())))
    }

    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        if let Some(parse) = self.parse.take() {
            self.result = Some(parse(&response, now));
        }
    }

    fn handle_transport_failure(&mut self, _now: SystemTime) -> OnFailure {
        OnFailure::Abort
    }
}

fn misuse() -> Error {
    crate::error::InputError::InvalidValue {
        field: "flow",
        detail: "polled after completion or without a response".into(),
    }
    .into()
}

/// A key-set cache shared by every flow of one client.
pub type SharedKeySet = Arc<Mutex<KeySetCache>>;

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
    Validate { tokens: TokenSet, fetched: bool },
    AwaitKeys { tokens: TokenSet },
    Done(Result<ValidatedTokens, Error>),
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
    id_check: Option<IdCheck>,
    phase: Phase,
    retain_received: bool,
    received: Option<TokenSet>,
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
        self.received.as_ref()
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
        flow.id_check = Some(IdCheck {
            validator,
            keys,
            nonce,
            max_age,
            original: None,
        });
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
        self.id_check = Some(IdCheck {
            validator,
            keys,
            nonce: None,
            max_age: None,
            original,
        });
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
        let cache = check.keys.clone();
        let outcome = {
            let guard = cache
                .as_ref()
                .map(|c| c.lock().unwrap_or_else(PoisonError::into_inner));
            let keys = guard.as_ref().and_then(|g| g.usable_keys(now));
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
                        && guard
                            .as_ref()
                            .is_some_and(|g| g.may_refetch_for_unknown_kid(now)) =>
                {
                    Err(guard.as_ref().map(|g| g.request()))
                }
                // Accepted with a stale set: refetch and validate again, so a key the
                // provider has removed stops being trusted. A token that fails its
                // claim checks never gets here, so it never causes a fetch.
                Ok(_)
                    if !fetched && guard.as_ref().is_some_and(|g| g.needs_fetch(now).is_some()) =>
                {
                    Err(guard.as_ref().map(|g| g.request()))
                }
                other => Ok(other),
            }
        };
        match outcome {
            Err(Some(req)) => {
                self.phase = Phase::AwaitKeys { tokens };
                Step::Send(req)
            }
            Err(None) => self.finish(Err(misuse())),
            Ok(Ok(claims)) => self.finish(Ok(ValidatedTokens {
                tokens,
                id_claims: Some(claims),
            })),
            Ok(Err(e)) => self.finish(Err(e.into())),
        }
    }

    fn finish(&mut self, r: Result<ValidatedTokens, Error>) -> Step<ValidatedTokens> {
        self.phase = Phase::Finished;
        Step::Done(r)
    }

    fn keys_arrived(&mut self, now: SystemTime, response: Option<&Response<Vec<u8>>>) {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        let Phase::AwaitKeys { tokens } = phase else {
            self.phase = Phase::Done(Err(misuse()));
            return;
        };
        if let Some(cache) = self.id_check.as_ref().and_then(|c| c.keys.as_ref()) {
            let mut guard = cache.lock().unwrap_or_else(PoisonError::into_inner);
            match response {
                // A failed fetch keeps the last good set; validation then decides.
                Some(r) => drop(guard.handle_response(now, r)),
                None => guard.handle_failure(now),
            }
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
            Phase::Done(r) => self.finish(r),
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
                            self.received = Some(tokens.clone());
                        }
                        Phase::Validate {
                            tokens,
                            fetched: false,
                        }
                    }
                    Err(e) => Phase::Done(Err(e)),
                };
            }
            Phase::AwaitKeys { .. } => self.keys_arrived(now, Some(&response)),
            _ => self.phase = Phase::Done(Err(misuse())),
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

/// A Class API call that waits out one 429 (from `X-RateLimit-ResetAfter` /
/// `Retry-After`, capped) and retries once; a second 429 is returned to the caller.
#[derive(Debug)]
pub struct ApiFlow {
    request: ApiRequest,
    access_token: AccessToken,
    max_body: usize,
    max_wait: Duration,
    attempts: u8,
    waiting: Option<Duration>,
    result: Option<Result<api::ApiResponse, Error>>,
}

impl ApiFlow {
    /// A call with `access_token`; waits at most `max_wait` for one retry after a 429.
    #[must_use]
    pub fn new(
        client: &Client,
        request: ApiRequest,
        access_token: AccessToken,
        max_wait: Duration,
    ) -> Self {
        Self {
            request,
            access_token,
            max_body: client.max_body(),
            max_wait,
            attempts: 0,
            waiting: None,
            result: None,
        }
    }
}

impl Flow for ApiFlow {
    type Output = api::ApiResponse;

    fn poll(&mut self, _now: SystemTime) -> Step<api::ApiResponse> {
        if let Some(d) = self.waiting.take() {
            return Step::Wait(d);
        }
        if let Some(r) = self.result.take() {
            return Step::Done(r);
        }
        self.attempts += 1;
        match self.request.to_http(&self.access_token) {
            Ok(req) => Step::Send(req),
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn handle_response(&mut self, now: SystemTime, response: Response<Vec<u8>>) {
        let r = api::parse_response(&response, self.max_body);
        if let Err(Error::ApiRefused(refusal)) = &r {
            if refusal.status == http::StatusCode::TOO_MANY_REQUESTS && self.attempts < 2 {
                let wait = refusal
                    .wait_from(now)
                    .unwrap_or(api::DEFAULT_RATE_LIMIT_WAIT);
                if wait <= self.max_wait {
                    self.waiting = Some(wait);
                    return;
                }
            }
        }
        self.result = Some(r);
    }

    fn handle_transport_failure(&mut self, _now: SystemTime) -> OnFailure {
        OnFailure::Abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::scope::Scopes;
    use crate::secret::{ClientSecret, Password};
    use crate::types::{ClientId, Username};

    fn json(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

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

    #[test]
    fn api_flow_waits_once_on_429() {
        let client = Client::new(ClientId::new("c"), Environment::Pie.preset());
        let base = client.endpoints().api_base.clone().unwrap();
        let mut waits = Vec::new();
        let mut calls = 0;
        let flow = ApiFlow::new(
            &client,
            ApiRequest::get(&base, "x").unwrap(),
            AccessToken::new("t"),
            Duration::from_secs(60),
        );
        let r = drive_blocking(
            flow,
            || SystemTime::UNIX_EPOCH,
            |_| {
                calls += 1;
                Ok(if calls == 1 {
                    Response::builder()
                        .status(429)
                        .header(api::RESET_AFTER_HEADER, "7")
                        .body(Vec::new())
                        .unwrap()
                } else {
                    json(200, r#"{"Errors":[],"Data":1}"#)
                })
            },
            |d| waits.push(d),
        );
        assert_eq!(r.unwrap().data, 1);
        assert_eq!(waits, [Duration::from_secs(7)]);
        // A Retry-After HTTP date is a wait counted from `now`, not zero.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767);
        let mut waits = Vec::new();
        let mut calls = 0;
        let flow = ApiFlow::new(
            &client,
            ApiRequest::get(&base, "x").unwrap(),
            AccessToken::new("t"),
            Duration::from_secs(60),
        );
        let r = drive_blocking(
            flow,
            || now,
            |_| {
                calls += 1;
                Ok(if calls == 1 {
                    Response::builder()
                        .status(429)
                        .header("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")
                        .header(api::RESET_AFTER_HEADER, "3")
                        .body(Vec::new())
                        .unwrap()
                } else {
                    json(200, r#"{"Errors":[],"Data":2}"#)
                })
            },
            |d| waits.push(d),
        );
        assert_eq!(r.unwrap().data, 2);
        assert_eq!(waits, [Duration::from_secs(10)]);
        // Two 429s in a row: the second is returned.
        let flow = ApiFlow::new(
            &client,
            ApiRequest::get(&base, "x").unwrap(),
            AccessToken::new("t"),
            Duration::from_secs(60),
        );
        let r = drive_blocking(
            flow,
            || SystemTime::UNIX_EPOCH,
            |_| Ok(Response::builder().status(429).body(Vec::new()).unwrap()),
            |_| {},
        );
        assert!(r.unwrap_err().is_transient());
    }
}
