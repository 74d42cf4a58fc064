//! Token revocation (RFC 7009), for providers that advertise a `revocation_endpoint`.
//!
//! Class documents none: revocation is a user action in the Class web app (Business >
//! Partner Application Access). Without an endpoint, [`RevocationRequest::to_http`]
//! fails with [`InputError::MissingEndpoint`] and the caller just deletes its tokens.

use http::{Request, Response};

use crate::client::Client;
use crate::error::{EndpointKind, Error, InputError};
use crate::secret::{AccessToken, RefreshToken};

/// Which token to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationRequest {
    /// Revoke a refresh token (and, server side, the grant's access tokens).
    RefreshToken(RefreshToken),
    /// Revoke an access token.
    AccessToken(AccessToken),
}

impl RevocationRequest {
    /// The HTTP request: `POST` form `token` + `token_type_hint`, client authentication
    /// as at the token endpoint.
    pub fn to_http(&self, client: &Client) -> Result<Request<Vec<u8>>, Error> {
        let url = client
            .endpoints()
            .revocation_endpoint
            .as_ref()
            .ok_or(InputError::MissingEndpoint(EndpointKind::Revocation))?;
        let (token, hint) = match self {
            Self::RefreshToken(t) => (t.secret(), "refresh_token"),
            Self::AccessToken(t) => (t.secret(), "access_token"),
        };
        let mut form = crate::body::FormBody::default();
        form.pair("token", token);
        form.pair("token_type_hint", hint);
        let uri = crate::client::parse_uri(url.as_str(), "revocation request")?;
        Ok(client.form_post(uri, form))
    }

    /// Parses the response: any 200 is success (RFC 7009 2.2: also for unknown tokens;
    /// the body is ignored). Errors are refusals (`unsupported_token_type`, a 503 that
    /// means "the token may still be valid, retry") or malformed responses.
    pub fn parse_response(&self, client: &Client, resp: &Response<Vec<u8>>) -> Result<(), Error> {
        if resp.status() == http::StatusCode::OK {
            return Ok(());
        }
        crate::token::parse_oauth_body(EndpointKind::Revocation, resp, client.max_body())
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::secret::ClientSecret;
    use crate::types::ClientId;

    #[test]
    fn needs_an_endpoint_then_posts_form() {
        let c = Client::new(ClientId::new("cid"), Environment::Production.preset())
            .with_secret(ClientSecret::new("s"));
        let req = RevocationRequest::RefreshToken(RefreshToken::new("rt"));
        assert_eq!(
            req.to_http(&c).unwrap_err(),
            Error::InvalidInput(InputError::MissingEndpoint(EndpointKind::Revocation))
        );
        let mut e = Environment::Production.preset();
        e.revocation_endpoint = Some(
            "https://app.class.com.au/connect/revocation"
                .parse()
                .unwrap(),
        );
        let c = c.with_endpoints(e);
        let http = req.to_http(&c).unwrap();
        assert_eq!(http.body(), b"token=rt&token_type_hint=refresh_token");
        assert!(http.headers().contains_key("authorization"));
        let ok = Response::builder()
            .status(200)
            .body(b"garbage".to_vec())
            .unwrap();
        assert!(req.parse_response(&c, &ok).is_ok());
        let unavailable = Response::builder()
            .status(503)
            .header("retry-after", "3")
            .body(Vec::new())
            .unwrap();
        let err = req.parse_response(&c, &unavailable).unwrap_err();
        assert!(err.is_transient());
        assert!(err.retry_after().is_some());
    }
}
