//! Token requests (authorization_code, refresh_token, password) and the lenient,
//! exact token-response parser.
//!
//! Lenient exactly where Class is inconsistent: `expires_in` as a number or a numeric
//! string; `token_type` compared case-insensitively (Class sends `bearer`), absent
//! meaning bearer; unknown members kept (Class's PascalCase `BusinessName` and
//! `BusinessCode` among them); a missing `scope` meaning the requested scope. Strict
//! everywhere else: a 200 carrying `error` is an error, an HTML or non-JSON body is a
//! [`MalformedResponse`](crate::error::MalformedResponse) that keeps the status and a
//! redacted excerpt, and a wrong JSON type is an error, never "absent".

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use serde_json::{Map, Value};

use crate::authorize::PendingAuthorization;
use crate::body;
use crate::callback::VerifiedCallback;
use crate::client::Client;
use crate::error::{
    EndpointKind, Error, InputError, MalformedReason, OAuthError, PolicyViolation, ServerRefusal,
};
use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::scope::{BusinessCode, Scopes};
use crate::secret::{
    AccessToken, AuthorizationCode, IdToken, Password, PkceVerifier, RefreshToken,
};
use crate::types::{ClientId, IssuerUrl, RedirectUrl, Username};

/// `expires_in` values above this are clamped (golang/oauth2 clamps to `i32::MAX` too).
pub const MAX_EXPIRES_IN: u64 = i32::MAX as u64;

/// The grant a [`TokenRequest`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Grant {
    /// `authorization_code`: redeem a code from the callback.
    AuthorizationCode {
        /// The code.
        code: AuthorizationCode,
        /// The redirect URI sent in the authorization request, repeated exactly.
        redirect_uri: RedirectUrl,
        /// The PKCE verifier, when a challenge was sent.
        code_verifier: Option<PkceVerifier>,
    },
    /// `refresh_token`: spend a (Class: one-time) refresh token.
    RefreshToken {
        /// The most recent refresh token.
        refresh_token: RefreshToken,
        /// A narrower scope, or `None` for the granted one.
        scope: Option<Scopes>,
    },
    /// `password`: the legacy resource-owner password grant, for Class customers'
    /// private clients accessing their own data only. Prefer the code flow.
    Password {
        /// Class username.
        username: Username,
        /// Password (redacted in `Debug`).
        password: Password,
        /// Requested scope.
        scope: Scopes,
    },
}

impl Grant {
    /// The `grant_type` value.
    #[must_use]
    pub fn grant_type(&self) -> &'static str {
        match self {
            Self::AuthorizationCode { .. } => "authorization_code",
            Self::RefreshToken { .. } => "refresh_token",
            Self::Password { .. } => "password",
        }
    }
}

/// A token-endpoint request. Drive it with [`crate::flow::TokenFlow`] (which sends
/// [`TokenRequest::to_http`], parses the answer and validates any ID token), with any
/// HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct TokenRequest {
    grant: Grant,
    /// What a response without `scope` was granted.
    requested_scope: Scopes,
    /// Kept when a refresh response omits the ID token.
    previous_id_token: Option<IdToken>,
    /// For code redemption: the record's client and issuer, checked against the client.
    bound_to: Option<(ClientId, IssuerUrl)>,
}

impl TokenRequest {
    /// Redeems the code of a verified callback (RFC 6749 4.1.3): `redirect_uri` and the
    /// PKCE verifier come from the pending record. To validate the ID token too (the
    /// nonce and `max_age` of the record), use [`crate::flow::TokenFlow::authorization_code`].
    pub fn authorization_code(verified: VerifiedCallback) -> Self {
        let (pending, code) = verified.into_parts();
        Self::from_pending(pending, code)
    }

    pub(crate) fn from_pending(pending: PendingAuthorization, code: AuthorizationCode) -> Self {
        Self {
            grant: Grant::AuthorizationCode {
                code,
                redirect_uri: pending.redirect_uri,
                code_verifier: pending.pkce_verifier,
            },
            requested_scope: pending.scopes,
            previous_id_token: None,
            bound_to: Some((pending.client_id, pending.issuer)),
        }
    }

    /// Refreshes a stored token set with its refresh token. Fails when it has none.
    pub fn refresh(current: &TokenSet) -> Result<Self, Error> {
        let refresh_token =
            current
                .refresh_token
                .clone()
                .ok_or_else(|| InputError::InvalidValue {
                    field: "refresh_token",
                    detail: "the token set has no refresh token (was offline_access granted?)"
                        .into(),
                })?;
        Ok(Self {
            grant: Grant::RefreshToken {
                refresh_token,
                scope: None,
            },
            requested_scope: current.scopes.clone(),
            previous_id_token: current.id_token.clone(),
            bound_to: None,
        })
    }

    /// Refreshes with a bare refresh token whose granted scope is `granted`.
    pub fn refresh_token(refresh_token: RefreshToken, granted: Scopes) -> Self {
        Self {
            grant: Grant::RefreshToken {
                refresh_token,
                scope: None,
            },
            requested_scope: granted,
            previous_id_token: None,
            bound_to: None,
        }
    }

    /// Asks a refresh for a narrower scope; it must be a subset of the granted scope
    /// (Class: "the same or a subset") and keep the Class rules (an access specifier
    /// still needs its target). Only for refresh requests.
    pub fn with_narrower_scope(mut self, scope: Scopes) -> Result<Self, Error> {
        match &mut self.grant {
            Grant::RefreshToken { scope: s, .. } => {
                scope
                    .check_subset_of(&self.requested_scope)
                    .map_err(InputError::from)?;
                scope.validate().map_err(InputError::from)?;
                self.requested_scope = scope.clone();
                *s = Some(scope);
                Ok(self)
            }
            _ => Err(InputError::InvalidValue {
                field: "scope",
                detail: "only a refresh can narrow its scope".into(),
            }
            .into()),
        }
    }

    /// The legacy password grant. Scope rules are checked. Discard the password after
    /// the call (RFC 6749 4.3.1); this value zeroizes it when dropped.
    pub fn password(username: Username, password: Password, scope: Scopes) -> Result<Self, Error> {
        scope.validate().map_err(InputError::from)?;
        Ok(Self {
            requested_scope: scope.clone(),
            grant: Grant::Password {
                username,
                password,
                scope,
            },
            previous_id_token: None,
            bound_to: None,
        })
    }

    /// The grant.
    #[must_use]
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The scope a response without `scope` is taken to grant.
    #[must_use]
    pub fn requested_scope(&self) -> &Scopes {
        &self.requested_scope
    }

    /// The HTTP request: `POST` to the token endpoint, form body, HTTP Basic client
    /// authentication (or `client_id` in the body for a public client).
    pub fn to_http(&self, client: &Client) -> Result<Request<Vec<u8>>, Error> {
        if let Some((client_id, issuer)) = &self.bound_to {
            if client_id != client.client_id() {
                return Err(PolicyViolation::PendingAuthorizationMismatch(
                    "it was made by another client id".into(),
                )
                .into());
            }
            if issuer != &client.endpoints().issuer {
                return Err(PolicyViolation::PendingAuthorizationMismatch(format!(
                    "it was made for issuer `{issuer}`; redeeming the code elsewhere would leak it"
                ))
                .into());
            }
        }
        let mut form = body::FormBody::default();
        form.pair("grant_type", self.grant.grant_type());
        match &self.grant {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.pair("code", code.secret());
                form.pair("redirect_uri", redirect_uri.as_str());
                if let Some(v) = code_verifier {
                    form.pair("code_verifier", v.secret());
                }
            }
            Grant::RefreshToken {
                refresh_token,
                scope,
            } => {
                form.pair("refresh_token", refresh_token.secret());
                if let Some(s) = scope {
                    form.pair("scope", s.to_string());
                }
            }
            Grant::Password {
                username,
                password,
                scope,
            } => {
                form.pair("username", username.as_str());
                form.pair("password", password.secret());
                if !scope.is_empty() {
                    form.pair("scope", scope.to_string());
                }
            }
        }
        Ok(client.form_post(client.token_uri()?, form))
    }

    /// Drops a password grant's password (zeroized) once its HTTP request is built.
    pub(crate) fn forget_password(&mut self) {
        if let Grant::Password { password, .. } = &mut self.grant {
            *password = Password::new(String::new());
        }
    }

    /// The ID token a refresh response without one keeps (the stored set's), if any.
    pub(crate) fn previous_id_token(&self) -> Option<&IdToken> {
        self.previous_id_token.as_ref()
    }

    /// Parses the token endpoint's response. `now` stamps the absolute expiry. Crate
    /// private: the public way is [`crate::flow::TokenFlow`], which validates any ID
    /// token before anyone can use it.
    pub(crate) fn parse_response(
        &self,
        client: &Client,
        resp: &Response<Vec<u8>>,
        now: SystemTime,
    ) -> Result<TokenSet, Error> {
        // The usual answer (a 2xx JSON object of the expected types, no `error`) is read
        // straight into its typed fields; anything else takes the general path, which
        // reports precisely what is wrong.
        let fields = match Fields::fast(resp, client.max_body()) {
            Some(fields) => fields,
            None => Fields::from_map(
                resp,
                parse_oauth_body(EndpointKind::Token, resp, client.max_body())?,
            )?,
        };
        let mut set = TokenSet::from_fields(resp, fields, &self.requested_scope, now)?;
        // OIDC Core 3.1.3.3: a code exchange for an `openid` request returns an ID token.
        // Accepting one without would silently turn off every check that needs it (the
        // UserInfo `sub` check among them).
        if matches!(self.grant, Grant::AuthorizationCode { .. })
            && self.requested_scope.contains(&crate::scope::Scope::OpenId)
            && set.id_token.is_none()
        {
            return Err(crate::error::malformed(
                EndpointKind::Token,
                resp,
                MalformedReason::MissingField("id_token"),
            ));
        }
        if let Grant::RefreshToken { refresh_token, .. } = &self.grant {
            // RFC 6749 6: no new refresh token means the old one stays valid.
            if set.refresh_token.is_none() {
                set.refresh_token = Some(refresh_token.clone());
            }
            if set.id_token.is_none() {
                set.id_token.clone_from(&self.previous_id_token);
            }
        }
        Ok(set)
    }
}

/// Decodes an OAuth JSON body and turns `error` members (on any status, 200 included)
/// and error statuses into [`Error`]s. On success returns the object.
pub(crate) fn parse_oauth_body(
    endpoint: EndpointKind,
    resp: &Response<Vec<u8>>,
    max_body: usize,
) -> Result<Map<String, Value>, Error> {
    let status = resp.status();
    let www = WwwAuthenticate::from_headers(resp.headers());
    let decoded = body::object(endpoint, resp, max_body);
    let map = match decoded {
        Ok(map) => map,
        Err(e) => {
            // A 401 with a challenge but no JSON body is still a refusal (RFC 6749 5.2).
            if status == StatusCode::UNAUTHORIZED {
                if let Some(w) = www {
                    let code = w.error().unwrap_or("invalid_client").to_owned();
                    return Err(refusal(endpoint, resp, OAuthError::new(code), Some(w)));
                }
            }
            return Err(e.into());
        }
    };
    if let Some(err) = map.get("error") {
        let Some(code) = err.as_str() else {
            return Err(crate::error::malformed(
                endpoint,
                resp,
                MalformedReason::InvalidField {
                    field: "error",
                    detail: format!("expected a string, found {}", body::json_type(err)),
                },
            ));
        };
        let text = |k: &str| {
            map.get(k)
                .and_then(Value::as_str)
                .map(|s| crate::text::truncate(s, 1000).to_owned())
        };
        let error = OAuthError {
            code: code.into(),
            description: text("error_description"),
            uri: text("error_uri"),
        };
        return Err(refusal(endpoint, resp, error, www));
    }
    if !body::is_success(status) {
        return Err(crate::error::malformed(
            endpoint,
            resp,
            MalformedReason::UnexpectedStatus,
        ));
    }
    Ok(map)
}

fn refusal(
    endpoint: EndpointKind,
    resp: &Response<Vec<u8>>,
    error: OAuthError,
    www: Option<WwwAuthenticate>,
) -> Error {
    Error::ServerRefused(Box::new(ServerRefusal {
        endpoint,
        status: Some(resp.status()),
        error,
        www_authenticate: www,
        retry_after: RetryAfter::from_headers(resp.headers()),
    }))
}

/// A validated token response, with an absolute expiry. Serialisable for stores (the
/// secrets are written in clear: encrypt at rest).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TokenSet {
    /// The access token.
    pub access_token: AccessToken,
    /// `token_type` as sent (always bearer, compared case-insensitively).
    pub token_type: String,
    /// The refresh token: the new one, or the one spent when the server sent none.
    pub refresh_token: Option<RefreshToken>,
    /// The raw ID token (validate before trusting its claims).
    pub id_token: Option<IdToken>,
    /// The granted scope (or the requested one when the response omitted `scope`).
    pub scopes: Scopes,
    /// Did the response carry `scope`? `false` means [`TokenSet::scopes`] is the request.
    pub scope_in_response: bool,
    /// When the response was received (the `now` passed in).
    #[serde(with = "crate::time::unix_seconds")]
    pub received_at: SystemTime,
    /// `expires_in` as sent (clamped), in seconds.
    pub expires_in: Option<u64>,
    /// `received_at + expires_in`.
    #[serde(with = "crate::time::unix_seconds_opt")]
    pub expires_at: Option<SystemTime>,
    /// Every member not modelled above, as sent (Class's `BusinessName`, `BusinessCode`).
    pub extra: Map<String, Value>,
}

/// A token response's members, typed; what is not modelled stays as sent.
struct Fields {
    access_token: Option<String>,
    token_type: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    scope: Option<String>,
    expires_in: Option<Value>,
    extra: Map<String, Value>,
}

impl Fields {
    /// From a decoded object (the general path).
    fn from_map(resp: &Response<Vec<u8>>, mut map: Map<String, Value>) -> Result<Self, Error> {
        let take_string = |field: &'static str, map: &mut Map<String, Value>| {
            crate::claims::take_string(map, field, crate::claims::Null::Absent).map_err(|e| {
                crate::error::malformed(
                    EndpointKind::Token,
                    resp,
                    MalformedReason::InvalidField {
                        field,
                        detail: e.detail(),
                    },
                )
            })
        };
        // A missing access token is reported before the other members' types.
        let access_token = take_string("access_token", &mut map)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                crate::error::malformed(
                    EndpointKind::Token,
                    resp,
                    MalformedReason::MissingField("access_token"),
                )
            })?;
        Ok(Self {
            access_token: Some(access_token),
            token_type: take_string("token_type", &mut map)?,
            refresh_token: take_string("refresh_token", &mut map)?,
            id_token: take_string("id_token", &mut map)?,
            scope: take_string("scope", &mut map)?,
            expires_in: map.remove("expires_in").filter(|v| !v.is_null()),
            extra: map,
        })
    }

    /// Straight from the body, when it is the usual answer: a success status, JSON
    /// within the cap, an object without `error` whose modelled members have their
    /// types. `None` otherwise (the general path then says why).
    fn fast(resp: &Response<Vec<u8>>, max_body: usize) -> Option<Self> {
        if !body::is_success(resp.status())
            || resp.body().len() > max_body
            || !matches!(body::format_of(resp), body::BodyFormat::Json)
        {
            return None;
        }
        serde_json::from_slice::<FastFields>(resp.body())
            .ok()
            .map(|f| f.0)
    }
}

/// [`Fields`] deserialised member by member: no intermediate `Value` for the modelled
/// members; an `error` member or a member of the wrong type fails (to the general path).
struct FastFields(Fields);

/// A member name: one of the modelled ones, or another kept as sent.
enum Member {
    AccessToken,
    TokenType,
    RefreshToken,
    IdToken,
    Scope,
    ExpiresIn,
    Error,
    Other(String),
}

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Member, E> {
                Ok(match name {
                    "access_token" => Member::AccessToken,
                    "token_type" => Member::TokenType,
                    "refresh_token" => Member::RefreshToken,
                    "id_token" => Member::IdToken,
                    "scope" => Member::Scope,
                    "expires_in" => Member::ExpiresIn,
                    "error" => Member::Error,
                    other => Member::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> serde::Deserialize<'de> for FastFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FastFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token response object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FastFields, A::Error> {
                let mut f = Fields {
                    access_token: None,
                    token_type: None,
                    refresh_token: None,
                    id_token: None,
                    scope: None,
                    expires_in: None,
                    extra: Map::new(),
                };
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::AccessToken => f.access_token = map.next_value()?,
                        Member::TokenType => f.token_type = map.next_value()?,
                        Member::RefreshToken => f.refresh_token = map.next_value()?,
                        Member::IdToken => f.id_token = map.next_value()?,
                        Member::Scope => f.scope = map.next_value()?,
                        Member::ExpiresIn => {
                            f.expires_in =
                                Some(map.next_value::<Value>()?).filter(|v| !v.is_null());
                        }
                        Member::Error => {
                            return Err(serde::de::Error::custom("an error response"));
                        }
                        Member::Other(name) => {
                            let value = map.next_value::<Value>()?;
                            f.extra.insert(name, value);
                        }
                    }
                }
                Ok(FastFields(f))
            }
        }
        d.deserialize_map(V)
    }
}

impl TokenSet {
    fn from_fields(
        resp: &Response<Vec<u8>>,
        fields: Fields,
        requested: &Scopes,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let bad = |field: &'static str, detail: String| {
            crate::error::malformed(
                EndpointKind::Token,
                resp,
                MalformedReason::InvalidField { field, detail },
            )
        };
        let Fields {
            access_token,
            token_type,
            refresh_token,
            id_token,
            scope: scope_text,
            expires_in,
            extra,
        } = fields;
        let access_token = access_token.filter(|s| !s.is_empty()).ok_or_else(|| {
            crate::error::malformed(
                EndpointKind::Token,
                resp,
                MalformedReason::MissingField("access_token"),
            )
        })?;
        let token_type = token_type.unwrap_or_else(|| "bearer".to_owned());
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(crate::error::malformed(
                EndpointKind::Token,
                resp,
                MalformedReason::UnsupportedTokenType(token_type),
            ));
        }
        let refresh_token = refresh_token.filter(|s| !s.is_empty());
        let id_token = id_token.filter(|s| !s.is_empty());
        let expires_in = match expires_in {
            None => None,
            Some(v) => Some(parse_expires_in(&v).map_err(|d| bad("expires_in", d))?),
        };
        let (scopes, scope_in_response) = match scope_text {
            Some(s) => (
                Scopes::parse(&s).map_err(|e| bad("scope", e.to_string()))?,
                true,
            ),
            None => (requested.clone(), false),
        };
        Ok(Self {
            access_token: AccessToken::new(access_token),
            token_type,
            refresh_token: refresh_token.map(RefreshToken::new),
            id_token: id_token.map(IdToken::new),
            scopes,
            scope_in_response,
            received_at: now,
            expires_in,
            expires_at: expires_in.map(|s| crate::time::add(now, Duration::from_secs(s))),
            extra,
        })
    }

    /// The business this grant covers: the code in the granted `target:b/<CODE>`, else
    /// Class's `BusinessCode` member.
    #[must_use]
    pub fn business_code(&self) -> Option<BusinessCode> {
        self.scopes.business_code().cloned().or_else(|| {
            self.extra
                .get("BusinessCode")
                .and_then(Value::as_str)
                .and_then(|s| BusinessCode::new(s).ok())
        })
    }

    /// Class's `BusinessName` member, when sent.
    #[must_use]
    pub fn business_name(&self) -> Option<&str> {
        self.extra.get("BusinessName").and_then(Value::as_str)
    }

    /// The lifetime the server gave the access token.
    #[must_use]
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    /// Is the access token past its expiry at `now`? `false` when the expiry is unknown.
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

fn parse_expires_in(v: &Value) -> Result<u64, String> {
    let clamp = |f: f64| -> Result<u64, String> {
        if !f.is_finite() || f < 0.0 {
            return Err("must be a non-negative number of seconds".into());
        }
        // Truncation is intended: fractional seconds are dropped; values clamp.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok((f.min(MAX_EXPIRES_IN as f64)) as u64)
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Ok(u.min(MAX_EXPIRES_IN)),
            None => clamp(n.as_f64().unwrap_or(-1.0)),
        },
        Value::String(s) => {
            let t = s.trim();
            match t.parse::<u64>() {
                Ok(u) => Ok(u.min(MAX_EXPIRES_IN)),
                Err(_) => match t.parse::<f64>() {
                    Ok(f) => clamp(f),
                    Err(_) => Err(format!(
                        "`{}` is not a number of seconds",
                        crate::text::truncate(t, 40)
                    )),
                },
            }
        }
        other => Err(format!(
            "expected a number, found {}",
            body::json_type(other)
        )),
    }
}

#[cfg(test)]
mod fast_path;
#[cfg(test)]
mod tests;
