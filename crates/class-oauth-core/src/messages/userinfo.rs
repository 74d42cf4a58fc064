//! UserInfo (OIDC Core 5.3): the Bearer request and the claims, with Class's
//! `class_profile` claims and `class_role` split from its comma list.
//!
//! Class serves UserInfo on its API host (`/api/1.0/u/connect/userinfo`). Only `sub` is
//! guaranteed. When the ID token's `sub` is known, a response with another `sub` is
//! rejected (OIDC Core 5.3.2).

use http::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};

use crate::body;
use crate::claims::{ClaimNames, presence};
use crate::client::Client;
use crate::error::{
    EndpointKind, Error, InputError, MalformedReason, OAuthError, PolicyViolation, ServerRefusal,
};
use crate::headers::{RetryAfter, WwwAuthenticate};
use crate::secret::AccessToken;

/// The UserInfo request: `GET` with `Authorization: Bearer` (never the query string).
pub fn request(client: &Client, access_token: &AccessToken) -> Result<Request<Vec<u8>>, Error> {
    let url = client
        .endpoints()
        .userinfo_endpoint
        .as_ref()
        .ok_or(InputError::MissingEndpoint(EndpointKind::UserInfo))?;
    Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", access_token.secret()),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| {
            InputError::InvalidValue {
                field: "userinfo request",
                detail: e.to_string(),
            }
            .into()
        })
}

/// A postal address claim (OIDC Core 5.1.1); also Class's `business_address`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Address {
    /// `formatted`.
    #[serde(default)]
    pub formatted: Option<String>,
    /// `street_address`.
    #[serde(default)]
    pub street_address: Option<String>,
    /// `locality`.
    #[serde(default)]
    pub locality: Option<String>,
    /// `region`.
    #[serde(default)]
    pub region: Option<String>,
    /// `postal_code`.
    #[serde(default)]
    pub postal_code: Option<String>,
    /// `country`.
    #[serde(default)]
    pub country: Option<String>,
}

/// The UserInfo claims.
///
/// `Debug` shows the subject, the business code and roles, and which personal claims are
/// present, never their values (names, email, phone, addresses).
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// `sub`, the only claim Class guarantees.
    pub sub: String,
    /// `name`.
    pub name: Option<String>,
    /// `given_name`.
    pub given_name: Option<String>,
    /// `middle_name`.
    pub middle_name: Option<String>,
    /// `family_name`.
    pub family_name: Option<String>,
    /// `gender`.
    pub gender: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified` (a boolean, or the strings "true"/"false").
    pub email_verified: Option<bool>,
    /// `phone_number`.
    pub phone_number: Option<String>,
    /// `address`.
    pub address: Option<Address>,
    /// `business_name` (class_profile).
    pub business_name: Option<String>,
    /// `business_code` (class_profile).
    pub business_code: Option<String>,
    /// `business_address` (class_profile).
    pub business_address: Option<Address>,
    /// `business_phone_number` (class_profile).
    pub business_phone_number: Option<String>,
    /// `class_role` split at commas and trimmed (Class sends one comma-delimited string).
    pub class_role: Vec<String>,
    /// Every other claim.
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInfo")
            .field("sub", &self.sub)
            .field("name", &presence(self.name.as_ref()))
            .field("given_name", &presence(self.given_name.as_ref()))
            .field("middle_name", &presence(self.middle_name.as_ref()))
            .field("family_name", &presence(self.family_name.as_ref()))
            .field("gender", &presence(self.gender.as_ref()))
            .field("email", &presence(self.email.as_ref()))
            .field("email_verified", &self.email_verified)
            .field("phone_number", &presence(self.phone_number.as_ref()))
            .field("address", &presence(self.address.as_ref()))
            .field("business_name", &presence(self.business_name.as_ref()))
            .field("business_code", &self.business_code)
            .field(
                "business_address",
                &presence(self.business_address.as_ref()),
            )
            .field(
                "business_phone_number",
                &presence(self.business_phone_number.as_ref()),
            )
            .field("class_role", &self.class_role)
            .field("extra", &ClaimNames(&self.extra))
            .finish()
    }
}

impl UserInfo {
    /// Checks that this response is about the user of a validated ID token (OIDC Core
    /// 5.3.2); when it is not, the response must not be used.
    pub fn check_subject(&self, id_token: &crate::id_token::IdTokenClaims) -> Result<(), Error> {
        if self.sub == id_token.sub {
            Ok(())
        } else {
            Err(PolicyViolation::SubjectMismatch {
                expected: id_token.sub.clone(),
                found: crate::text::truncate(&self.sub, 200).to_owned(),
            }
            .into())
        }
    }

    fn from_map(resp: &Response<Vec<u8>>, mut map: Map<String, Value>) -> Result<Self, Error> {
        let bad = |field: &'static str, detail: String| {
            crate::error::malformed(
                EndpointKind::UserInfo,
                resp,
                MalformedReason::InvalidField { field, detail },
            )
        };
        use crate::claims::{Null, take_bool, take_object, take_string};
        let string = |field: &'static str, map: &mut Map<String, Value>| {
            take_string(map, field, Null::Absent).map_err(|e| bad(field, e.detail()))
        };
        let sub = string("sub", &mut map)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                crate::error::malformed(
                    EndpointKind::UserInfo,
                    resp,
                    MalformedReason::MissingField("sub"),
                )
            })?;
        let address = |field: &'static str, map: &mut Map<String, Value>| {
            take_object(map, field, Null::Absent)
                .map_err(|e| bad(field, e.detail()))?
                .map(|v| {
                    serde_json::from_value::<Address>(v).map_err(|e| bad(field, e.to_string()))
                })
                .transpose()
        };
        let addr = address("address", &mut map)?;
        let business_address = address("business_address", &mut map)?;
        let email_verified = take_bool(&mut map, "email_verified", Null::Absent, true)
            .map_err(|e| bad("email_verified", e.detail()))?;
        let class_role = match map.remove("class_role") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_owned())
                .collect(),
            Some(v) => {
                return Err(bad(
                    "class_role",
                    format!("expected a string, found {}", body::json_type(&v)),
                ));
            }
        };
        Ok(Self {
            sub,
            name: string("name", &mut map)?,
            given_name: string("given_name", &mut map)?,
            middle_name: string("middle_name", &mut map)?,
            family_name: string("family_name", &mut map)?,
            gender: string("gender", &mut map)?,
            email: string("email", &mut map)?,
            email_verified,
            phone_number: string("phone_number", &mut map)?,
            address: addr,
            business_name: string("business_name", &mut map)?,
            business_code: string("business_code", &mut map)?,
            business_address,
            business_phone_number: string("business_phone_number", &mut map)?,
            class_role,
            extra: map,
        })
    }
}

/// Whose UserInfo the caller expects. There is no "don't check": when an ID token was
/// issued with the access token, its `sub` must be compared (OIDC Core 5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpectedSubject<'a> {
    /// The validated ID token issued with the access token.
    IdToken(&'a crate::id_token::IdTokenClaims),
    /// The `sub` of that ID token, as stored.
    Sub(&'a str),
    /// No ID token was issued with this access token (the grant had no `openid`), so
    /// there is nothing to compare the response's `sub` with.
    NoIdToken,
}

impl ExpectedSubject<'_> {
    fn sub(&self) -> Option<&str> {
        match self {
            Self::IdToken(claims) => Some(&claims.sub),
            Self::Sub(sub) => Some(sub),
            Self::NoIdToken => None,
        }
    }
}

/// Parses a UserInfo response; a `sub` other than the expected one is a
/// [`PolicyViolation::SubjectMismatch`] and the response must not be used.
pub fn parse_response(
    client: &Client,
    resp: &Response<Vec<u8>>,
    expected: ExpectedSubject<'_>,
) -> Result<UserInfo, Error> {
    let status = resp.status();
    if !status.is_success() {
        if let Some(w) = WwwAuthenticate::from_headers(resp.headers()) {
            if let Some(code) = w.error().map(str::to_owned) {
                return Err(Error::ServerRefused(Box::new(ServerRefusal {
                    endpoint: EndpointKind::UserInfo,
                    status: Some(status),
                    error: OAuthError {
                        code: code.into(),
                        description: w.param("error_description").map(str::to_owned),
                        uri: w.param("error_uri").map(str::to_owned),
                    },
                    retry_after: RetryAfter::from_headers(resp.headers()),
                    www_authenticate: Some(w),
                })));
            }
        }
        // Class's API host may answer with its Errors envelope.
        if let Ok(map) = body::object(EndpointKind::UserInfo, resp, client.max_body()) {
            if map.contains_key("Errors")
                || (status == StatusCode::UNAUTHORIZED && !map.contains_key("error"))
            {
                return Err(crate::api::refusal(
                    resp,
                    crate::api::errors_of(&map).unwrap_or_default(),
                ));
            }
        }
    }
    let map = crate::token::parse_oauth_body(EndpointKind::UserInfo, resp, client.max_body())?;
    let info = UserInfo::from_map(resp, map)?;
    if let Some(expected) = expected.sub() {
        if info.sub != expected {
            return Err(PolicyViolation::SubjectMismatch {
                expected: expected.to_owned(),
                found: crate::text::truncate(&info.sub, 200).to_owned(),
            }
            .into());
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::types::ClientId;

    fn client() -> Client {
        Client::new(ClientId::new("cid"), Environment::Production.preset())
    }

    use crate::body::json_response as json;

    #[test]
    fn request_is_bearer_get() {
        let r = request(&client(), &AccessToken::new("at")).unwrap();
        assert_eq!(
            r.uri(),
            "https://api.class.com.au/api/1.0/u/connect/userinfo"
        );
        assert_eq!(r.headers()["authorization"], "Bearer at");
        assert!(r.uri().query().is_none());
    }

    #[test]
    fn class_profile_claims() {
        let r = json(
            200,
            r#"{"sub":"u1","business_code":"OAUTH_TEST","class_role":"Administrator, Access Controller, adviser","email_verified":"true","address":{"locality":"Sydney"},"zz":1}"#,
        );
        let u = parse_response(&client(), &r, ExpectedSubject::Sub("u1")).unwrap();
        assert_eq!(
            u.class_role,
            ["Administrator", "Access Controller", "adviser"]
        );
        assert_eq!(u.email_verified, Some(true));
        assert_eq!(u.address.unwrap().locality.as_deref(), Some("Sydney"));
        assert_eq!(u.extra["zz"], 1);
    }

    #[test]
    fn rejections() {
        let r = json(200, r#"{"sub":"u1invalid"}"#);
        assert!(matches!(
            parse_response(&client(), &r, ExpectedSubject::Sub("u1")),
            Err(Error::PolicyViolation(
                PolicyViolation::SubjectMismatch { .. }
            ))
        ));
        assert!(matches!(
            parse_response(
                &client(),
                &json(200, r#"{"name":"x"}"#),
                ExpectedSubject::NoIdToken
            ),
            Err(Error::MalformedResponse(_))
        ));
        assert!(matches!(
            parse_response(
                &client(),
                &json(200, r#"{"sub":5}"#),
                ExpectedSubject::NoIdToken
            ),
            Err(Error::MalformedResponse(_))
        ));
        let unauth = Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"Bearer error="invalid_token", error_description="expired""#,
            )
            .body(Vec::new())
            .unwrap();
        let e = parse_response(&client(), &unauth, ExpectedSubject::NoIdToken).unwrap_err();
        assert_eq!(e.code().map(|c| c.as_str()), Some("invalid_token"));
        let envelope = json(
            401,
            r#"{"Errors":[{"Code":"API_NOT_AUTHORISED","Message":"Not authorised"}]}"#,
        );
        let e = parse_response(&client(), &envelope, ExpectedSubject::NoIdToken).unwrap_err();
        assert!(
            matches!(e, Error::ApiRefused(ref r) if r.errors[0].code == "API_NOT_AUTHORISED"),
            "{e:?}"
        );
    }
}
