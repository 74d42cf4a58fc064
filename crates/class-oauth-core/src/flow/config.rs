//! Client configuration shared by the high-level client (`class-oauth-client`, one for
//! both transports): credentials, PKCE and ID-token settings. Every flow a call needs is
//! built here from the resolved endpoints (and the key-set cache its caller owns), so
//! the client holds no protocol logic.

use std::sync::Arc;
use std::time::Duration;

use super::{KeyCache, SharedKeySet};
use crate::client::{Client, Credentials, IdTokenTrust, NonceMode, PkceMode};
use crate::environment::Endpoints;
use crate::id_token::{DEFAULT_LEEWAY, IdTokenValidator};
use crate::jose::Algorithm;
use crate::secret::ClientSecret;
use crate::types::ClientId;

/// How a high-level client authenticates and validates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The client id and secret, with the `Authorization: Basic` value built once.
    credentials: Arc<Credentials>,
    /// PKCE mode for authorization requests.
    pub pkce: PkceMode,
    /// Nonce mode for authorization requests that ask for `openid` (default: send and
    /// require).
    pub nonce: NonceMode,
    /// How ID tokens are trusted (default: signature with the provider's key set; see
    /// [`IdTokenTrust::DangerTokenEndpointTls`] for the opt-in).
    pub id_token_trust: IdTokenTrust,
    /// ID-token algorithms; `None` means discovery's list, or RS256.
    pub id_token_algorithms: Option<Vec<Algorithm>>,
    /// ID-token clock leeway (capped at 5 minutes by the validator).
    pub leeway: Duration,
    /// Audiences besides the client id that an ID token may also name (other clients of
    /// the same partner). Empty by default: any other audience is refused.
    pub trusted_audiences: Vec<String>,
    /// Response body cap.
    pub max_body: usize,
    /// Longest 429 wait the API helper sits out before retrying once.
    pub max_rate_limit_wait: Duration,
}

impl ClientConfig {
    /// A configuration with defaults: PKCE S256, RS256 (or discovery's list), 60 s
    /// leeway, 1 MiB bodies, 60 s maximum rate-limit wait.
    #[must_use]
    pub fn new(client_id: ClientId, client_secret: Option<ClientSecret>) -> Self {
        Self {
            credentials: Credentials::new(client_id, client_secret),
            pkce: PkceMode::default(),
            nonce: NonceMode::default(),
            id_token_trust: IdTokenTrust::default(),
            id_token_algorithms: None,
            leeway: DEFAULT_LEEWAY,
            trusted_audiences: Vec::new(),
            max_body: crate::body::DEFAULT_MAX_BODY,
            max_rate_limit_wait: Duration::from_secs(60),
        }
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &ClientId {
        self.credentials.client_id()
    }

    /// Is a secret configured?
    #[must_use]
    pub fn is_confidential(&self) -> bool {
        self.credentials.is_confidential()
    }

    /// Sets the client secret (its Basic header is built here, once).
    pub fn set_secret(&mut self, secret: ClientSecret) {
        self.credentials = Credentials::new(self.client_id().clone(), Some(secret));
    }

    /// The core client for `endpoints`. Every client of one configuration shares its
    /// credentials: the secret is not copied and the Basic header is built once.
    #[must_use]
    pub fn client(&self, endpoints: &Endpoints) -> Client {
        Client::with_shared(Arc::clone(&self.credentials), endpoints.clone())
            .with_pkce(self.pkce)
            .with_nonce(self.nonce)
            .with_id_token_trust(self.id_token_trust)
            .with_max_body(self.max_body)
    }

    /// The ID-token validator for `endpoints`.
    #[must_use]
    pub fn validator(&self, endpoints: &Endpoints) -> IdTokenValidator {
        let mut v = IdTokenValidator::for_endpoints(endpoints, self.client_id().clone())
            .with_leeway(self.leeway)
            .with_trust(self.id_token_trust);
        if let Some(algs) = &self.id_token_algorithms {
            v = v.with_algorithms(algs.iter().copied());
        }
        for audience in &self.trusted_audiences {
            v = v.trust_audience(audience.clone());
        }
        v
    }
}

/// The key set of `endpoints` in `cache` (none when the provider advertises no key set
/// or the caller keeps no cache).
fn key_set(endpoints: &Endpoints, cache: Option<&Arc<dyn KeyCache>>) -> Option<SharedKeySet> {
    let uri = endpoints.jwks_uri.clone()?;
    Some(SharedKeySet::new(Arc::clone(cache?), uri))
}

/// Options of an authorization request.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AuthorizeOptions {
    /// `prompt`.
    pub prompt: Option<crate::authorize::Prompt>,
    /// `login_hint`.
    pub login_hint: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<crate::authorize::ResponseMode>,
    /// `max_age`.
    pub max_age: Option<Duration>,
}

/// The flows of each use case, built from the resolved endpoints. Both transports'
/// high-level clients are "resolve endpoints, build the flow here, drive it".
impl ClientConfig {
    /// The legacy password grant; any ID token is validated.
    pub fn password_flow(
        &self,
        endpoints: &Endpoints,
        keys: Option<&Arc<dyn KeyCache>>,
        username: crate::types::Username,
        password: crate::secret::Password,
        scopes: crate::scope::Scopes,
    ) -> Result<crate::flow::TokenFlow, crate::error::Error> {
        let request = crate::token::TokenRequest::password(username, password, scopes)?;
        Ok(
            crate::flow::TokenFlow::new(&self.client(endpoints), request).with_id_token_validation(
                self.validator(endpoints),
                key_set(endpoints, keys),
                None,
            ),
        )
    }

    /// The authorization URL and pending record.
    pub fn authorization(
        &self,
        endpoints: &Endpoints,
        redirect_uri: crate::types::RedirectUrl,
        scopes: crate::scope::Scopes,
        options: AuthorizeOptions,
        entropy: &mut dyn crate::client::EntropySource,
        now: std::time::SystemTime,
    ) -> Result<(url::Url, crate::authorize::PendingAuthorization), crate::error::Error> {
        let client = self.client(endpoints);
        let mut req = crate::authorize::AuthorizationRequest::new(&client, redirect_uri, scopes);
        if let Some(p) = options.prompt {
            req = req.prompt(p);
        }
        if let Some(h) = options.login_hint {
            req = req.login_hint(h);
        }
        if let Some(m) = options.response_mode {
            req = req.response_mode(m);
        }
        if let Some(a) = options.max_age {
            req = req.max_age(a);
        }
        req.build(entropy, now)
    }

    /// Checks a callback (URL, or `form_post` body when `form_post` is set) against the
    /// pending record, then the code redemption with ID-token validation.
    pub fn callback_flow(
        &self,
        endpoints: &Endpoints,
        keys: Option<&Arc<dyn KeyCache>>,
        pending: crate::authorize::PendingAuthorization,
        callback: Callback<'_>,
        now: std::time::SystemTime,
    ) -> Result<crate::flow::TokenFlow, crate::error::Error> {
        let verified = match callback {
            Callback::Url(url) => pending.verify_callback_url(url, now)?,
            Callback::FormPost(body) => pending
                .verify_callback(&crate::callback::CallbackParams::from_form_post(body)?, now)?,
        };
        Ok(crate::flow::TokenFlow::authorization_code(
            &self.client(endpoints),
            verified,
            self.validator(endpoints),
            key_set(endpoints, keys),
        ))
    }

    /// A refresh; a new ID token is checked against `original` (OIDC Core 12.2).
    pub fn refresh_flow(
        &self,
        endpoints: &Endpoints,
        keys: Option<&Arc<dyn KeyCache>>,
        tokens: &crate::token::TokenSet,
        original: Option<&crate::id_token::IdTokenClaims>,
    ) -> Result<crate::flow::TokenFlow, crate::error::Error> {
        let request = crate::token::TokenRequest::refresh(tokens)?;
        Ok(
            crate::flow::TokenFlow::new(&self.client(endpoints), request).with_id_token_validation(
                self.validator(endpoints),
                key_set(endpoints, keys),
                original.cloned(),
            ),
        )
    }

    /// UserInfo, with the `sub` checked against the ID token's (OIDC Core 5.3.2).
    #[must_use]
    pub fn userinfo_flow(
        &self,
        endpoints: &Endpoints,
        access_token: &crate::secret::AccessToken,
        expected: crate::userinfo::ExpectedSubject<'_>,
    ) -> crate::flow::Exchange<crate::userinfo::UserInfo> {
        use crate::userinfo::ExpectedSubject;
        let client = self.client(endpoints);
        let request = crate::userinfo::request(&client, access_token);
        let expected_sub = match expected {
            ExpectedSubject::IdToken(c) => Some(c.sub.clone()),
            ExpectedSubject::Sub(s) => Some(s.to_owned()),
            _ => None,
        };
        crate::flow::Exchange::new(request, move |resp, _| {
            let expected = expected_sub
                .as_deref()
                .map_or(ExpectedSubject::NoIdToken, ExpectedSubject::Sub);
            crate::userinfo::parse_response(&client, resp, expected)
        })
    }

    /// Revocation (RFC 7009).
    #[must_use]
    pub fn revoke_flow(
        &self,
        endpoints: &Endpoints,
        request: crate::revocation::RevocationRequest,
    ) -> crate::flow::Exchange<()> {
        let client = self.client(endpoints);
        let http = request.to_http(&client);
        crate::flow::Exchange::new(http, move |resp, _| request.parse_response(&client, resp))
    }

    /// A Class API call (one 429 waited out).
    #[must_use]
    pub fn api_flow(
        &self,
        endpoints: &Endpoints,
        access_token: &crate::secret::AccessToken,
        request: crate::api::ApiRequest,
    ) -> crate::flow::ApiFlow {
        crate::flow::ApiFlow::new(
            &self.client(endpoints),
            request,
            access_token.clone(),
            self.max_rate_limit_wait,
        )
    }

    /// A `GET` below the API base.
    pub fn api_get_flow(
        &self,
        endpoints: &Endpoints,
        access_token: &crate::secret::AccessToken,
        path: &str,
    ) -> Result<crate::flow::ApiFlow, crate::error::Error> {
        let base = endpoints
            .api_base
            .as_ref()
            .ok_or(crate::error::InputError::MissingEndpoint(
                crate::error::EndpointKind::Api,
            ))?;
        Ok(self.api_flow(
            endpoints,
            access_token,
            crate::api::ApiRequest::get(base, path)?,
        ))
    }
}

/// How the authorization response arrived.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Callback<'a> {
    /// The full callback URL (query response mode).
    Url(&'a str),
    /// A `form_post` body.
    FormPost(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;

    #[test]
    fn clients_of_one_configuration_share_one_basic_header() {
        let config = ClientConfig::new(ClientId::new("c"), Some(ClientSecret::new("s")));
        let a = config.client(&Environment::Pie.preset());
        let b = config.client(&Environment::Production.preset());
        let (ha, hb) = (
            a.basic_authorization().unwrap(),
            b.basic_authorization().unwrap(),
        );
        assert_eq!(ha, hb);
        assert!(
            std::ptr::eq(ha, hb),
            "built once per configuration, not once per call"
        );
        assert!(ha.is_sensitive());
    }
}
