//! [`ClassAuth`] as a `reqwest-middleware` [`Middleware`].
//!
//! ```no_run
//! # async fn run(
//! #     manager: class_oauth_manager::TokenManager<
//! #         class_oauth_reqwest::ReqwestTransport,
//! #         class_oauth_store::MemoryStore,
//! #     >,
//! #     tenant: class_oauth_manager::TenantKey,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use class_oauth_manager::middleware::ClassAuth;
//!
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(ClassAuth::new(manager))
//!     .build();
//! let funds = http
//!     .get("https://api.class.com.au/api/1.0/b/MYBIZ/fund/list")
//!     .with_extension(tenant) // whose token: one client serves every tenant
//!     .send()
//!     .await?;
//! # let _ = funds; Ok(()) }
//! ```

use class_oauth_client::AsyncHttpClient;
use class_oauth_store::TokenStore;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use super::{ClassAuth, Next as Step, Tries, authorize, next};

#[async_trait::async_trait]
impl<H: AsyncHttpClient, S: TokenStore + ?Sized> Middleware for ClassAuth<H, S> {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next_layer: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let tenant = self
            .tenant_of(extensions)
            .map_err(reqwest_middleware::Error::middleware)?
            .clone();
        let mut bearer = self
            .bearer(&tenant)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let mut tries = Tries::default();
        loop {
            // A body that cannot be replayed (a stream): this is the only attempt.
            let Some(mut attempt) = req.try_clone() else {
                authorize(req.headers_mut(), &bearer);
                return next_layer.run(req, extensions).await;
            };
            authorize(attempt.headers_mut(), &bearer);
            let response = next_layer.clone().run(attempt, extensions).await?;
            match next(
                response.status(),
                response.headers(),
                self.max_wait,
                &mut tries,
            ) {
                Step::Done => return Ok(response),
                Step::Renew => {
                    bearer = self
                        .renew(&tenant, &bearer)
                        .await
                        .map_err(reqwest_middleware::Error::middleware)?;
                }
                Step::Wait(wait) => self.sleep(wait).await,
            }
        }
    }
}
