//! The async driver of the refresh procedure ([`crate::machine::RefreshMachine`]): it
//! performs each action the machine asks for (store operations on the store, the
//! endpoints through the client, requests and waits on the HTTP client) with the system
//! clock, and records the outcome (cache, held tokens, events). The blocking face runs
//! this same driver on a thread of its own.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use class_oauth_client::AsyncHttpClient;
use class_oauth_store::{Lease, TenantKey, TokenStore};

use crate::machine::{Action, Finished, RefreshMachine, StoreOp};
use crate::{Flown, Inner};

#[allow(
    clippy::disallowed_methods,
    reason = "the driver reads the clock; the machine and the core do not"
)]
fn now() -> SystemTime {
    SystemTime::now()
}

impl<H: AsyncHttpClient, S: TokenStore + ?Sized> Inner<H, S> {
    /// Runs one refresh procedure to its end and records its outcome (cache, events).
    pub(crate) async fn refresh(self: &Arc<Self>, key: &TenantKey, force: Option<u64>) -> Flown {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Set when the manager was built (Settings::effective_lease_ttl).
        let ttl = self.settings.effective_lease_ttl(None);
        let lease = Lease::new(format!("{}-{n}", self.instance), ttl);
        // Tokens from an earlier write that failed go first: they hold the only valid
        // refresh token.
        let held = self.held.remove(key).map(|(_, h)| h);
        let machine = RefreshMachine::new(
            key.clone(),
            lease,
            force,
            self.settings.clone(),
            self.client.config().clone(),
            Some(self.client.key_cache()),
            held,
        );
        let span =
            tracing::debug_span!("class_oauth.refresh", tenant = %key, forced = force.is_some());
        let started = Instant::now();
        let finished = self.run(machine).await;
        crate::metrics::refresh(
            started.elapsed(),
            matches!(finished.error, Some(crate::ManagerError::Contended { .. })),
        );
        span.in_scope(|| {
            tracing::debug!(
                ok = finished.error.is_none(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "refresh finished"
            );
        });
        if let Some(h) = finished.held {
            self.held.insert(key.clone(), h);
        }
        let failed = finished.error.is_some() || finished.backoff;
        let grant = finished.grant.map(|g| self.cache.share(g, failed));
        match &grant {
            Some(g) => self.cache.put(key, g),
            None => self.cache.remove(key),
        }
        for e in &finished.events {
            self.emit(e);
        }
        Flown {
            grant,
            error: finished.error,
        }
    }

    /// Performs the machine's actions until it is done. A refresh slot (the bound on
    /// concurrent refreshes) is taken with the lease and kept to the end, but never
    /// while waiting for another instance's lease, so waiters cannot starve refreshes.
    pub(crate) async fn run(&self, mut machine: RefreshMachine) -> Finished {
        let mut slot = None;
        loop {
            match machine.poll(now()) {
                Action::Done(f) => return *f,
                Action::Wait(d) => {
                    if machine.is_waiting_for_lease() {
                        drop(slot.take());
                    }
                    self.client.http().sleep(d).await;
                }
                Action::Endpoints => {
                    let e = self.client.endpoints().await;
                    machine.handle_endpoints(now(), e);
                }
                Action::Send(request) => match self.client.http().send(request).await {
                    Ok(r) => machine.handle_response(now(), r),
                    Err(e) => machine.handle_transport_failure(now(), e),
                },
                Action::Store(op) => {
                    if matches!(op, StoreOp::AcquireLease(_)) && slot.is_none() {
                        slot = self.slots.acquire().await.ok();
                    }
                    let answer = op.perform(&*self.store, machine.key()).await;
                    machine.handle_store(now(), answer);
                }
            }
        }
    }
}
