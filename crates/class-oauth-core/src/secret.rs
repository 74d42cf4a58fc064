//! Secret-bearing newtypes: redacted `Debug`, no `Display`, zeroized on drop,
//! compared in constant time.
//!
//! Every value that grants access or proves possession (client secret, tokens,
//! authorization code, PKCE verifier, password, `state`, `nonce`) is one of these
//! types. The only way to read the value is the explicit `secret()` accessor, so a
//! stray `{:?}` in a log line prints `AccessToken([redacted])`.
//!
//! Serialisation (serde) writes the clear value: it exists so that stores can
//! encrypt a token set. Never serialise these types into logs.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name(String);

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
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
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
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
    /// A one-time authorization code from the redirect.
    AuthorizationCode
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
    fn serde_round_trip_keeps_value() {
        let t = RefreshToken::new("rt-1");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"rt-1\"");
        let back: RefreshToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }
}
