//! # class-oauth-core
//!
//! A sans-IO model of the Class (Class Super) OAuth 2.0 / OpenID Connect authorization
//! server: every request the protocol needs is built as an `http::Request<Vec<u8>>`,
//! and every response is parsed from an `http::Response<Vec<u8>>`. The crate opens no
//! socket, reads no clock, no environment variable and no RNG: `now` is an argument and
//! randomness comes in through an [`EntropySource`]. Drive it with any HTTP client, or
//! use the ready-made transports `class-oauth-reqwest` (async) and `class-oauth-ureq`
//! (blocking).
//!
//! ## The drive loop: prepare, send with any client, validate
//!
//! Every multi-step operation is a [`flow::Flow`]: it says which request to send, takes
//! the response, and only hands out what it has validated (state and `iss` on the
//! callback, the ID token against the key set, the nonce and `max_age`). Drive it with
//! any HTTP client: [`flow::drive_blocking`] takes closures; the transports drive the
//! same flows with reqwest and ureq.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use class_oauth_core::{Client, ClientId, ClientSecret, Environment};
//! use class_oauth_core::authorize::AuthorizationRequest;
//! use class_oauth_core::flow::{TokenFlow, drive_blocking};
//! use class_oauth_core::id_token::IdTokenValidator;
//! use class_oauth_core::scope::{AccessSpecifier, Scopes, Target};
//! use class_oauth_core::types::RedirectUrl;
//!
//! // Any HTTP client will do; this one answers like Class does.
//! fn send(req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
//!     assert_eq!(req.uri(), "https://app.class-pie.com.au/connect/token");
//!     http::Response::builder()
//!         .status(200)
//!         .header("content-type", "application/json;charset=UTF-8")
//!         .body(br#"{"access_token":"eyJ...","token_type":"bearer","expires_in":899,
//!                   "refresh_token":"9e0fccdb","scope":"target:b/OAUTH_TEST offline_access fund.read",
//!                   "BusinessName":"OAuth Test Business","BusinessCode":"OAUTH_TEST"}"#.to_vec())
//!         .unwrap()
//! }
//!
//! let env = Environment::Pie;
//! let client = Client::new(ClientId::new("1eaa3979-9caf-4c6b-bab8-2cbcd549d410"), env.preset())
//!     .with_secret(ClientSecret::new("from-your-secret-store"));
//!
//! // 1. Prepare the authorization URL and keep the pending record with the user's session.
//! let scopes = Scopes::builder()
//!     .target(Target::AnyBusiness)
//!     .access(AccessSpecifier::FundRead)
//!     .offline_access()
//!     .build()?;
//! let mut os_rng = |buf: &mut [u8]| buf.fill(7); // use getrandom in real code
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
//! let redirect = RedirectUrl::new("https://partner.example/class-callback")?;
//! let (url, pending) = AuthorizationRequest::new(&client, redirect, scopes).build(&mut os_rng, now)?;
//! assert!(url.as_str().starts_with("https://app.class-pie.com.au/connect/authorize?response_type=code"));
//!
//! // 2. The browser comes back: verifying the callback (state, iss) uses the record up
//! //    and gives the only value a code can be redeemed with.
//! let callback = format!("https://partner.example/class-callback?code=1fd827c4&state={}", pending.state().secret());
//! let verified = pending.verify_callback_url(&callback, now)?;
//!
//! // 3. Redeem the code; an ID token (with `openid`) is validated before it is returned.
//! let validator = IdTokenValidator::for_endpoints(client.endpoints(), client.client_id().clone());
//! let flow = TokenFlow::authorization_code(&client, verified, validator, None);
//! let granted = drive_blocking(flow, || now, |req| Ok(send(req)), |_| {})?;
//!
//! let tokens = &granted.tokens;
//! assert_eq!(tokens.business_code().unwrap().as_str(), "OAUTH_TEST");
//! assert_eq!(tokens.expires_at, Some(now + Duration::from_secs(899)));
//! assert_eq!(format!("{:?}", tokens.access_token), "AccessToken([redacted])");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What is where
//! The modules stand in eight layers, lowest first; each imports only from its own
//! layer and those below (a tidy test checks it):
//! 1. primitives: [`secret`], [`time`], [`scope`] (the Class scope grammar, its rules
//!    and the consent-text catalogue), [`types`] (URLs and identifiers).
//! 2. wire: [`headers`] (`Retry-After`, `WWW-Authenticate`), body caps and redacted
//!    excerpts, the OAuth error object and the Class API's `Errors` envelope.
//! 3. JOSE: [`jose`], strict JWS parsing and signatures verified by `ring`.
//! 4. [`error`]: one error enum; server refusals, malformed responses and policy
//!    violations kept apart, with `requires_reauthorization()` and `is_transient()`.
//! 5. the flow vocabulary: [`Flow`](flow::Flow), [`Step`](flow::Step) and
//!    [`OnFailure`](flow::OnFailure), spoken by every multi-step operation and cache.
//! 6. provider: [`environment`] (Production and PIE presets, any issuer,
//!    [`Endpoints`]), [`discovery`] (lenient metadata, a Duende-style
//!    [`DiscoveryPolicy`](discovery::DiscoveryPolicy), and [`discovery::resolve`], which
//!    falls back to the preset when Class publishes no document), [`jwks`] (key sets and
//!    a sans-IO key-set cache that refetches on an unknown `kid` at most once per
//!    cooldown), [`client`] (credentials, HTTP Basic (RFC 6749 2.3.1), PKCE, the entropy
//!    seam).
//! 7. messages: [`authorize`] and [`callback`] (the authorization URL, the pending
//!    record, and the callback checks: constant-time state, RFC 9207 `iss`, `error=`
//!    redirects), [`token`] (code, refresh and password grants; the lenient response
//!    parser), [`id_token`] (validation, OIDC Core 3.1.3.7, 12.2), [`userinfo`] (with the
//!    `sub` check), [`revocation`] (RFC 7009), [`api`] (Class API calls: vendor `Accept`,
//!    `Errors` envelope, 429 waits), [`refresh`] (refresh-ahead decisions with a
//!    lifetime-clamped margin).
//! 8. [`flow`]: the multi-step operations, their drivers' vocabulary, and
//!    [`ClientConfig`](flow::ClientConfig), which builds every flow a high-level client
//!    needs.
//!
//! ## Time and randomness
//! Every function that depends on time takes `now: SystemTime`. Values that need
//! entropy (state, nonce, PKCE verifier, refresh jitter) draw it from an
//! [`EntropySource`]; any `FnMut(&mut [u8])` is one. Tests therefore run on a virtual
//! clock and deterministic bytes. The crate's `clippy.toml` forbids `SystemTime::now`,
//! `Instant::now` and `thread::sleep`, and an xtask test checks that no runtime, HTTP
//! client or TLS crate is in its dependency tree.
//!
//! ## Secrets
//! Client secrets, tokens, codes, verifiers, state, nonce and passwords are newtypes in
//! [`secret`]: `Debug` prints `[redacted]`, there is no `Display`, values are zeroized on
//! drop and compared in constant time, and serialising one needs
//! [`secret::ExposeSecrets`]. Error excerpts of response bodies redact token members even
//! in truncated JSON. `Debug` of ID-token claims and UserInfo shows the subject, not
//! personal data.
//!
//! ## Hard to misuse
//! - ID-token claims only come out of [`id_token::IdTokenValidator::validate`] (the
//!   flows call it); a flow without a validator drops an ID token rather than return it
//!   unchecked, and `openid` against a provider with no key set is refused before a code
//!   is spent (unless [`IdTokenTrust::DangerTokenEndpointTls`] says otherwise).
//! - An authorization code is redeemed only through a
//!   [`callback::VerifiedCallback`], which verifying a
//!   [`authorize::PendingAuthorization`] (and using it up) gives.
//! - No security check defaults off: the nonce ([`NonceMode`]), the UserInfo `sub`
//!   ([`userinfo::ExpectedSubject`]) and ID-token expectations
//!   ([`id_token::Expectations`] has no `Default`) are each an explicit choice.
//!
//! ## MSRV
//! Rust 1.85 (edition 2024). MSRV bumps happen only in minor releases and never together
//! with other changes.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::exhaustive_enums, clippy::exhaustive_structs)]

// The layers, lowest first. A module imports only from its own layer and the layers
// before it (the `core_imports_run_one_way` tidy test checks it); the public modules are
// re-exported flat below, so a path names what a thing is, not where it sits. (The
// numbered comments keep rustfmt from sorting the layers by name.)
// 1.
mod primitives;
// 2.
mod wire;
// 3.
pub mod jose;
// 4.
pub mod error;
// 5.
mod step;
// 6.
mod provider;
// 7.
mod messages;
// 8.
pub mod flow;

pub use messages::{api, authorize, callback, id_token, refresh, revocation, token, userinfo};
pub(crate) use primitives::text;
pub use primitives::{scope, secret, time, types};
pub use provider::{client, discovery, environment, jwks};
pub use wire::headers;
pub(crate) use wire::{body, claims};

pub use body::{DEFAULT_MAX_BODY, redacted_excerpt};
pub use client::{Client, EntropySource, IdTokenTrust, NonceMode, PkceMode};
pub use environment::{EndpointSource, Endpoints, Environment};
pub use error::{Error, ErrorCode, ErrorKind, OAuthError};
pub use secret::{
    AccessToken, AuthorizationCode, ClientSecret, IdToken, Nonce, Password, PkceVerifier,
    RefreshToken, State,
};
pub use token::{TokenRequest, TokenSet};
pub use types::{ClientId, IssuerUrl, RedirectUrl, Username};

/// The `http` crate this crate's API uses, re-exported so callers match versions.
pub use http;
/// The `url` crate this crate's API uses.
pub use url;

/// The README's usage snippet, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
