//! Secret-bearing newtypes: redacted `Debug`, no `Display`, zeroized on drop,
//! compared in constant time.
//!
//! Every value that grants access or proves possession (client secret, tokens,
//! authorization code, PKCE verifier, password, `state`, `nonce`) is one of these
//! types. The only way to read the value is the explicit `secret()` accessor, so a
//! stray `{:?}` in a log line prints `AccessToken([redacted])`.
//!
//! Serialising one of them is an explicit act: inside [`ExposeSecrets`] it writes the
//! clear value (a store encrypting a token set does this); anywhere else it fails with
//! an error that names the type, so a secret cannot slip into a log line, a JSON
//! response or a cache by way of a derived `Serialize`. Deserialising is always allowed.
//!
//! An [`AuthorizationCode`] has no public constructor: it comes out of a verified
//! callback, or out of [`AuthorizationCode::danger_new`].

use std::cell::Cell;
use std::fmt;

use subtle::ConstantTimeEq;

thread_local! {
    /// How many [`ExposeSecrets`] serialisations are running on this thread.
    static EXPOSED: Cell<u32> = const { Cell::new(0) };
}

/// Serialises the wrapped value with its secrets in clear: the explicit act the secret
/// types require (without it, serialising one fails). For stores that encrypt what they
/// write, and for nothing that ends up in a log.
///
/// ```
/// use class_oauth_core::{AccessToken, secret::ExposeSecrets};
/// let token = AccessToken::new("at-1");
/// assert!(serde_json::to_string(&token).is_err());
/// assert_eq!(serde_json::to_string(&ExposeSecrets(&token)).unwrap(), "\"at-1\"");
/// ```
#[derive(Clone, Copy)]
#[allow(
    clippy::exhaustive_structs,
    reason = "a transparent wrapper: built with its one public field"
)]
pub struct ExposeSecrets<'a, T: ?Sized>(pub &'a T);

impl<T: ?Sized> fmt::Debug for ExposeSecrets<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExposeSecrets(..)")
    }
}

impl<T: serde::Serialize + ?Sized> serde::Serialize for ExposeSecrets<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Scope;
        impl Drop for Scope {
            fn drop(&mut self) {
                EXPOSED.with(|c| c.set(c.get().saturating_sub(1)));
            }
        }
        EXPOSED.with(|c| c.set(c.get().saturating_add(1)));
        let _scope = Scope;
        self.0.serialize(s)
    }
}

fn serialize_secret<S: serde::Serializer>(
    name: &'static str,
    value: &str,
    s: S,
) -> Result<S::Ok, S::Error> {
    if EXPOSED.with(Cell::get) > 0 {
        s.serialize_str(value)
    } else {
        Err(serde::ser::Error::custom(format_args!(
            "refusing to serialise a {name}: wrap the value in class_oauth_core::secret::ExposeSecrets to write secrets in clear"
        )))
    }
}

/// The buffer of `value` with every byte of its capacity overwritten with zeros, about
/// to be freed. One `memset`, kept by [`zeroize::optimization_barrier`] (the way the
/// zeroize crate documents for plain writes): a byte-at-a-time volatile loop cost a
/// 800-byte access token about 0.3 µs on every drop.
fn wiped(value: String) -> Vec<u8> {
    let mut bytes = value.into_bytes();
    let capacity = bytes.capacity();
    bytes.clear();
    bytes.resize(capacity, 0);
    zeroize::optimization_barrier(bytes.as_slice());
    bytes
}

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        secret_type!($(#[$meta])* $name, pub);
    };
    ($(#[$meta:meta])* $name:ident, $new_vis:vis) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(String);

        impl Drop for $name {
            fn drop(&mut self) {
                drop(wiped(std::mem::take(&mut self.0)));
            }
        }

        impl $name {
            /// Wraps a secret value.
            $new_vis fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The clear value.
            ///
            /// # Security warning
            /// Do not log or display it; pass it only to the party it is meant for.
            #[must_use]
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            /// Constant-time in the length of the shorter value.
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }

        impl Eq for $name {}

        impl serde::Serialize for $name {
            /// Fails unless inside [`ExposeSecrets`].
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_secret(stringify!($name), &self.0, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self)
            }
        }
    };
}

secret_type! {
    /// The client secret issued by Class with the client id (one pair per environment).
    ClientSecret
}
secret_type! {
    /// A bearer access token (Class: opaque, 15 minutes).
    AccessToken
}
secret_type! {
    /// A refresh token (Class: one-time, rotated on every refresh, 30 days).
    RefreshToken
}
secret_type! {
    /// A raw ID token (compact JWS) as received. Validation lives in the ID-token module.
    IdToken
}
secret_type! {
    /// A resource owner's password (password grant only).
    Password
}
secret_type! {
    /// A one-time authorization code from the redirect. It comes out of a verified
    /// callback ([`crate::authorize::PendingAuthorization::verify_callback`]); building
    /// one from a raw string is [`AuthorizationCode::danger_new`].
    AuthorizationCode, pub(crate)
}

impl AuthorizationCode {
    /// Wraps a code that did not come through the callback checks (`state`, RFC 9207
    /// `iss`). Redeeming such a code skips the login-CSRF and mix-up defences; only for
    /// callers that made those checks themselves.
    #[must_use]
    pub fn danger_new(value: impl Into<String>) -> Self {
        Self::new(value)
    }
}
secret_type! {
    /// The `state` value that binds a redirect to the browser session that started it.
    State
}
secret_type! {
    /// The OpenID Connect `nonce` sent in the authorization request.
    Nonce
}
secret_type! {
    /// A PKCE code verifier (RFC 7636): 43 characters of base64url.
    PkceVerifier
}

/// Compares two byte strings in constant time (for lengths that may differ, the
/// comparison time depends only on the shorter length).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_zeroes_the_whole_buffer_in_place() {
        let mut value = String::with_capacity(64);
        value.push_str("eyJhbGciOiJSUzI1NiJ9.secret");
        let at = value.as_ptr();
        let wiped = wiped(value);
        // The same allocation (nothing copied elsewhere), every byte of it zero, spare
        // capacity included.
        assert_eq!(wiped.as_ptr(), at);
        assert_eq!(wiped.len(), 64);
        assert!(wiped.iter().all(|&b| b == 0));
    }

    #[test]
    fn debug_is_redacted_and_equality_works() {
        let s = ClientSecret::new("hunter2");
        assert_eq!(format!("{s:?}"), "ClientSecret([redacted])");
        assert!(!format!("{s:#?}").contains("hunter2"));
        assert_eq!(s, ClientSecret::new("hunter2"));
        assert_ne!(s, ClientSecret::new("hunter3"));
        assert_ne!(s, ClientSecret::new("hunter"));
        assert_eq!(s.secret(), "hunter2");
    }

    #[test]
    fn serde_round_trip_keeps_value_only_when_exposed() {
        let t = RefreshToken::new("rt-1");
        let err = serde_json::to_string(&t).unwrap_err().to_string();
        assert!(
            err.contains("RefreshToken") && !err.contains("rt-1"),
            "{err}"
        );
        // Nested in a derived Serialize, the refusal holds too.
        let nested = serde_json::to_string(&vec![Some(t.clone())]);
        assert!(nested.is_err());
        let json = serde_json::to_string(&ExposeSecrets(&t)).unwrap();
        assert_eq!(json, "\"rt-1\"");
        // The scope ends with the call.
        assert!(serde_json::to_string(&t).is_err());
        let back: RefreshToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
