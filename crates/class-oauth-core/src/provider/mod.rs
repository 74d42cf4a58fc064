//! Layer 5, provider: what the client knows of the authorization server and of itself.
//! Environments and endpoints, discovery, the key-set cache, and the client's
//! credentials, PKCE and entropy seam.

pub mod client;
pub mod discovery;
pub mod environment;
pub mod jwks;
