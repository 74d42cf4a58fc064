//! [`ClassAuth`] as a `tower` [`Layer`] over any `Service<http::Request<B>>`.
//!
//! The request body must be `Clone` (a `String`, `Vec<u8>`, `Bytes` or `Full<Bytes>`)
//! so a request can be sent again after a 401 or a 429. Errors are [`BoxError`]s: the
//! inner service's, or a [`ManagerError`](crate::ManagerError) when no token could be had.
//!
//! ```no_run
//! # fn wrap<Svc>(
//! #     manager: class_oauth_manager::TokenManager<
//! #         class_oauth_reqwest::ReqwestTransport,
//! #         class_oauth_store::MemoryStore,
//! #     >,
//! #     tenant: class_oauth_manager::TenantKey,
//! #     inner: Svc,
//! # ) {
//! use class_oauth_manager::middleware::ClassAuth;
//! use tower_layer::Layer as _;
//!
//! let service = ClassAuth::new(manager).tenant(tenant).layer(inner);
//! # let _ = service; }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use class_oauth_client::AsyncHttpClient;
use class_oauth_store::TokenStore;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{ClassAuth, Next as Step, Tries, authorize, next};

/// A boxed error, as tower middleware uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<H, S: ?Sized, Svc> Layer<Svc> for ClassAuth<H, S> {
    type Service = ClassAuthService<Svc, H, S>;

    fn layer(&self, inner: Svc) -> Self::Service {
        ClassAuthService {
            inner,
            auth: self.clone(),
        }
    }
}

/// The service [`ClassAuth`] makes of an inner service (see the module docs).
pub struct ClassAuthService<Svc, H, S: ?Sized> {
    inner: Svc,
    auth: ClassAuth<H, S>,
}

impl<Svc: Clone, H, S: ?Sized> Clone for ClassAuthService<Svc, H, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
        }
    }
}

impl<Svc, H, S> std::fmt::Debug for ClassAuthService<Svc, H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassAuthService")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// A copy of `req` to send (http's requests are not `Clone`; their parts are).
fn copy<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    *out.extensions_mut() = req.extensions().clone();
    out
}

impl<Svc, H, S, B, RB> Service<Request<B>> for ClassAuthService<Svc, H, S>
where
    Svc: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Error: Into<BoxError>,
    H: AsyncHttpClient,
    S: TokenStore + ?Sized,
    B: Clone + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service polled ready is the one that takes the first call; a clone takes
        // its place (the usual tower pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let tenant = auth.tenant_of(req.extensions())?.clone();
            let mut bearer = auth.bearer(&tenant).await?;
            let mut tries = Tries::default();
            let mut ready = true;
            loop {
                if !ready {
                    std::future::poll_fn(|cx| inner.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                }
                ready = false;
                let mut attempt = copy(&req);
                authorize(attempt.headers_mut(), &bearer);
                let response = inner.call(attempt).await.map_err(Into::into)?;
                match next(
                    response.status(),
                    response.headers(),
                    auth.max_wait,
                    &mut tries,
                ) {
                    Step::Done => return Ok(response),
                    Step::Renew => bearer = auth.renew(&tenant, &bearer).await?,
                    Step::Wait(wait) => auth.sleep(wait).await,
                }
            }
        })
    }
}
