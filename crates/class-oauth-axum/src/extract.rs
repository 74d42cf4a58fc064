//! The extractors: a tenant's API client and its access token, for handlers on routes
//! that name the business.

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use class_oauth_core::api::ApiRequest;
use class_oauth_core::scope::BusinessCode;
use class_oauth_manager::{ManagerError, SharedAccessToken, TenantKey};
use http::Method;
use http::request::Parts;
use url::Url;

use crate::{ClassConnect, Rejection, RejectionKind};

/// The [`ClassConnect`] in the router's state and the business named by the route's
/// business parameter (see
/// [`ClassConnectBuilder::business_param`](crate::ClassConnectBuilder::business_param)):
/// what both extractors start from.
async fn class_and_business<S>(
    parts: &mut Parts,
    state: &S,
) -> Result<(ClassConnect, BusinessCode), Rejection>
where
    ClassConnect: FromRef<S>,
    S: Send + Sync,
{
    let class = ClassConnect::from_ref(state);
    let name = &class.0.business_param;
    let failed = |r: Rejection| r.format(class.0.format);
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| failed(Rejection::new(RejectionKind::Config, e.body_text())))?;
    let Some((_, value)) = params.iter().find(|(k, _)| k == name) else {
        return Err(failed(Rejection::new(
            RejectionKind::Config,
            format!("the route has no `{{{name}}}` parameter to name the business"),
        )));
    };
    let business = BusinessCode::new(value)
        .map_err(|e| failed(Rejection::caused_by(RejectionKind::BadRequest, e)))?;
    Ok((class, business))
}

/// A Class API client for the business the route names: each call carries the
/// business's token (refreshed when due), Class's `Accept` type, one renewal on a 401
/// and a bounded wait on a 429 (the manager's token middleware).
///
/// As an extractor it reads the business from the route's `{business}` parameter; a
/// malformed code is a 400. A business with no usable grant shows when a call is made:
/// [`TenantApi::get_data`] and [`TenantApi::send`] turn it into a
/// [`RejectionKind::NotConnected`] rejection (401, with the link that connects it).
#[derive(Clone, Debug)]
pub struct TenantApi {
    class: ClassConnect,
    business: BusinessCode,
    tenant: TenantKey,
    base: Url,
}

impl TenantApi {
    pub(crate) async fn new(
        class: &ClassConnect,
        business: BusinessCode,
    ) -> Result<Self, Rejection> {
        let base = class
            .0
            .backend
            .api_base()
            .await
            .map_err(|e| {
                class.reject_for(Rejection::caused_by(RejectionKind::Upstream, e), &business)
            })?
            .ok_or_else(|| {
                class.reject_for(
                    Rejection::new(
                        RejectionKind::Config,
                        "the environment has no Class API base URL",
                    ),
                    &business,
                )
            })?;
        Ok(Self {
            tenant: class.tenant(&business),
            class: class.clone(),
            business,
            base,
        })
    }

    /// A request to `path` below the business (`fund/list` is
    /// `<api base>/b/<CODE>/fund/list`), tagged with the tenant; send it with
    /// [`TenantApi::send`] (or `.send()`, to see the middleware's errors yourself).
    pub fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<reqwest_middleware::RequestBuilder, Rejection> {
        let path = format!("b/{}/{}", self.business, path.trim_start_matches('/'));
        self.request_absolute(method, &path)
    }

    /// A request to `path` below the API base itself (`b/<CODE>/fund/list`).
    pub fn request_absolute(
        &self,
        method: Method,
        path: &str,
    ) -> Result<reqwest_middleware::RequestBuilder, Rejection> {
        // The core joins API paths the way Class's base URLs need.
        let url = ApiRequest::new(method.clone(), &self.base, path)
            .map_err(|e| self.reject(Rejection::caused_by(RejectionKind::BadRequest, e)))?
            .url()
            .clone();
        Ok(self
            .class
            .0
            .api
            .request(method, url.as_str())
            .with_extension(self.tenant.clone()))
    }

    /// `GET path` below the business (see [`TenantApi::request`]).
    pub fn get(&self, path: &str) -> Result<reqwest_middleware::RequestBuilder, Rejection> {
        self.request(Method::GET, path)
    }

    /// Sends `request`: a business with no usable grant becomes
    /// [`RejectionKind::NotConnected`], other failures [`RejectionKind::Upstream`]. Any
    /// HTTP status is returned as it is.
    pub async fn send(
        &self,
        request: reqwest_middleware::RequestBuilder,
    ) -> Result<reqwest::Response, Rejection> {
        request.send().await.map_err(|e| {
            self.reject(match e {
                reqwest_middleware::Error::Middleware(e) => match e.downcast::<ManagerError>() {
                    Ok(m) => Rejection::from_manager(m),
                    Err(e) => Rejection::new(RejectionKind::Upstream, e.to_string()),
                },
                reqwest_middleware::Error::Reqwest(e) => {
                    Rejection::caused_by(RejectionKind::Upstream, e)
                }
            })
        })
    }

    /// `GET path` below the business: the `Data` of Class's envelope parsed into `T`,
    /// read as the manager reads API answers ([`class_oauth_core::api::parse_response`]:
    /// the body capped, Class's `Errors` kept). A refusal is [`RejectionKind::Upstream`]
    /// with Class's message.
    pub async fn get_data<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, Rejection> {
        let upstream = |e: Box<dyn std::error::Error + Send + Sync>| {
            let mut r = Rejection::new(RejectionKind::Upstream, e.to_string());
            r.set_source(e);
            self.reject(r)
        };
        let mut response = self.send(self.get(path)?).await?;
        let max_body = self.class.0.backend.max_body();
        let mut head = http::Response::builder().status(response.status());
        if let Some(headers) = head.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        // Read at most one byte past the cap: the core reports the oversized body.
        while let Some(chunk) = response.chunk().await.map_err(|e| upstream(e.into()))? {
            body.extend_from_slice(&chunk);
            if body.len() > max_body {
                break;
            }
        }
        let response = head.body(body).map_err(|e| upstream(e.into()))?;
        let data = class_oauth_core::api::parse_response(&response, max_body)
            .map_err(|e| upstream(e.into()))?
            .data;
        serde_json::from_value(data).map_err(|e| upstream(e.into()))
    }

    fn reject(&self, rejection: Rejection) -> Rejection {
        self.class.reject_for(rejection, &self.business)
    }
}

/// Both extractors come out of a request the same way (the business the route names,
/// then `Self::new`) and say which business and tenant they serve.
macro_rules! tenant_extractors {
    ($($extractor:ty),*) => {$(
        impl $extractor {
            /// The business.
            #[must_use]
            pub fn business(&self) -> &BusinessCode {
                &self.business
            }

            /// Where its grant is stored.
            #[must_use]
            pub fn tenant(&self) -> &TenantKey {
                &self.tenant
            }
        }

        impl<S> FromRequestParts<S> for $extractor
        where
            ClassConnect: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = Rejection;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
                let (class, business) = class_and_business(parts, state).await?;
                Self::new(&class, business).await
            }
        }
    )*};
}

tenant_extractors!(TenantApi, TenantToken);

/// The valid access token of the business the route names (refreshed first when due),
/// for API calls made with a client of your own. A business with no usable grant is a
/// [`RejectionKind::NotConnected`] rejection (401, with the link that connects it).
///
/// Dereferences to [`SharedAccessToken`]: `token.secret()` is the Bearer value.
#[derive(Clone, Debug)]
pub struct TenantToken {
    business: BusinessCode,
    tenant: TenantKey,
    token: SharedAccessToken,
}

impl TenantToken {
    pub(crate) async fn new(
        class: &ClassConnect,
        business: BusinessCode,
    ) -> Result<Self, Rejection> {
        let tenant = class.tenant(&business);
        let token = class
            .0
            .backend
            .access_token(&tenant)
            .await
            .map_err(|e| class.reject_for(Rejection::from_manager(e), &business))?;
        Ok(Self {
            business,
            tenant,
            token,
        })
    }

    /// The token (and, through [`SharedAccessToken::grant`], its grant).
    #[must_use]
    pub fn token(&self) -> &SharedAccessToken {
        &self.token
    }
}

impl std::ops::Deref for TenantToken {
    type Target = SharedAccessToken;
    fn deref(&self) -> &SharedAccessToken {
        &self.token
    }
}
