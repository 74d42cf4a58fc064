//! Layer 2, wire: HTTP bodies and headers as the protocol reads them. Capped, typed body
//! parsing, redacted excerpts, `Retry-After` and `WWW-Authenticate`, JSON member
//! helpers, and how a server says no: the OAuth error object and malformed responses
//! ([`refusal`]) and the Class API's `Errors` envelope ([`envelope`]). Imports only
//! primitives.

pub(crate) mod body;
pub(crate) mod claims;
pub(crate) mod envelope;
pub mod headers;
pub(crate) mod refusal;
