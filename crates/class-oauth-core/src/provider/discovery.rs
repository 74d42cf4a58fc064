//! Discovery (OpenID Connect Discovery 1.0 / RFC 8414): the request, lenient parsing,
//! and a validation policy in the style of Duende IdentityModel's `DiscoveryPolicy`.
//!
//! Class tells clients to read endpoints from "the Discovery document" but publishes no
//! URL for it, so the provider may have none. [`resolve`] is the one call that turns
//! "the document, a 404, or nothing fetched" into an [`Endpoints`] set, falling back to
//! the environment's preset when no document is published.

use http::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use url::Url;

mod cache;
pub use cache::DiscoveryCache;

use crate::body::{self, DEFAULT_MAX_BODY};
use crate::environment::{EndpointSource, Endpoints, Environment};
use crate::error::{EndpointKind, Error, MalformedReason, PolicyViolation};
use crate::types::{IssuerUrl, is_secure_scheme};

/// The discovery URL: `{issuer}/.well-known/openid-configuration` (OIDC Discovery 4:
/// appended to the issuer, path included).
#[must_use]
pub fn discovery_url(issuer: &IssuerUrl) -> Url {
    issuer.join(".well-known/openid-configuration")
}

/// The discovery request: `GET {issuer}/.well-known/openid-configuration`.
#[must_use]
pub fn request(issuer: &IssuerUrl) -> Request<Vec<u8>> {
    Request::builder()
        .method(Method::GET)
        .uri(discovery_url(issuer).as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .expect("a parsed URL is a valid URI")
}

/// A provider metadata document. Known members are typed; every other member is kept
/// in [`ProviderMetadata::extra`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// `issuer` (required).
    pub issuer: String,
    /// `authorization_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// `token_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// `userinfo_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `revocation_endpoint` (RFC 8414).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// `end_session_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    /// `introspection_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// `scopes_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `response_types_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// `response_modes_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_modes_supported: Option<Vec<String>>,
    /// `grant_types_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// `token_endpoint_auth_methods_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// `code_challenge_methods_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// `id_token_signing_alg_values_supported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Every other member, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How strictly to trust a discovery document. The defaults are strict; each
/// relaxation has a name that says what it gives up.
///
/// Defaults: https required except on loopback hosts; `issuer` must equal the
/// configured issuer; every endpoint must share the issuer's scheme, host and port, or
/// start with an allow-listed base; `jwks_uri` required.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryPolicy {
    /// Require https for every endpoint (loopback hosts exempt).
    pub require_https: bool,
    /// Require `issuer` to equal the configured issuer.
    pub validate_issuer: bool,
    /// Require every endpoint to be under the issuer's authority or the allow-list.
    pub validate_endpoints: bool,
    /// Endpoint bases allowed besides the issuer's authority.
    pub additional_endpoint_bases: Vec<Url>,
    /// Require a `jwks_uri`.
    pub require_key_set: bool,
    /// Body size cap.
    pub max_body: usize,
}

impl Default for DiscoveryPolicy {
    fn default() -> Self {
        Self {
            require_https: true,
            validate_issuer: true,
            validate_endpoints: true,
            additional_endpoint_bases: Vec::new(),
            require_key_set: true,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl DiscoveryPolicy {
    /// Allows endpoints that start with `base` (e.g. Class's API host for UserInfo).
    #[must_use]
    pub fn allow_endpoint_base(mut self, base: Url) -> Self {
        self.additional_endpoint_bases.push(base);
        self
    }

    /// Accepts a document without `jwks_uri` (ID tokens cannot then be verified).
    #[must_use]
    pub fn without_key_set_requirement(mut self) -> Self {
        self.require_key_set = false;
        self
    }

    /// Accepts plain-http endpoints on any host. Only for test rigs.
    #[must_use]
    pub fn danger_allow_http(mut self) -> Self {
        self.require_https = false;
        self
    }

    /// Accepts a document whose `issuer` is not the configured issuer. This disables a
    /// mix-up defence; only for providers known to misreport their issuer.
    #[must_use]
    pub fn danger_skip_issuer_check(mut self) -> Self {
        self.validate_issuer = false;
        self
    }

    /// Accepts endpoints on any host.
    #[must_use]
    pub fn danger_allow_any_endpoint_host(mut self) -> Self {
        self.validate_endpoints = false;
        self
    }

    fn check_url(&self, issuer: &IssuerUrl, field: &'static str, raw: &str) -> Result<Url, Error> {
        let url = Url::parse(raw).map_err(|e| {
            Error::from(crate::error::InputError::InvalidUrl {
                field,
                detail: format!("discovery {field}: {e}"),
            })
        })?;
        let insecure = || PolicyViolation::InsecureUrl {
            field: field.to_owned(),
            url: raw.to_owned(),
        };
        let relaxed_http = !self.require_https && url.scheme() == "http";
        if !is_secure_scheme(&url) && !relaxed_http {
            return Err(insecure().into());
        }
        if self.validate_endpoints {
            let iss = issuer.url();
            let same_origin = url.scheme() == iss.scheme()
                && url.host_str().map(str::to_ascii_lowercase)
                    == iss.host_str().map(str::to_ascii_lowercase)
                && url.port_or_known_default() == iss.port_or_known_default();
            let allowed = self
                .additional_endpoint_bases
                .iter()
                .any(|base| url.as_str().starts_with(base.as_str()));
            if !same_origin && !allowed {
                return Err(PolicyViolation::EndpointOffAuthority {
                    field: field.to_owned(),
                    url: raw.to_owned(),
                }
                .into());
            }
        }
        Ok(url)
    }

    /// Validates a parsed document against the issuer and turns it into endpoints.
    /// Members the document lacks are taken from `fallback` (the environment preset).
    pub fn validate(
        &self,
        metadata: &ProviderMetadata,
        issuer: &IssuerUrl,
        fallback: &Endpoints,
    ) -> Result<Endpoints, Error> {
        if self.validate_issuer && metadata.issuer != issuer.as_str() {
            return Err(PolicyViolation::DiscoveryIssuerMismatch {
                expected: issuer.as_str().to_owned(),
                found: crate::text::truncate(&metadata.issuer, 200).to_owned(),
            }
            .into());
        }
        let opt = |field: &'static str, v: &Option<String>| -> Result<Option<Url>, Error> {
            v.as_deref()
                .map(|raw| self.check_url(issuer, field, raw))
                .transpose()
        };
        let authorization = opt("authorization_endpoint", &metadata.authorization_endpoint)?;
        let token = opt("token_endpoint", &metadata.token_endpoint)?;
        let userinfo = opt("userinfo_endpoint", &metadata.userinfo_endpoint)?;
        let jwks = opt("jwks_uri", &metadata.jwks_uri)?;
        let revocation = opt("revocation_endpoint", &metadata.revocation_endpoint)?;
        opt("end_session_endpoint", &metadata.end_session_endpoint)?;
        opt("introspection_endpoint", &metadata.introspection_endpoint)?;
        if self.require_key_set && jwks.is_none() {
            return Err(PolicyViolation::MissingKeySet.into());
        }
        Ok(Endpoints {
            issuer: issuer.clone(),
            authorization_endpoint: authorization
                .unwrap_or_else(|| fallback.authorization_endpoint.clone()),
            token_endpoint: token.unwrap_or_else(|| fallback.token_endpoint.clone()),
            userinfo_endpoint: userinfo.or_else(|| fallback.userinfo_endpoint.clone()),
            revocation_endpoint: revocation,
            jwks_uri: jwks,
            api_base: fallback.api_base.clone(),
            authorization_response_iss_parameter_supported: metadata
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            code_challenge_methods_supported: metadata.code_challenge_methods_supported.clone(),
            id_token_signing_alg_values_supported: metadata
                .id_token_signing_alg_values_supported
                .clone(),
            source: EndpointSource::Discovery,
        })
    }
}

// The environment's discovery policy lives beside the policy, so that the environment
// module need not know discovery.
impl Environment {
    /// The discovery policy for this environment: strict defaults, plus Class's API hosts
    /// on the allow-list for the presets (UserInfo lives on the API host, not under the
    /// issuer).
    #[must_use]
    pub fn discovery_policy(&self) -> DiscoveryPolicy {
        let extra: &[&str] = match self {
            Self::Production => &[
                "https://api.class.com.au/",
                "https://apigateway.class.com.au/",
            ],
            Self::Pie => &[
                "https://api.class-pie.com.au/",
                "https://apigateway.class-pie.com.au/",
            ],
            Self::Custom(_) => &[],
        };
        extra.iter().fold(DiscoveryPolicy::default(), |p, base| {
            p.allow_endpoint_base(Url::parse(base).expect("preset URLs are valid"))
        })
    }
}

/// Parses a discovery response body (status 200 expected) into metadata.
pub fn parse_metadata(
    resp: &Response<Vec<u8>>,
    max_body: usize,
) -> Result<ProviderMetadata, Error> {
    if !resp.status().is_success() {
        return Err(crate::error::malformed(
            EndpointKind::Discovery,
            resp,
            MalformedReason::UnexpectedStatus,
        ));
    }
    let map = body::object(EndpointKind::Discovery, resp, max_body)?;
    serde_json::from_value::<ProviderMetadata>(Value::Object(map)).map_err(|e| {
        let detail = e.to_string();
        let reason = if detail.contains("missing field `issuer`") {
            MalformedReason::MissingField("issuer")
        } else {
            MalformedReason::InvalidJson {
                detail: crate::text::truncate(&detail, 200).to_owned(),
            }
        };
        crate::error::malformed(EndpointKind::Discovery, resp, reason)
    })
}

/// What the driver got when it asked for the discovery document.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum DiscoveryInput<'a> {
    /// It did not ask (discovery disabled): use the preset.
    NotFetched,
    /// The response it received.
    Response(&'a Response<Vec<u8>>),
}

/// Resolves an environment's endpoints in one call: validated discovery when a document
/// is published, the preset when the response is 404/410 or nothing was fetched, an
/// error otherwise (policy violation, malformed document, 5xx).
///
/// ```
/// use class_oauth_core::discovery::{self, DiscoveryInput};
/// use class_oauth_core::environment::{EndpointSource, Environment};
///
/// let env = Environment::Production;
/// let not_found = http::Response::builder().status(404).body(Vec::new()).unwrap();
/// let endpoints = discovery::resolve(&env, DiscoveryInput::Response(&not_found), &env.discovery_policy())?;
/// assert_eq!(endpoints.source, EndpointSource::PresetNoDiscovery);
/// assert_eq!(endpoints.token_endpoint.as_str(), "https://app.class.com.au/connect/token");
/// # Ok::<(), class_oauth_core::Error>(())
/// ```
pub fn resolve(
    env: &Environment,
    input: DiscoveryInput<'_>,
    policy: &DiscoveryPolicy,
) -> Result<Endpoints, Error> {
    let preset = env.preset();
    let resp = match input {
        DiscoveryInput::NotFetched => return Ok(preset),
        DiscoveryInput::Response(r) => r,
    };
    if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
        return Ok(Endpoints {
            source: EndpointSource::PresetNoDiscovery,
            ..preset
        });
    }
    let metadata = parse_metadata(resp, policy.max_body)?;
    policy.validate(&metadata, &env.issuer(), &preset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Response<Vec<u8>> {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&v).unwrap())
            .unwrap()
    }

    #[test]
    fn url_appends_well_known() {
        let i = IssuerUrl::new("https://idp.example/tenant").unwrap();
        assert_eq!(
            discovery_url(&i).as_str(),
            "https://idp.example/tenant/.well-known/openid-configuration"
        );
        assert_eq!(request(&i).method(), Method::GET);
    }

    #[test]
    fn production_allows_api_host_userinfo_and_keeps_extras() {
        let env = Environment::Production;
        let r = doc(serde_json::json!({
            "issuer": "https://app.class.com.au",
            "authorization_endpoint": "https://app.class.com.au/connect/authorize",
            "token_endpoint": "https://app.class.com.au/connect/token",
            "userinfo_endpoint": "https://api.class.com.au/api/1.0/u/connect/userinfo",
            "jwks_uri": "https://app.class.com.au/.well-known/jwks",
            "x_class_thing": {"a": 1}
        }));
        let e = resolve(&env, DiscoveryInput::Response(&r), &env.discovery_policy()).unwrap();
        assert_eq!(e.source, EndpointSource::Discovery);
        let m = parse_metadata(&r, DEFAULT_MAX_BODY).unwrap();
        assert_eq!(m.extra["x_class_thing"]["a"], 1);
    }

    #[test]
    fn issuer_with_a_trailing_slash_is_compared_exactly() {
        let env = Environment::Custom(IssuerUrl::new("https://idp.example/").unwrap());
        let body = |iss: &str| {
            doc(serde_json::json!({
                "issuer": iss,
                "authorization_endpoint": "https://idp.example/authorize",
                "token_endpoint": "https://idp.example/token",
                "jwks_uri": "https://idp.example/jwks"
            }))
        };
        let policy = env.discovery_policy();
        let e = resolve(
            &env,
            DiscoveryInput::Response(&body("https://idp.example/")),
            &policy,
        )
        .unwrap();
        assert_eq!(e.issuer.as_str(), "https://idp.example/");
        let err = resolve(
            &env,
            DiscoveryInput::Response(&body("https://idp.example")),
            &policy,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::PolicyViolation(PolicyViolation::DiscoveryIssuerMismatch { .. })
        ));
        assert!(
            err.to_string().contains("only by a trailing slash"),
            "{err}"
        );
    }

    #[test]
    fn policy_rejections_and_named_relaxations() {
        let env = Environment::Production;
        let base = serde_json::json!({
            "issuer": "https://app.class.com.au",
            "authorization_endpoint": "https://app.class.com.au/connect/authorize",
            "token_endpoint": "https://evil.example/connect/token",
            "jwks_uri": "https://app.class.com.au/jwks"
        });
        let err = resolve(
            &env,
            DiscoveryInput::Response(&doc(base.clone())),
            &env.discovery_policy(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PolicyViolation(PolicyViolation::EndpointOffAuthority { .. })
            ),
            "{err:?}"
        );
        let relaxed = env.discovery_policy().danger_allow_any_endpoint_host();
        assert!(resolve(&env, DiscoveryInput::Response(&doc(base)), &relaxed).is_ok());

        let mismatch = serde_json::json!({"issuer": "https://app.class.com.auINVALID", "jwks_uri": "https://app.class.com.au/jwks"});
        let err = resolve(
            &env,
            DiscoveryInput::Response(&doc(mismatch)),
            &env.discovery_policy(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::PolicyViolation(PolicyViolation::DiscoveryIssuerMismatch { .. })
        ));

        let no_keys = serde_json::json!({"issuer": "https://app.class.com.au"});
        let err = resolve(
            &env,
            DiscoveryInput::Response(&doc(no_keys.clone())),
            &env.discovery_policy(),
        )
        .unwrap_err();
        assert_eq!(err, Error::PolicyViolation(PolicyViolation::MissingKeySet));
        let ok = resolve(
            &env,
            DiscoveryInput::Response(&doc(no_keys)),
            &env.discovery_policy().without_key_set_requirement(),
        )
        .unwrap();
        assert_eq!(
            ok.token_endpoint.as_str(),
            "https://app.class.com.au/connect/token"
        );

        let http = serde_json::json!({"issuer": "https://app.class.com.au", "jwks_uri": "http://app.class.com.au/jwks"});
        let err = resolve(
            &env,
            DiscoveryInput::Response(&doc(http)),
            &env.discovery_policy(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::PolicyViolation(PolicyViolation::InsecureUrl { .. })
        ));
    }

    #[test]
    fn absent_document_falls_back_and_errors_do_not() {
        let env = Environment::Pie;
        let gone = Response::builder().status(410).body(Vec::new()).unwrap();
        assert_eq!(
            resolve(
                &env,
                DiscoveryInput::Response(&gone),
                &env.discovery_policy()
            )
            .unwrap()
            .source,
            EndpointSource::PresetNoDiscovery
        );
        assert_eq!(
            resolve(&env, DiscoveryInput::NotFetched, &env.discovery_policy())
                .unwrap()
                .source,
            EndpointSource::Preset
        );
        let bad = Response::builder()
            .status(502)
            .header("content-type", "text/html")
            .body(b"<html>bad gateway</html>".to_vec())
            .unwrap();
        let err = resolve(
            &env,
            DiscoveryInput::Response(&bad),
            &env.discovery_policy(),
        )
        .unwrap_err();
        assert!(err.is_transient());
    }
}
