//! Non-secret protocol strings as newtypes: parse, don't validate.

use std::fmt;

use url::Url;

use crate::scope::ScopeError;

/// The accessors, `Display` as the exact text, and the `String` conversions serde uses,
/// for a URL newtype that keeps its caller's spelling (`text`) beside the parsed `url`
/// and has a checking `new`.
macro_rules! url_text_conversions {
    ($name:ident) => {
        impl $name {
            /// The text exactly as configured: what is compared and sent.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.text
            }

            /// The parsed URL.
            #[must_use]
            pub fn url(&self) -> &Url {
                &self.url
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InputError;
            fn try_from(s: String) -> Result<Self, InputError> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.text
            }
        }
    };
}

/// The OAuth client identifier Class issues (a GUID in practice; treated as opaque).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Wraps a client id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Is this host a loopback host (`localhost`, `127.0.0.0/8`, `::1`)? Only loopback
/// hosts may use `http`.
#[must_use]
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a URL that must be `https`, or `http` on a loopback host.
pub(crate) fn parse_secure_url(field: &'static str, s: &str) -> Result<Url, InputError> {
    let url = Url::parse(s).map_err(|e| InputError::InvalidUrl {
        field,
        detail: e.to_string(),
    })?;
    check_secure(field, &url)?;
    Ok(url)
}

/// `https`, or `http` on a loopback host: the one rule for every URL that carries
/// credentials or tokens (issuer, endpoints, redirect URIs, discovered endpoints).
pub(crate) fn is_secure_scheme(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_loopback(url),
        _ => false,
    }
}

pub(crate) fn check_secure(field: &'static str, url: &Url) -> Result<(), InputError> {
    match url.scheme() {
        _ if is_secure_scheme(url) => {}
        other => {
            return Err(InputError::InvalidUrl {
                field,
                detail: format!(
                    "scheme `{other}` is not https (http is allowed only on loopback hosts)"
                ),
            });
        }
    }
    if url.fragment().is_some() {
        return Err(InputError::InvalidUrl {
            field,
            detail: "a fragment is not allowed".into(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InputError::InvalidUrl {
            field,
            detail: "credentials in the URL are not allowed".into(),
        });
    }
    Ok(())
}

/// The issuer identifier of an authorization server, e.g. `https://app.class.com.au`.
///
/// Kept as given (a trailing slash included), because issuers are compared as strings
/// (OIDC Discovery 4.3, RFC 9207). The scheme and host are lower-cased once, here, as
/// IdentityServer-style servers emit them lower-case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssuerUrl {
    text: String,
    url: Url,
}

impl IssuerUrl {
    /// Parses an issuer: `https` (or `http` on loopback), no query, no fragment.
    pub fn new(issuer: &str) -> Result<Self, InputError> {
        let trimmed = issuer.trim();
        let url = parse_secure_url("issuer", trimmed)?;
        if url.query().is_some() {
            return Err(InputError::InvalidUrl {
                field: "issuer",
                detail: "a query is not allowed".into(),
            });
        }
        // Lower-case scheme and host, keep the path exactly, a trailing slash included:
        // `https://idp.example/` and `https://idp.example` are different issuers, and
        // the token's `iss` must match the one configured or discovered byte for byte.
        // (A URL parser reports the path `/` for both; the text tells them apart.)
        let path = if url.path() == "/" && !trimmed.ends_with('/') {
            ""
        } else {
            url.path()
        };
        let mut text = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            text.push_str(&format!(":{port}"));
        }
        text.push_str(path);
        Ok(Self { text, url })
    }

    /// Joins a path below the issuer: `join("connect/token")` on
    /// `https://host/base` gives `https://host/base/connect/token`.
    #[must_use]
    pub fn join(&self, path: &str) -> Url {
        let joined = format!(
            "{}/{}",
            self.text.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        // The issuer parsed as a URL and the path is a literal of ours, so this holds.
        Url::parse(&joined).unwrap_or_else(|_| self.url.clone())
    }
}

url_text_conversions!(IssuerUrl);

/// A redirect URI registered with Class. Compared exactly; its own query is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUrl {
    text: String,
    url: Url,
}

impl RedirectUrl {
    /// Parses a redirect URI: `https`, or `http` on a loopback host (RFC 8252 7.3);
    /// a private-use scheme such as `com.example.app:/cb` is accepted too (RFC 8252 7.1).
    /// No fragment.
    pub fn new(uri: &str) -> Result<Self, InputError> {
        let url = Url::parse(uri).map_err(|e| InputError::InvalidUrl {
            field: "redirect_uri",
            detail: e.to_string(),
        })?;
        match url.scheme() {
            "https" | "http" => check_secure("redirect_uri", &url)?,
            s if s.contains('.') => {
                if url.fragment().is_some() {
                    return Err(InputError::InvalidUrl {
                        field: "redirect_uri",
                        detail: "a fragment is not allowed".into(),
                    });
                }
            }
            other => {
                return Err(InputError::InvalidUrl {
                    field: "redirect_uri",
                    detail: format!(
                        "scheme `{other}` is neither https, loopback http, nor a reverse-DNS private-use scheme"
                    ),
                });
            }
        }
        // Keep the caller's exact spelling: Class compares it byte for byte.
        Ok(Self {
            text: uri.to_owned(),
            url,
        })
    }
}

url_text_conversions!(RedirectUrl);

/// The username for the password grant.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Wraps a username.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
    /// The username.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which endpoint an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointKind {
    /// The authorization endpoint (errors arrive in the redirect).
    Authorization,
    /// The token endpoint.
    Token,
    /// The UserInfo endpoint.
    UserInfo,
    /// The revocation endpoint (RFC 7009).
    Revocation,
    /// The discovery document.
    Discovery,
    /// The JWKS (key set) document.
    Jwks,
    /// A Class resource API.
    Api,
}

impl EndpointKind {
    /// A short lower-case name (`"token"`, `"userinfo"`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Token => "token",
            Self::UserInfo => "userinfo",
            Self::Revocation => "revocation",
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::Api => "api",
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the caller asked for cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A URL did not parse or has an unusable form.
    #[error("invalid URL for {field}: {detail}")]
    InvalidUrl {
        /// What the URL is for.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A scope rule was broken.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The endpoint the request needs is not configured.
    #[error("no {0} endpoint is configured (the provider publishes none; set one explicitly)")]
    MissingEndpoint(EndpointKind),
    /// An extra parameter would repeat one the library sets.
    #[error("parameter `{0}` is set by the library and may not be repeated")]
    ReservedParameter(String),
    /// `openid` was requested from a provider that publishes no key set, so no ID token
    /// could ever be verified; refused before a code is spent.
    #[error(
        "openid was requested but the provider publishes no key set (jwks_uri), so its ID token could not be verified; configure the JWKS location, or opt in to trusting ID tokens from the token endpoint over TLS (Client::danger_trust_id_tokens_from_token_endpoint_tls, OIDC Core 3.1.3.7 (6))"
    )]
    OpenIdWithoutKeySet,
    /// `prompt=none` was combined with other prompt values.
    #[error("prompt=none must stand alone")]
    PromptNoneNotAlone,
    /// A value is not usable in the protocol.
    #[error("invalid {field}: {detail}")]
    InvalidValue {
        /// What the value is for.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_normalises_scheme_and_host_and_keeps_a_trailing_slash() {
        let i = IssuerUrl::new("HTTPS://App.Class.com.au/").unwrap();
        assert_eq!(i.as_str(), "https://app.class.com.au/");
        assert_ne!(i, IssuerUrl::new("https://app.class.com.au").unwrap());
        assert_eq!(
            IssuerUrl::new("https://idp.example/tenant/")
                .unwrap()
                .join("x")
                .as_str(),
            "https://idp.example/tenant/x"
        );
        assert_eq!(
            i.join("connect/token").as_str(),
            "https://app.class.com.au/connect/token"
        );
        let p = IssuerUrl::new("https://idp.example/tenant/Abc").unwrap();
        assert_eq!(p.as_str(), "https://idp.example/tenant/Abc");
        assert_eq!(p.join("/x").as_str(), "https://idp.example/tenant/Abc/x");
        assert!(IssuerUrl::new("http://app.class.com.au").is_err());
        assert!(IssuerUrl::new("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            IssuerUrl::new("http://[::1]:9").unwrap().as_str(),
            "http://[::1]:9"
        );
        assert!(IssuerUrl::new("https://a/?x=1").is_err());
    }

    #[test]
    fn redirect_is_kept_verbatim() {
        let r = RedirectUrl::new("https://partner.example/cb?tenant=7").unwrap();
        assert_eq!(r.as_str(), "https://partner.example/cb?tenant=7");
        assert!(RedirectUrl::new("http://partner.example/cb").is_err());
        assert!(RedirectUrl::new("http://127.0.0.1:43123/cb").is_ok());
        assert!(RedirectUrl::new("com.example.app:/cb").is_ok());
        assert!(RedirectUrl::new("javascript:alert(1)").is_err());
        assert!(RedirectUrl::new("https://x/cb#frag").is_err());
    }
}
