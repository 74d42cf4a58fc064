//! The authorization request (pure URL building) and the pending-authorization record.

use std::fmt;
use std::time::{Duration, SystemTime};

use url::Url;

use crate::client::{Client, EntropySource, IdTokenTrust, NonceMode, PkceMode};
use crate::error::{Error, InputError};
use crate::scope::{Scope, Scopes};
use crate::secret::{Nonce, PkceVerifier, State};
use crate::types::{ClientId, IssuerUrl, RedirectUrl};

/// One `prompt` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PromptValue {
    /// `none`: no UI; fails with `login_required` / `consent_required` when needed.
    None,
    /// `login`: force a fresh login.
    Login,
    /// `consent`: force the consent screen.
    Consent,
    /// `select_account` (OIDC; not documented by Class).
    SelectAccount,
}

impl PromptValue {
    /// The wire form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Login => "login",
            Self::Consent => "consent",
            Self::SelectAccount => "select_account",
        }
    }
}

/// The `prompt` parameter: one or more values; `none` must stand alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt(Vec<PromptValue>);

impl Prompt {
    /// Builds a prompt, rejecting `none` combined with anything else.
    pub fn new(values: impl IntoIterator<Item = PromptValue>) -> Result<Self, InputError> {
        let mut v: Vec<PromptValue> = Vec::new();
        for x in values {
            if !v.contains(&x) {
                v.push(x);
            }
        }
        if v.is_empty() {
            return Err(InputError::InvalidValue {
                field: "prompt",
                detail: "no value".into(),
            });
        }
        if v.len() > 1 && v.contains(&PromptValue::None) {
            return Err(InputError::PromptNoneNotAlone);
        }
        Ok(Self(v))
    }

    /// Parses `"login consent"`-style text.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let values = s
            .split_ascii_whitespace()
            .map(|p| match p {
                "none" => Ok(PromptValue::None),
                "login" => Ok(PromptValue::Login),
                "consent" => Ok(PromptValue::Consent),
                "select_account" => Ok(PromptValue::SelectAccount),
                other => Err(InputError::InvalidValue {
                    field: "prompt",
                    detail: format!("unknown value `{other}`"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(values)
    }

    /// Contains `none`?
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.0 == [PromptValue::None]
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.0.iter().map(|p| p.as_str()).collect();
        f.write_str(&parts.join(" "))
    }
}

/// How the authorization response comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseMode {
    /// Query string of a GET to the redirect URI (Class's default).
    Query,
    /// A form POST to the redirect URI (keeps the code out of browser history).
    FormPost,
}

impl ResponseMode {
    /// The wire form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::FormPost => "form_post",
        }
    }
}

/// Everything needed to finish an authorization: keep it server-side, bound to the
/// user's session (or keyed by `state` in a store), and hand it back with the callback.
/// Verifying a callback ([`PendingAuthorization::verify_callback`]) consumes it, and its
/// fields are read-only, so a record answers one callback with the values it was made
/// with.
///
/// `Debug` redacts `state`, `nonce` and the PKCE verifier. Serialising it needs
/// [`ExposeSecrets`](crate::secret::ExposeSecrets): store the record where only your
/// server can read it.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingAuthorization {
    pub(crate) state: State,
    pub(crate) nonce: Option<Nonce>,
    pub(crate) pkce_verifier: Option<PkceVerifier>,
    pub(crate) redirect_uri: RedirectUrl,
    pub(crate) issuer: IssuerUrl,
    pub(crate) iss_required: bool,
    pub(crate) client_id: ClientId,
    pub(crate) scopes: Scopes,
    pub(crate) max_age: Option<u64>,
    pub(crate) response_mode: Option<ResponseMode>,
    #[serde(with = "crate::time::unix_seconds")]
    pub(crate) created_at: SystemTime,
    #[serde(with = "crate::time::unix_seconds")]
    pub(crate) expires_at: SystemTime,
}

impl PendingAuthorization {
    /// A key to index the record by, derived from `state` (the same value the callback
    /// carries). It is the state itself: treat it as a secret.
    #[must_use]
    pub fn lookup_key(&self) -> &str {
        self.state.secret()
    }

    /// The `state` sent.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The `nonce` sent (when `openid` was requested and the nonce is on).
    #[must_use]
    pub fn nonce(&self) -> Option<&Nonce> {
        self.nonce.as_ref()
    }

    /// The PKCE verifier (when PKCE is on).
    #[must_use]
    pub fn pkce_verifier(&self) -> Option<&PkceVerifier> {
        self.pkce_verifier.as_ref()
    }

    /// The redirect URI sent; the token request repeats it exactly.
    #[must_use]
    pub fn redirect_uri(&self) -> &RedirectUrl {
        &self.redirect_uri
    }

    /// The issuer the request went to (mix-up defence, RFC 9207).
    #[must_use]
    pub fn issuer(&self) -> &IssuerUrl {
        &self.issuer
    }

    /// Whether the provider promised `iss` on the response.
    #[must_use]
    pub fn iss_required(&self) -> bool {
        self.iss_required
    }

    /// The client that made the request.
    #[must_use]
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// The scope requested.
    #[must_use]
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// `max_age` sent.
    #[must_use]
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age.map(Duration::from_secs)
    }

    /// The response mode requested.
    #[must_use]
    pub fn response_mode(&self) -> Option<ResponseMode> {
        self.response_mode
    }

    /// When the request was built.
    #[must_use]
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// After this the record is refused.
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// Parameters the library sets; extra parameters may not repeat them.
pub const RESERVED_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "login_hint",
    "response_mode",
    "max_age",
];

/// An authorization-code request (RFC 6749 4.1.1, OIDC Core 3.1.2.1).
///
/// Always sends `state` (256 bits); sends `nonce` when `openid` is requested and a PKCE
/// S256 challenge unless the client disabled PKCE.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuthorizationRequest<'a> {
    client: &'a Client,
    redirect_uri: RedirectUrl,
    scopes: Scopes,
    prompt: Option<Prompt>,
    login_hint: Option<String>,
    response_mode: Option<ResponseMode>,
    max_age: Option<Duration>,
    extra: Vec<(String, String)>,
}

impl<'a> AuthorizationRequest<'a> {
    /// A request for `scopes`, answered at `redirect_uri`.
    pub fn new(client: &'a Client, redirect_uri: RedirectUrl, scopes: Scopes) -> Self {
        Self {
            client,
            redirect_uri,
            scopes,
            prompt: None,
            login_hint: None,
            response_mode: None,
            max_age: None,
            extra: Vec::new(),
        }
    }

    /// Sets `prompt`.
    pub fn prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Sets `login_hint` (Class: an email address pre-filled on the login page).
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.login_hint = Some(hint.into());
        self
    }

    /// Sets `response_mode`.
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = Some(mode);
        self
    }

    /// Sets `max_age` (OIDC); the ID token's `auth_time` is then checked against it.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Adds a parameter the library does not model. Reserved names are refused at build.
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Builds the URL to send the browser to, and the record to keep until the callback.
    pub fn build(
        self,
        entropy: &mut dyn EntropySource,
        now: SystemTime,
    ) -> Result<(Url, PendingAuthorization), Error> {
        self.scopes.validate().map_err(InputError::from)?;
        if self.max_age == Some(Duration::ZERO) && self.prompt.as_ref().is_some_and(Prompt::is_none)
        {
            return Err(InputError::InvalidValue {
                field: "max_age",
                detail: "max_age=0 contradicts prompt=none".into(),
            }
            .into());
        }
        let endpoint = &self.client.endpoints().authorization_endpoint;
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in endpoint.query_pairs() {
            if RESERVED_PARAMETERS.contains(&name.as_ref()) {
                return Err(InputError::ReservedParameter(name.into_owned()).into());
            }
        }
        for (name, _) in &self.extra {
            if RESERVED_PARAMETERS.contains(&name.as_str())
                || seen.contains(&name.as_str())
                || endpoint.query_pairs().any(|(n, _)| n == name.as_str())
            {
                return Err(InputError::ReservedParameter(name.clone()).into());
            }
            seen.push(name);
        }

        let openid = self.scopes.contains(&Scope::OpenId);
        if openid
            && self.client.endpoints().jwks_uri.is_none()
            && self.client.id_token_trust() == IdTokenTrust::Signature
        {
            return Err(InputError::OpenIdWithoutKeySet.into());
        }
        let state = State::generate(entropy);
        let nonce = (openid && self.client.nonce() == NonceMode::Required)
            .then(|| Nonce::generate(entropy));
        let verifier = match self.client.pkce() {
            PkceMode::S256 => Some(PkceVerifier::generate(entropy)),
            PkceMode::Disabled => None,
        };

        let mut url = endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client.client_id().as_str())
                .append_pair("redirect_uri", self.redirect_uri.as_str());
            if !self.scopes.is_empty() {
                q.append_pair("scope", &self.scopes.to_string());
            }
            q.append_pair("state", state.secret());
            if let Some(n) = &nonce {
                q.append_pair("nonce", n.secret());
            }
            if let Some(v) = &verifier {
                q.append_pair("code_challenge", &v.challenge_s256())
                    .append_pair("code_challenge_method", "S256");
            }
            if let Some(p) = &self.prompt {
                q.append_pair("prompt", &p.to_string());
            }
            if let Some(h) = &self.login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(m) = self.response_mode {
                q.append_pair("response_mode", m.as_str());
            }
            if let Some(a) = self.max_age {
                q.append_pair("max_age", &a.as_secs().to_string());
            }
            for (k, v) in &self.extra {
                q.append_pair(k, v);
            }
        }

        let pending = PendingAuthorization {
            state,
            nonce,
            pkce_verifier: verifier,
            redirect_uri: self.redirect_uri,
            issuer: self.client.endpoints().issuer.clone(),
            iss_required: self
                .client
                .endpoints()
                .authorization_response_iss_parameter_supported,
            client_id: self.client.client_id().clone(),
            scopes: self.scopes,
            max_age: self.max_age.map(|d| d.as_secs()),
            response_mode: self.response_mode,
            created_at: now,
            expires_at: crate::time::add(now, self.client.pending_lifetime()),
        };
        Ok((url, pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;

    fn entropy() -> impl FnMut(&mut [u8]) {
        let mut n = 0u8;
        move |b: &mut [u8]| {
            for x in b.iter_mut() {
                n = n.wrapping_add(7);
                *x = n;
            }
        }
    }

    /// The Production preset with a key set, as discovery would give it.
    fn endpoints_with_keys() -> crate::environment::Endpoints {
        let mut e = Environment::Production.preset();
        e.jwks_uri = Some(Url::parse("https://app.class.com.au/.well-known/jwks").unwrap());
        e
    }

    #[test]
    fn openid_without_a_key_set_is_refused_before_any_code_is_spent() {
        let redirect = RedirectUrl::new("https://partner.example/cb").unwrap();
        let scopes = Scopes::parse("openid target:b fund.read").unwrap();
        // The preset publishes no jwks_uri: no ID token could ever be verified.
        let client = Client::new(ClientId::new("cid"), Environment::Production.preset());
        let err = AuthorizationRequest::new(&client, redirect.clone(), scopes.clone())
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(err, Error::InvalidInput(InputError::OpenIdWithoutKeySet));
        let text = err.to_string();
        assert!(text.contains("jwks_uri") && text.contains("danger_trust_id_tokens"));
        // The two ways out: a key set, or the named opt-in.
        let keyed = Client::new(ClientId::new("cid"), endpoints_with_keys());
        assert!(
            AuthorizationRequest::new(&keyed, redirect.clone(), scopes.clone())
                .build(&mut entropy(), SystemTime::UNIX_EPOCH)
                .is_ok()
        );
        let opted_in = client.danger_trust_id_tokens_from_token_endpoint_tls();
        assert!(
            AuthorizationRequest::new(&opted_in, redirect, scopes)
                .build(&mut entropy(), SystemTime::UNIX_EPOCH)
                .is_ok()
        );
    }

    #[test]
    fn nonce_mode_disabled_sends_and_expects_none() {
        let redirect = RedirectUrl::new("https://partner.example/cb").unwrap();
        let scopes = Scopes::parse("openid").unwrap();
        let client = Client::new(ClientId::new("cid"), endpoints_with_keys());
        let (url, pending) = AuthorizationRequest::new(&client, redirect.clone(), scopes.clone())
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(url.query_pairs().any(|(k, _)| k == "nonce") && pending.nonce().is_some());
        let client = client.with_nonce(NonceMode::Disabled);
        let (url, pending) = AuthorizationRequest::new(&client, redirect, scopes)
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(!url.query_pairs().any(|(k, _)| k == "nonce") && pending.nonce().is_none());
    }

    #[test]
    fn url_has_every_parameter_once() {
        let client = Client::new(ClientId::new("cid"), endpoints_with_keys());
        let redirect = RedirectUrl::new("https://partner.example/cb?tenant=7").unwrap();
        let scopes = Scopes::parse("openid target:b fund.read offline_access").unwrap();
        let (url, pending) = AuthorizationRequest::new(&client, redirect, scopes)
            .prompt(Prompt::parse("login consent").unwrap())
            .login_hint("a@b.example")
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("redirect_uri"),
            Some("https://partner.example/cb?tenant=7")
        );
        assert_eq!(
            get("scope"),
            Some("openid target:b fund.read offline_access")
        );
        assert_eq!(get("state"), Some(pending.state().secret()));
        assert_eq!(get("nonce"), Some(pending.nonce().unwrap().secret()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("prompt"), Some("login consent"));
        let mut names: Vec<_> = pairs.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), pairs.len());
        assert!(!format!("{pending:?}").contains(pending.state().secret()));
    }

    #[test]
    fn refuses_bad_input() {
        let client = Client::new(ClientId::new("cid"), Environment::Production.preset())
            .with_pkce(PkceMode::Disabled);
        let redirect = RedirectUrl::new("https://partner.example/cb").unwrap();
        let err = AuthorizationRequest::new(
            &client,
            redirect.clone(),
            Scopes::parse("fund.read").unwrap(),
        )
        .build(&mut entropy(), SystemTime::UNIX_EPOCH)
        .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(InputError::Scope(_))));
        let err = AuthorizationRequest::new(&client, redirect.clone(), Scopes::default())
            .extra_param("state", "x")
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidInput(InputError::ReservedParameter("state".into()))
        );
        assert_eq!(
            Prompt::parse("none login"),
            Err(InputError::PromptNoneNotAlone)
        );
        let (url, p) = AuthorizationRequest::new(&client, redirect, Scopes::default())
            .build(&mut entropy(), SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(p.pkce_verifier().is_none() && p.nonce().is_none());
        assert!(!url.as_str().contains("code_challenge"));
    }
}
