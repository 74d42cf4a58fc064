//! JWS compact serialization (RFC 7515) with bounded work, and signature verification
//! with `ring` for the algorithms the library supports.
//!
//! Parsing checks the size cap and counts the `.` separators before splitting or
//! decoding anything (the CVE-2025-22868 / CVE-2025-27144 shape: tokens made of
//! thousands of dots), decodes base64url strictly (no padding, no stray bits), and
//! requires JSON objects. Keys embedded in the header (`jwk`, `jku`, `x5u`, `x5c`) are
//! ignored: keys come only from the issuer's key set.

//!
//! This is the JOSE layer: it knows bytes, JSON and keys, and nothing of clients,
//! endpoints or flows. Its error is [`IdTokenError`](crate::id_token::IdTokenError)
//! (re-exported where ID tokens are validated); the key types' public home is
//! [`crate::jwks`].

pub(crate) mod error;
pub(crate) mod jwk;
mod jws;

pub(crate) use jwk::verify;
pub use jws::{Algorithm, Jws, JwsHeader, MAX_JWS_BYTES};
pub(crate) use jws::{json_object, verify_hmac};
