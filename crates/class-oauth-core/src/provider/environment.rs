//! Environments (Production, PIE, any issuer) and the endpoint sets they resolve to.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::error::InputError;
use crate::types::{IssuerUrl, check_secure};

/// A Class environment.
///
/// Production and PIE (the Partner Integration Environment, Class's sandbox) are
/// presets from the fact sheet; any other issuer (Class's `class-test` hosts, the
/// emulator, a proxy) is [`Environment::Custom`]. Use one client id and secret per
/// environment: Class issues separate credentials for each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// `https://app.class.com.au`, real data.
    Production,
    /// `https://app.class-pie.com.au`, the partner sandbox.
    Pie,
    /// Any issuer: `{issuer}/connect/authorize` and `{issuer}/connect/token` unless
    /// discovery says otherwise.
    Custom(IssuerUrl),
}

const PROD_ISSUER: &str = "https://app.class.com.au";
const PIE_ISSUER: &str = "https://app.class-pie.com.au";

impl Environment {
    /// Parses `production`, `prod`, `pie`, or an issuer URL.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(Self::Production),
            "pie" => Ok(Self::Pie),
            _ => IssuerUrl::new(s).map(Self::Custom),
        }
    }

    /// A short name: `production`, `pie`, or the issuer URL.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::Production => "production".into(),
            Self::Pie => "pie".into(),
            Self::Custom(i) => i.to_string(),
        }
    }

    /// The issuer identifier.
    #[must_use]
    pub fn issuer(&self) -> IssuerUrl {
        let text = match self {
            Self::Production => PROD_ISSUER,
            Self::Pie => PIE_ISSUER,
            Self::Custom(i) => return i.clone(),
        };
        IssuerUrl::new(text).expect("preset issuers are valid")
    }

    /// The endpoints this environment uses when there is no discovery document.
    ///
    /// Production: authorize and token on `app.class.com.au`, UserInfo on the API host
    /// (`api.class.com.au/api/1.0/u/connect/userinfo`, documented). PIE: the same paths on
    /// `app.class-pie.com.au`; its UserInfo and API hosts are inferred by analogy
    /// (`apigateway.class-pie.com.au`), unconfirmed. Custom: `connect/authorize`,
    /// `connect/token` and `connect/userinfo` below the issuer. No preset has a revocation
    /// endpoint or a key set: Class documents neither.
    #[must_use]
    pub fn preset(&self) -> Endpoints {
        let issuer = self.issuer();
        let (userinfo, api_base) = match self {
            Self::Production => (
                Some("https://api.class.com.au/api/1.0/u/connect/userinfo"),
                Some("https://api.class.com.au/api/1.0"),
            ),
            Self::Pie => (
                Some("https://apigateway.class-pie.com.au/api/1.0/u/connect/userinfo"),
                Some("https://apigateway.class-pie.com.au/api/1.0"),
            ),
            Self::Custom(_) => (None, None),
        };
        let parse = |s: &str| Url::parse(s).expect("preset URLs are valid");
        Endpoints {
            authorization_endpoint: issuer.join("connect/authorize"),
            token_endpoint: issuer.join("connect/token"),
            userinfo_endpoint: userinfo.map(parse).or_else(|| match self {
                Self::Custom(_) => Some(issuer.join("connect/userinfo")),
                _ => None,
            }),
            revocation_endpoint: None,
            jwks_uri: None,
            api_base: api_base.map(parse).or_else(|| match self {
                Self::Custom(_) => Some(issuer.join("api/1.0")),
                _ => None,
            }),
            authorization_response_iss_parameter_supported: false,
            code_challenge_methods_supported: None,
            id_token_signing_alg_values_supported: None,
            source: EndpointSource::Preset,
            issuer,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Environment {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        Self::parse(s)
    }
}

/// Where an endpoint set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndpointSource {
    /// The environment's preset; discovery was not consulted.
    Preset,
    /// The preset, because the provider publishes no discovery document (404 or 410).
    PresetNoDiscovery,
    /// A validated discovery document.
    Discovery,
    /// Configured explicitly by the caller.
    Explicit,
}

impl EndpointSource {
    /// A short description for humans.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Preset => "environment preset",
            Self::PresetNoDiscovery => "environment preset (no discovery document published)",
            Self::Discovery => "discovery document",
            Self::Explicit => "explicit configuration",
        }
    }
}

/// The endpoints of one authorization server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Endpoints {
    /// The issuer identifier.
    pub issuer: IssuerUrl,
    /// The authorization endpoint.
    pub authorization_endpoint: Url,
    /// The token endpoint.
    pub token_endpoint: Url,
    /// The UserInfo endpoint, if known.
    pub userinfo_endpoint: Option<Url>,
    /// The RFC 7009 revocation endpoint, if advertised.
    pub revocation_endpoint: Option<Url>,
    /// The key set for ID-token signatures, if advertised.
    pub jwks_uri: Option<Url>,
    /// The Class resource API base (e.g. `https://api.class.com.au/api/1.0`), if known.
    pub api_base: Option<Url>,
    /// RFC 9207: the provider promises `iss` on every authorization response.
    pub authorization_response_iss_parameter_supported: bool,
    /// PKCE methods the provider advertises, when it says.
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// ID-token algorithms the provider advertises, when it says.
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    /// Where this set came from.
    pub source: EndpointSource,
}

impl Endpoints {
    /// An explicit endpoint set. URLs must be `https` (or `http` on loopback).
    pub fn new(
        issuer: IssuerUrl,
        authorization_endpoint: Url,
        token_endpoint: Url,
    ) -> Result<Self, InputError> {
        check_secure("authorization_endpoint", &authorization_endpoint)?;
        check_secure("token_endpoint", &token_endpoint)?;
        Ok(Self {
            issuer,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint: None,
            revocation_endpoint: None,
            jwks_uri: None,
            api_base: None,
            authorization_response_iss_parameter_supported: false,
            code_challenge_methods_supported: None,
            id_token_signing_alg_values_supported: None,
            source: EndpointSource::Explicit,
        })
    }

    /// Sets the UserInfo endpoint.
    pub fn with_userinfo(mut self, url: Url) -> Result<Self, InputError> {
        check_secure("userinfo_endpoint", &url)?;
        self.userinfo_endpoint = Some(url);
        Ok(self)
    }

    /// Sets the revocation endpoint.
    pub fn with_revocation(mut self, url: Url) -> Result<Self, InputError> {
        check_secure("revocation_endpoint", &url)?;
        self.revocation_endpoint = Some(url);
        Ok(self)
    }

    /// Sets the key-set URL.
    pub fn with_jwks_uri(mut self, url: Url) -> Result<Self, InputError> {
        check_secure("jwks_uri", &url)?;
        self.jwks_uri = Some(url);
        Ok(self)
    }

    /// Sets the Class API base.
    pub fn with_api_base(mut self, url: Url) -> Result<Self, InputError> {
        check_secure("api_base", &url)?;
        self.api_base = Some(url);
        Ok(self)
    }

    /// Does the provider advertise PKCE S256? `None` when it does not say.
    #[must_use]
    pub fn supports_pkce_s256(&self) -> Option<bool> {
        self.code_challenge_methods_supported
            .as_ref()
            .map(|m| m.iter().any(|x| x == "S256"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        let p = Environment::Production.preset();
        assert_eq!(
            p.authorization_endpoint.as_str(),
            "https://app.class.com.au/connect/authorize"
        );
        assert_eq!(
            p.token_endpoint.as_str(),
            "https://app.class.com.au/connect/token"
        );
        assert_eq!(
            p.userinfo_endpoint.unwrap().as_str(),
            "https://api.class.com.au/api/1.0/u/connect/userinfo"
        );
        let pie = Environment::parse("PIE").unwrap().preset();
        assert_eq!(
            pie.token_endpoint.as_str(),
            "https://app.class-pie.com.au/connect/token"
        );
        let c = Environment::parse("http://127.0.0.1:9999/").unwrap();
        assert_eq!(
            c.preset().token_endpoint.as_str(),
            "http://127.0.0.1:9999/connect/token"
        );
        assert!(Environment::parse("http://evil.example").is_err());
        assert!(
            Endpoints::new(
                c.issuer(),
                "http://x.example/a".parse().unwrap(),
                "https://x/t".parse().unwrap()
            )
            .is_err()
        );
    }
}
