//! The client configuration: id, secret, endpoints, and how requests authenticate.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::body::DEFAULT_MAX_BODY;
use crate::environment::Endpoints;
use crate::secret::{ClientSecret, Nonce, PkceVerifier, State};
use crate::types::ClientId;

/// A source of random bytes, injected so that the core never reads an RNG itself.
///
/// Transports implement it with the operating system's CSPRNG; tests use a closure.
/// Any `FnMut(&mut [u8])` is an `EntropySource`.
pub trait EntropySource {
    /// Fills `dest` with cryptographically secure random bytes.
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> EntropySource for F {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self(dest);
    }
}

fn random_token(entropy: &mut dyn EntropySource) -> String {
    let mut bytes = [0u8; 32];
    entropy.fill_bytes(&mut bytes);
    let s = URL_SAFE_NO_PAD.encode(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    s
}

impl State {
    /// A fresh `state`: 32 random bytes (256 bits, RFC 6749 10.10 asks for at least 128),
    /// base64url-encoded.
    pub fn generate(entropy: &mut dyn EntropySource) -> Self {
        Self::new(random_token(entropy))
    }
}

impl Nonce {
    /// A fresh `nonce`: 32 random bytes, base64url-encoded.
    pub fn generate(entropy: &mut dyn EntropySource) -> Self {
        Self::new(random_token(entropy))
    }
}

impl PkceVerifier {
    /// A verifier from 32 random octets, base64url-encoded (43 characters, RFC 7636 4.1).
    #[must_use]
    pub fn from_entropy(bytes: &[u8; 32]) -> Self {
        Self::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A fresh verifier drawn from `entropy`.
    pub fn generate(entropy: &mut dyn EntropySource) -> Self {
        Self::new(random_token(entropy))
    }

    /// The S256 challenge: `BASE64URL(SHA256(ASCII(verifier)))` (RFC 7636 4.2).
    #[must_use]
    pub fn challenge_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.secret().as_bytes(),
        ))
    }
}

/// Whether authorization requests carry PKCE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PkceMode {
    /// Send an S256 challenge (default). Servers that do not know PKCE ignore it.
    #[default]
    S256,
    /// Send none: for a server that rejects unknown parameters. Class does not document
    /// PKCE, so this switch exists per client.
    Disabled,
}

/// Whether authorization requests that ask for `openid` carry a `nonce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NonceMode {
    /// Send a fresh nonce and require the ID token to carry it back (default; OIDC Core
    /// 3.1.2.1 and 3.1.3.7 (11)): a token replayed from another login is refused.
    #[default]
    Required,
    /// Send none and expect none. Class documents no nonce handling; this switch exists
    /// for a provider that rejects or mishandles the parameter. The code-flow tokens are
    /// still bound to the login by `state` and PKCE.
    Disabled,
}

/// How an ID token's origin is established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdTokenTrust {
    /// Verify the signature with the provider's key set (default). Requesting `openid`
    /// from a provider without a `jwks_uri` is refused before any code is spent.
    #[default]
    Signature,
    /// When the provider publishes no key set, trust an ID token because it came
    /// straight from the token endpoint over TLS (OIDC Core 3.1.3.7 (6)): every claim
    /// is still checked, only the signature is not. Off by default; anyone able to
    /// answer for the token endpoint could then forge identities. A key set, when one is
    /// published, is always used.
    DangerTokenEndpointTls,
}

/// The client id, the secret and the `Authorization: Basic` value made from them, built
/// once and shared (cloning a [`Client`], or a flow, copies no secret).
#[derive(Debug)]
pub(crate) struct Credentials {
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    /// `Basic base64(urlencode(id):urlencode(secret))`, marked sensitive.
    basic: Option<http::HeaderValue>,
}

impl Credentials {
    pub(crate) fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    pub(crate) fn is_confidential(&self) -> bool {
        self.client_secret.is_some()
    }

    pub(crate) fn new(client_id: ClientId, client_secret: Option<ClientSecret>) -> Arc<Self> {
        let basic = client_secret.as_ref().map(|secret| {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let mut pair = zeroize::Zeroizing::new(format!(
                "{}:{}",
                enc(client_id.as_str()),
                enc(secret.secret())
            ));
            let mut value =
                zeroize::Zeroizing::new(String::with_capacity(6 + pair.len().div_ceil(3) * 4));
            value.push_str("Basic ");
            STANDARD.encode_string(pair.as_bytes(), &mut value);
            zeroize::Zeroize::zeroize(&mut *pair);
            let mut header = http::HeaderValue::from_str(&value)
                .expect("base64 and `Basic ` are valid header characters");
            header.set_sensitive(true);
            header
        });
        Arc::new(Self {
            client_id,
            client_secret,
            basic,
        })
    }
}

/// A Class OAuth client: its credentials and the endpoints it talks to.
///
/// `Debug` never prints the secret.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Client {
    credentials: Arc<Credentials>,
    endpoints: Arc<Endpoints>,
    /// The token endpoint as an `http::Uri`, parsed once per set of endpoints.
    token_uri: Option<http::Uri>,
    pkce: PkceMode,
    nonce: NonceMode,
    id_token_trust: IdTokenTrust,
    max_body: usize,
    pending_lifetime: Duration,
}

impl Client {
    /// A public client (no secret). Use [`Client::with_secret`] for the usual
    /// confidential Class client.
    #[must_use]
    pub fn new(client_id: ClientId, endpoints: Endpoints) -> Self {
        Self::with_shared(Credentials::new(client_id, None), endpoints)
    }

    /// A client on credentials built once elsewhere (a `ClientConfig` shares its own).
    pub(crate) fn with_shared(credentials: Arc<Credentials>, endpoints: Endpoints) -> Self {
        Self {
            credentials,
            token_uri: token_uri(&endpoints),
            endpoints: Arc::new(endpoints),
            pkce: PkceMode::default(),
            nonce: NonceMode::default(),
            id_token_trust: IdTokenTrust::default(),
            max_body: DEFAULT_MAX_BODY,
            pending_lifetime: Duration::from_secs(30 * 60),
        }
    }

    /// Sets the client secret; token requests then authenticate with HTTP Basic.
    #[must_use]
    pub fn with_secret(mut self, secret: ClientSecret) -> Self {
        self.credentials = Credentials::new(self.credentials.client_id.clone(), Some(secret));
        self
    }

    /// Sets the PKCE mode.
    #[must_use]
    pub fn with_pkce(mut self, mode: PkceMode) -> Self {
        self.pkce = mode;
        self
    }

    /// Sets the nonce mode (default [`NonceMode::Required`]).
    #[must_use]
    pub fn with_nonce(mut self, mode: NonceMode) -> Self {
        self.nonce = mode;
        self
    }

    /// Trusts ID tokens from the token endpoint over TLS when the provider publishes no
    /// key set ([`IdTokenTrust::DangerTokenEndpointTls`]); read its warning first.
    #[must_use]
    pub fn danger_trust_id_tokens_from_token_endpoint_tls(mut self) -> Self {
        self.id_token_trust = IdTokenTrust::DangerTokenEndpointTls;
        self
    }

    /// Sets how ID tokens are trusted (default [`IdTokenTrust::Signature`]).
    #[must_use]
    pub fn with_id_token_trust(mut self, trust: IdTokenTrust) -> Self {
        self.id_token_trust = trust;
        self
    }

    /// The nonce mode.
    #[must_use]
    pub fn nonce(&self) -> NonceMode {
        self.nonce
    }

    /// How ID tokens are trusted.
    #[must_use]
    pub fn id_token_trust(&self) -> IdTokenTrust {
        self.id_token_trust
    }

    /// Sets the response body cap the parsers enforce (default 1 MiB).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long a pending authorization stays redeemable (default 30 minutes: long
    /// enough for a login with MFA, short enough to bound a stolen record).
    #[must_use]
    pub fn with_pending_lifetime(mut self, lifetime: Duration) -> Self {
        self.pending_lifetime = lifetime;
        self
    }

    /// Replaces the endpoints (after a discovery refresh, say).
    #[must_use]
    pub fn with_endpoints(mut self, endpoints: Endpoints) -> Self {
        self.token_uri = token_uri(&endpoints);
        self.endpoints = Arc::new(endpoints);
        self
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &ClientId {
        &self.credentials.client_id
    }

    /// Is a secret configured?
    #[must_use]
    pub fn is_confidential(&self) -> bool {
        self.credentials.client_secret.is_some()
    }

    /// The endpoints.
    #[must_use]
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The PKCE mode.
    #[must_use]
    pub fn pkce(&self) -> PkceMode {
        self.pkce
    }

    /// The body cap.
    #[must_use]
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The pending-authorization lifetime.
    #[must_use]
    pub fn pending_lifetime(&self) -> Duration {
        self.pending_lifetime
    }

    /// The `Authorization: Basic` value for client_secret_basic, with id and secret
    /// form-urlencoded before base64 (RFC 6749 2.3.1), built once per set of credentials
    /// and marked sensitive. `None` for a public client.
    pub(crate) fn basic_authorization(&self) -> Option<&http::HeaderValue> {
        self.credentials.basic.as_ref()
    }

    /// A form POST to a token-endpoint style `uri`, authenticated as this client (Basic
    /// when a secret is set, else `client_id` in the form: a public client), asking for
    /// JSON. Built straight into the request (no `http::request::Builder`, which moves
    /// its parts through every call).
    pub(crate) fn form_post<'a>(
        &'a self,
        uri: http::Uri,
        mut form: crate::body::FormBody<'a>,
    ) -> http::Request<Vec<u8>> {
        let basic = self.basic_authorization();
        if basic.is_none() {
            form.pair("client_id", self.client_id().as_str());
        }
        let mut request = http::Request::new(form.finish());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        // Room for the transport's `User-Agent` too, so adding it does not regrow the map.
        headers.reserve(4);
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(value) = basic {
            headers.insert(http::header::AUTHORIZATION, value.clone());
        }
        request
    }

    /// The token endpoint as an `http::Uri` (parsed once per set of endpoints).
    pub(crate) fn token_uri(&self) -> Result<http::Uri, crate::error::Error> {
        match &self.token_uri {
            Some(uri) => Ok(uri.clone()),
            None => parse_uri(self.endpoints.token_endpoint.as_str(), "token request"),
        }
    }
}

fn token_uri(endpoints: &Endpoints) -> Option<http::Uri> {
    http::Uri::try_from(endpoints.token_endpoint.as_str()).ok()
}

/// `url` as an `http::Uri`, or an input error naming `field`.
pub(crate) fn parse_uri(url: &str, field: &'static str) -> Result<http::Uri, crate::error::Error> {
    http::Uri::try_from(url).map_err(|e| {
        crate::error::InputError::InvalidValue {
            field,
            detail: e.to_string(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let bytes: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let v = PkceVerifier::from_entropy(&bytes);
        assert_eq!(v.secret(), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            v.challenge_s256(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn basic_auth_form_encodes_first() {
        let c = Client::new(
            ClientId::new("<client_id>"),
            Environment::Production.preset(),
        )
        .with_secret(ClientSecret::new("<client_secret>"));
        // `<` and `>` are form-encoded before base64 (RFC 6749 2.3.1).
        let expected = format!(
            "Basic {}",
            STANDARD.encode("%3Cclient_id%3E:%3Cclient_secret%3E")
        );
        assert_eq!(c.basic_authorization().unwrap(), expected.as_str());
        assert!(c.basic_authorization().unwrap().is_sensitive());
        let guid = Client::new(
            ClientId::new("1eaa3979-9caf-4c6b-bab8-2cbcd549d410"),
            Environment::Production.preset(),
        )
        .with_secret(ClientSecret::new("s3cr3t"));
        assert_eq!(
            guid.basic_authorization().unwrap(),
            format!(
                "Basic {}",
                STANDARD.encode("1eaa3979-9caf-4c6b-bab8-2cbcd549d410:s3cr3t")
            )
            .as_str()
        );
        assert!(!format!("{guid:?}").contains("s3cr3t"));
    }

    #[test]
    fn generated_values_have_256_bits() {
        let mut counter = 0u8;
        let mut entropy = |b: &mut [u8]| {
            for x in b.iter_mut() {
                counter = counter.wrapping_add(1);
                *x = counter;
            }
        };
        let s = State::generate(&mut entropy);
        let n = Nonce::generate(&mut entropy);
        assert_eq!(s.secret().len(), 43);
        assert_ne!(s.secret(), n.secret());
        assert_eq!(URL_SAFE_NO_PAD.decode(s.secret()).unwrap().len(), 32);
    }
}
