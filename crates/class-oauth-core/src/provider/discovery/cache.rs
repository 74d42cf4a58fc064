//! The discovery cache: a [`Flow`] over the discovery request with Duende's cache
//! policy.

use std::sync::Arc;

use http::Response;

use super::{DiscoveryInput, DiscoveryPolicy, request, resolve};
use crate::environment::{Endpoints, Environment};
use crate::error::Error;
use crate::step::{Flow, OnFailure, Step};

/// The discovery cache policy, sans-IO (Duende's `DiscoveryCache` defaults): a resolved
/// endpoint set is reused for `ttl` (24 h); failures are not cached; when a refresh
/// fails the last good set is served; a provider without a document gets the preset.
/// It is a [`Flow`]; single-flight is the driver's job: hold one lock around the drive.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiscoveryCache {
    env: Environment,
    policy: DiscoveryPolicy,
    enabled: bool,
    /// Shared: every caller of a cache hit gets a reference count, not a copy of the
    /// `Url`s (169 ns a clone, measured).
    current: Option<(Arc<Endpoints>, std::time::SystemTime)>,
    /// What the last response or transport failure left for the next poll.
    outcome: Option<Result<Arc<Endpoints>, Error>>,
    /// How long a resolved set is reused.
    pub ttl: std::time::Duration,
}

impl DiscoveryCache {
    /// A cache for `env` with its default policy.
    #[must_use]
    pub fn new(env: Environment) -> Self {
        let policy = env.discovery_policy();
        Self {
            env,
            policy,
            enabled: true,
            current: None,
            outcome: None,
            ttl: std::time::Duration::from_secs(24 * 3600),
        }
    }

    /// Uses another policy.
    #[must_use]
    pub fn with_policy(mut self, policy: DiscoveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Never fetches a document: always the preset.
    #[must_use]
    pub fn without_discovery(mut self) -> Self {
        self.enabled = false;
        self
    }

    /// Uses fixed endpoints (explicit configuration); nothing is fetched.
    #[must_use]
    pub fn with_fixed_endpoints(mut self, endpoints: Endpoints) -> Self {
        self.enabled = false;
        self.current = Some((Arc::new(endpoints), std::time::SystemTime::UNIX_EPOCH));
        self.ttl = std::time::Duration::MAX;
        self
    }

    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The cached set if it is younger than the TTL.
    #[must_use]
    pub fn fresh(&self, now: std::time::SystemTime) -> Option<&Arc<Endpoints>> {
        self.current
            .as_ref()
            .filter(|(_, at)| now < crate::time::add(*at, self.ttl))
            .map(|(e, _)| e)
    }

    /// Records the outcome of a fetch (or of none): a success is cached; a failure
    /// gives the last good set when there is one, else the error (not cached).
    fn record(
        &mut self,
        now: std::time::SystemTime,
        input: DiscoveryInput<'_>,
    ) -> Result<Arc<Endpoints>, Error> {
        match resolve(&self.env, input, &self.policy) {
            Ok(e) => {
                let e = Arc::new(e);
                self.current = Some((Arc::clone(&e), now));
                Ok(e)
            }
            Err(err) => self.last_good().ok_or(err),
        }
    }

    fn last_good(&self) -> Option<Arc<Endpoints>> {
        self.current.as_ref().map(|(e, _)| Arc::clone(e))
    }
}

/// The cache is a flow: polled, it gives the fresh set at once, or asks for the
/// discovery request and gives what the response (or a transport failure) leaves it
/// with. Drive it in place (`&mut cache`) under the lock that makes it single-flight;
/// one drive is one lookup.
impl Flow for DiscoveryCache {
    type Output = Arc<Endpoints>;

    fn poll(&mut self, now: std::time::SystemTime) -> Step<Arc<Endpoints>> {
        if let Some(outcome) = self.outcome.take() {
            return Step::Done(outcome);
        }
        if let Some(e) = self.fresh(now) {
            return Step::Done(Ok(Arc::clone(e)));
        }
        if !self.enabled {
            return Step::Done(self.record(now, DiscoveryInput::NotFetched));
        }
        Step::Send(request(&self.env.issuer()))
    }

    fn handle_response(&mut self, now: std::time::SystemTime, response: Response<Vec<u8>>) {
        self.outcome = Some(self.record(now, DiscoveryInput::Response(&response)));
    }

    /// The last good set carries on; with none the driver returns the transport error.
    fn handle_transport_failure(&mut self, _now: std::time::SystemTime) -> OnFailure {
        match self.last_good() {
            Some(e) => {
                self.outcome = Some(Ok(e));
                OnFailure::Continue
            }
            None => OnFailure::Abort,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::EndpointSource;
    use crate::types::IssuerUrl;

    #[test]
    fn cache_serves_last_good_and_does_not_cache_failures() {
        use crate::flow::{DriveError, TransportError, TransportErrorKind, drive_blocking};
        let env = Environment::Custom(IssuerUrl::new("https://idp.example").unwrap());
        let mut c = DiscoveryCache::new(env)
            .with_policy(DiscoveryPolicy::default().without_key_set_requirement());
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let mut sent = 0;
        let mut lookup = |c: &mut DiscoveryCache, at, answer: Result<Response<Vec<u8>>, ()>| {
            drive_blocking(
                c,
                || at,
                |req| {
                    sent += 1;
                    assert_eq!(
                        req.uri(),
                        "https://idp.example/.well-known/openid-configuration"
                    );
                    answer
                        .clone()
                        .map_err(|()| TransportError::new(TransportErrorKind::Connect, "down"))
                },
                |_| {},
            )
        };
        let bad = Response::builder().status(503).body(Vec::new()).unwrap();
        assert!(matches!(
            lookup(&mut c, t0, Ok(bad.clone())),
            Err(DriveError::Protocol(_))
        ));
        assert!(c.fresh(t0).is_none(), "failures are not cached");
        assert!(matches!(
            lookup(&mut c, t0, Err(())),
            Err(DriveError::Transport(_))
        ));
        let good = crate::body::json_response(
            200,
            r#"{"issuer": "https://idp.example", "token_endpoint": "https://idp.example/t"}"#,
        );
        let first = lookup(&mut c, t0, Ok(good)).unwrap();
        assert_eq!(first.token_endpoint.path(), "/t");
        assert!(c.fresh(t0).is_some());
        // A fresh set is served without a request.
        let cached = lookup(&mut c, t0, Err(())).unwrap();
        assert!(Arc::ptr_eq(&first, &cached));
        let later = t0 + std::time::Duration::from_secs(24 * 3600);
        assert!(c.fresh(later).is_none());
        let served = lookup(&mut c, later, Ok(bad)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &served),
            "last good served on a refusal"
        );
        let served = lookup(&mut c, later, Err(())).unwrap();
        assert!(Arc::ptr_eq(&first, &served), "and on a transport failure");
        assert_eq!(sent, 5);
    }

    #[test]
    fn without_discovery_the_preset_needs_no_request() {
        let env = Environment::Pie;
        let mut c = DiscoveryCache::new(env).without_discovery();
        let now = std::time::SystemTime::UNIX_EPOCH;
        let Step::Done(Ok(e)) = c.poll(now) else {
            panic!("no request without discovery")
        };
        assert_eq!(e.source, EndpointSource::Preset);
    }
}
