//! Layer 6, messages: one request and its response per protocol step. The
//! authorization URL and callback, the token grants, ID-token validation, UserInfo,
//! revocation, Class API calls, and refresh-ahead decisions. Each builds an
//! `http::Request` or parses an `http::Response`; none drives anything.

pub mod api;
pub mod authorize;
pub mod callback;
pub mod id_token;
pub mod refresh;
pub mod revocation;
pub mod token;
pub mod userinfo;
