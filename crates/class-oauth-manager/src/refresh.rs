//! The refresh procedure, written once for both faces: load, decide, take the lease,
//! re-decide on the row read with it, send, persist first, validate, commit and release.
//! Every exit releases the lease or hands it over to its expiry on purpose.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use class_oauth_client::AsyncHttpClient;
use class_oauth_core::Error;
use class_oauth_core::RefreshToken;
use class_oauth_core::flow::{Flow, Step, TransportErrorKind};
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::refresh::{ReauthorizationReason, RefreshDecision};
use class_oauth_core::token::TokenSet;
use class_oauth_store::{
    AsyncTokenStore, GrantStatus, GrantUpdate, Lease, LeaseOutcome, StoreError, StoredGrant,
    TenantKey,
};

use crate::{Flown, Held, Inner, ManagerError, Outcome, TokenEvent};

#[allow(
    clippy::disallowed_methods,
    reason = "the manager reads the clock; the core does not"
)]
fn now() -> SystemTime {
    SystemTime::now()
}

enum Decision {
    Use,
    Refresh,
    /// The grant is over: record it and say why.
    Dead(String),
    /// A forced refresh that cannot happen (no refresh token) while the access token is
    /// still valid by its clock: refused, but the grant is not marked.
    Cannot(String),
}

/// How a write of rotated tokens ended.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived; boxing buys nothing"
)]
enum Persisted {
    /// Written at this version.
    Written(u64),
    /// A login replaced the grant meanwhile; this is the newer row.
    Superseded(StoredGrant),
    /// Failed after every retry; the tokens are held in memory.
    Held(StoreError),
}

/// One attempt's working state: the tenant, its lease, the events to report.
struct Attempt<'a> {
    key: &'a TenantKey,
    lease: Lease,
    events: Vec<TokenEvent>,
}

impl<H: AsyncHttpClient, S: AsyncTokenStore> Inner<H, S> {
    /// Runs one refresh procedure to its end and records its outcome (cache, events).
    pub(crate) async fn refresh(self: &Arc<Self>, key: &TenantKey, force: Option<u64>) -> Flown {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut attempt = Attempt {
            key,
            lease: Lease::new(format!("{}-{n}", self.instance), self.settings.lease_ttl),
            events: Vec::new(),
        };
        let span =
            tracing::debug_span!("class_oauth.refresh", tenant = %key, forced = force.is_some());
        let started = Instant::now();
        let outcome = self.attempt(&mut attempt, force).await;
        span.in_scope(|| {
            tracing::debug!(
                ok = outcome.error.is_none(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "refresh finished"
            );
        });
        let failed = outcome.error.is_some() || outcome.backoff;
        let grant = outcome.grant.map(|g| self.cache.share(g, failed));
        match &grant {
            Some(g) => self.cache.put(key, g),
            None => self.cache.remove(key),
        }
        for e in &attempt.events {
            self.emit(e);
        }
        Flown {
            grant,
            error: outcome.error,
        }
    }

    /// What to do with `g`. `leased`: we hold the refresh lease, so an in-doubt mark is
    /// not another instance's refresh in flight (that one holds the lease while its mark
    /// stands) but a refresh that ended without an answer.
    fn decide(
        &self,
        g: &StoredGrant,
        force: Option<u64>,
        now: SystemTime,
        leased: bool,
    ) -> Decision {
        let forced = force == Some(g.version);
        let no_refresh_token = || {
            Decision::Dead(
                "the access token is no longer usable and there is no refresh token (offline_access was not granted)".into(),
            )
        };
        match &g.status {
            GrantStatus::NeedsReauthorization { reason } => Decision::Dead(reason.clone()),
            GrantStatus::Active => match self.cache.policy().decide(&g.tokens, now) {
                RefreshDecision::Use { .. } if !forced => Decision::Use,
                RefreshDecision::Reauthorize(ReauthorizationReason::NoRefreshToken) => {
                    no_refresh_token()
                }
                RefreshDecision::Reauthorize(_) => {
                    Decision::Dead("the refresh token is past its lifetime".into())
                }
                RefreshDecision::Use { .. } if g.tokens.refresh_token.is_none() => Decision::Cannot(
                    "there is no refresh token to refresh with (offline_access was not granted)"
                        .into(),
                ),
                _ if g.tokens.refresh_token.is_none() => no_refresh_token(),
                _ => Decision::Refresh,
            },
            // Never refreshed early: the refresh token may be spent. Used while valid.
            GrantStatus::InDoubt { .. }
                if !forced && now < self.cache.policy().expires_at(&g.tokens) =>
            {
                Decision::Use
            }
            // Presenting a possibly spent one-time refresh token again can make the server
            // revoke the grant (reuse detection): only with a grace window, by choice.
            GrantStatus::InDoubt { reason } if leased && !self.settings.retry_in_doubt => {
                Decision::Dead(format!(
                    "{reason}; its refresh token may have been spent, and presenting it again could make Class revoke the grant (Settings::retry_in_doubt allows one retry where the server has a grace window)"
                ))
            }
            _ if g.tokens.refresh_token.is_none() => no_refresh_token(),
            // Unverified (its access token is withheld), or in doubt and expired.
            _ => Decision::Refresh,
        }
    }

    /// Is `g`'s access token usable at `now` (for serving the old token after a failure)?
    fn still_usable(&self, g: &StoredGrant, now: SystemTime) -> bool {
        matches!(g.status, GrantStatus::Active | GrantStatus::InDoubt { .. })
            && now < self.cache.policy().expires_at(&g.tokens)
    }

    async fn release(&self, a: &Attempt<'_>) {
        if let Err(e) = self.store.release_lease(a.key, &a.lease.owner).await {
            tracing::warn!(tenant = %a.key, error = %e, "could not release the refresh lease; it will expire");
        }
    }

    /// The refresh failed and nothing was spent that we know of: serve the old token
    /// while it is valid.
    fn failed(&self, a: &mut Attempt<'_>, current: &StoredGrant, error: ManagerError) -> Outcome {
        a.events.push(TokenEvent::RefreshFailed {
            key: a.key.clone(),
            error: error.to_string(),
            transient: error.is_transient(),
        });
        Outcome {
            grant: self.still_usable(current, now()).then(|| current.clone()),
            error: Some(error),
            backoff: false,
        }
    }

    /// A refresh that cannot happen, on a grant that still works until it expires.
    fn cannot(&self, a: &Attempt<'_>, reason: String) -> Outcome {
        Outcome::err(ManagerError::NeedsReauthorization {
            key: a.key.clone(),
            reason,
        })
    }

    /// Ends the grant (unless it already is) and says why.
    async fn dead(&self, a: &mut Attempt<'_>, g: &StoredGrant, reason: String) -> Outcome {
        if !matches!(g.status, GrantStatus::NeedsReauthorization { .. }) {
            let status = GrantStatus::NeedsReauthorization {
                reason: reason.clone(),
            };
            // Conditional: a login saved meanwhile is not marked.
            match self.store.set_status(a.key, &status, g.version).await {
                Ok(_) => a.events.push(TokenEvent::ReauthorizationRequired {
                    key: a.key.clone(),
                    reason: reason.clone(),
                }),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(tenant = %a.key, error = %e, "could not record that the grant needs re-authorization")
                }
            }
        }
        Outcome::err(ManagerError::NeedsReauthorization {
            key: a.key.clone(),
            reason,
        })
    }

    /// Puts back the status a refresh found, after a refresh that provably sent nothing
    /// or was refused outright. Returns the version now stored.
    async fn restore(&self, a: &Attempt<'_>, current: &StoredGrant, before: &GrantStatus) -> u64 {
        match self.store.set_status(a.key, before, current.version).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(tenant = %a.key, error = %e, "could not clear the in-doubt mark");
                current.version
            }
        }
    }

    /// The refresh was sent and no usable answer came: record it, release the lease, and
    /// serve the old token while it is valid.
    async fn in_doubt(
        &self,
        a: &mut Attempt<'_>,
        current: &StoredGrant,
        reason: String,
        error: ManagerError,
    ) -> Outcome {
        let status = GrantStatus::InDoubt {
            reason: reason.clone(),
        };
        let update = GrantUpdate::status(current.version, &status).releasing(&a.lease.owner);
        let mut served = current.clone();
        match self.store.update(a.key, &update).await {
            Ok(version) => {
                served.status = status;
                served.version = version;
            }
            Err(e) => {
                tracing::warn!(tenant = %a.key, error = %e, "could not record the refresh as in doubt");
                self.release(a).await;
            }
        }
        a.events.push(TokenEvent::InDoubt {
            key: a.key.clone(),
            reason,
        });
        let usable = self.still_usable(&served, now());
        Outcome {
            grant: usable.then_some(served),
            error: Some(error),
            backoff: false,
        }
    }

    async fn attempt(&self, a: &mut Attempt<'_>, force: Option<u64>) -> Outcome {
        // Tokens from an earlier write that failed go first: they hold the only valid
        // refresh token.
        if let Some((_, held)) = self.held.remove(a.key) {
            if let Err(e) = self.persist_held(a, held).await {
                return Outcome::err(ManagerError::Store(e));
            }
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        // A refresh slot is held from the lease to the end; never while waiting for
        // another instance's lease, so waiters cannot starve the refreshes.
        let mut slot;
        let current = loop {
            let loaded = match self.store.load(a.key).await {
                Ok(Some(g)) => g,
                Ok(None) => return Outcome::err(ManagerError::NoGrant { key: a.key.clone() }),
                Err(e) => return Outcome::err(ManagerError::Store(e)),
            };
            match self.decide(&loaded, force, now(), false) {
                Decision::Use => return Outcome::ok(loaded),
                Decision::Dead(reason) => return self.dead(a, &loaded, reason).await,
                Decision::Cannot(reason) => return self.cannot(a, reason),
                Decision::Refresh => {}
            }
            slot = self.slots.acquire().await.ok();
            match self.store.acquire_lease(a.key, &a.lease).await {
                Err(e) => return self.failed(a, &loaded, ManagerError::Store(e)),
                Ok(LeaseOutcome::Missing) => {
                    return Outcome::err(ManagerError::NoGrant { key: a.key.clone() });
                }
                Ok(LeaseOutcome::Held { remaining }) => {
                    // Another instance is refreshing: use the current token while it
                    // lasts, else wait for that refresh (re-reading), within a bound.
                    if force.is_none() && self.still_usable(&loaded, now()) {
                        return Outcome {
                            backoff: true,
                            ..Outcome::ok(loaded)
                        };
                    }
                    let waited = started.elapsed();
                    if waited >= self.settings.lease_wait {
                        return Outcome::err(ManagerError::Contended {
                            key: a.key.clone(),
                            waited,
                        });
                    }
                    let nap = pause.min(remaining).max(Duration::from_millis(1));
                    drop(slot.take());
                    self.client.http().sleep(nap).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                Ok(LeaseOutcome::Acquired {
                    grant,
                    took_over_expired,
                }) => {
                    match self.decide(&grant, force, now(), true) {
                        Decision::Use => {
                            self.release(a).await;
                            if grant.version != loaded.version {
                                a.events
                                    .push(TokenEvent::RefreshedElsewhere { key: a.key.clone() });
                            }
                            return Outcome::ok(grant);
                        }
                        Decision::Dead(reason) => {
                            self.release(a).await;
                            return self.dead(a, &grant, reason).await;
                        }
                        Decision::Cannot(reason) => {
                            self.release(a).await;
                            return self.cannot(a, reason);
                        }
                        Decision::Refresh => {}
                    }
                    if took_over_expired {
                        // The previous holder stopped before it sent anything (a sent
                        // refresh leaves the row in doubt, which `decide` handled).
                        tracing::info!(tenant = %a.key, "took over an expired refresh lease");
                    }
                    break grant;
                }
                Ok(_) => {
                    return self.failed(
                        a,
                        &loaded,
                        ManagerError::Store(StoreError::Backend("unknown lease outcome".into())),
                    );
                }
            }
        };
        let outcome = self.send_refresh(a, current).await;
        drop(slot);
        outcome
    }

    /// Holding the lease on `current`: one refresh request, then persist first.
    async fn send_refresh(&self, a: &mut Attempt<'_>, current: StoredGrant) -> Outcome {
        let endpoints = match self.client.endpoints().await {
            Ok(e) => e,
            Err(e) => {
                self.release(a).await;
                return self.failed(a, &current, e.into());
            }
        };
        let config = self.client.config();
        let mut flow =
            match config.refresh_flow(&endpoints, &current.tokens, current.id_claims.as_ref()) {
                Ok(f) => f.retain_received(),
                Err(e) => {
                    self.release(a).await;
                    return self.failed(a, &current, e.into());
                }
            };
        let request = match flow.poll(now()) {
            Step::Send(r) => r,
            Step::Done(Err(e)) => {
                self.release(a).await;
                return self.failed(a, &current, e.into());
            }
            _ => {
                self.release(a).await;
                return self.failed(
                    a,
                    &current,
                    ManagerError::Config("the refresh flow did not start with a request".into()),
                );
            }
        };
        // Recorded before the request leaves: if this process stops before the answer is
        // written, the next reader knows the refresh token may be spent.
        let sent_status = GrantStatus::InDoubt {
            reason: "a refresh was sent and its answer was never recorded (the process stopped or the answer was lost)".into(),
        };
        let mut current = current;
        let before = current.status.clone();
        match self
            .store
            .set_status(a.key, &sent_status, current.version)
            .await
        {
            Ok(v) => current.version = v,
            Err(e) => {
                self.release(a).await;
                return self.failed(a, &current, ManagerError::Store(e));
            }
        }
        let response = self.client.http().send(request).await;
        let received_at = Instant::now();
        match response {
            Ok(r) => flow.handle_response(now(), r),
            Err(t) if t.kind == TransportErrorKind::Connect => {
                // No connection, so nothing was sent: the refresh token is unspent.
                current.version = self.restore(a, &current, &before).await;
                current.status = before;
                self.release(a).await;
                return self.failed(a, &current, ManagerError::Transport(t));
            }
            Err(t) => {
                let reason = format!("the refresh request got no answer ({t})");
                return self
                    .in_doubt(a, &current, reason, ManagerError::Transport(t))
                    .await;
            }
        }
        let Some(received) = flow.received().cloned() else {
            let Step::Done(Err(error)) = flow.poll(now()) else {
                self.release(a).await;
                return self.failed(
                    a,
                    &current,
                    ManagerError::Config("the refresh flow ended without a result".into()),
                );
            };
            return self.not_rotated(a, &current, before, error).await;
        };
        // From here Class has rotated the refresh token: it is written before anything
        // else can fail, and never dropped.
        let sent = current.tokens.refresh_token.clone();
        let mut version = current.version;
        let mut written = false;
        let error = loop {
            match flow.poll(now()) {
                Step::Done(Ok(v)) => {
                    let claims = v.id_claims.or_else(|| current.id_claims.clone());
                    let status = GrantStatus::Active;
                    return match self
                        .persist(
                            a,
                            version,
                            &v.tokens,
                            claims.as_ref(),
                            &status,
                            true,
                            sent.as_ref(),
                        )
                        .await
                    {
                        Persisted::Written(version) => {
                            a.events.push(TokenEvent::Refreshed {
                                key: a.key.clone(),
                                version,
                                expires_at: v
                                    .tokens
                                    .expires_at
                                    .map(class_oauth_core::time::to_unix),
                                durable_after: received_at.elapsed(),
                            });
                            Outcome::ok(StoredGrant::new(v.tokens, claims, status, version))
                        }
                        Persisted::Superseded(g) => Outcome::ok(g),
                        Persisted::Held(e) => Outcome::err(ManagerError::Store(e)),
                    };
                }
                Step::Send(keys) => {
                    if !written {
                        let status = GrantStatus::Unverified {
                            reason: "the refreshed ID token is being checked (key-set fetch)"
                                .into(),
                        };
                        match self
                            .persist(
                                a,
                                version,
                                &received,
                                current.id_claims.as_ref(),
                                &status,
                                false,
                                sent.as_ref(),
                            )
                            .await
                        {
                            Persisted::Written(v) => version = v,
                            Persisted::Superseded(g) => return Outcome::ok(g),
                            Persisted::Held(e) => return Outcome::err(ManagerError::Store(e)),
                        }
                        written = true;
                    }
                    match self.client.http().send(keys).await {
                        Ok(r) => flow.handle_response(now(), r),
                        Err(_) => {
                            let _ = flow.handle_transport_failure(now());
                        }
                    }
                }
                Step::Wait(d) => self.client.http().sleep(d).await,
                Step::Done(Err(e)) => break ManagerError::from(e),
                _ => break ManagerError::Config("the refresh flow stopped unexpectedly".into()),
            }
        };
        // The new access token failed a check (or was never checked): withheld, while the
        // rotated refresh token is kept whatever happens to the write (held in memory
        // when it fails); the caller learns the real cause.
        let reason = format!("the refreshed tokens were withheld: {error}");
        a.events.push(TokenEvent::Withheld {
            key: a.key.clone(),
            reason: reason.clone(),
        });
        let status = GrantStatus::Unverified { reason };
        let _ = self
            .persist(
                a,
                version,
                &received,
                current.id_claims.as_ref(),
                &status,
                true,
                sent.as_ref(),
            )
            .await;
        Outcome::err(error)
    }

    /// The token response carried no tokens: a refusal, or a body that could not be read.
    async fn not_rotated(
        &self,
        a: &mut Attempt<'_>,
        current: &StoredGrant,
        before: GrantStatus,
        error: Error,
    ) -> Outcome {
        if error.requires_reauthorization() {
            // Another instance may have won with this refresh token: re-read once.
            self.release(a).await;
            let sent = current.tokens.refresh_token.as_ref();
            let row = match self.store.load(a.key).await {
                Ok(Some(g)) => g,
                Ok(None) => return Outcome::err(ManagerError::NoGrant { key: a.key.clone() }),
                Err(e) => return Outcome::err(ManagerError::Store(e)),
            };
            if row.tokens.refresh_token.as_ref() != sent
                && matches!(
                    row.status,
                    GrantStatus::Active | GrantStatus::Unverified { .. }
                )
            {
                a.events
                    .push(TokenEvent::RefreshedElsewhere { key: a.key.clone() });
                return if row.status == GrantStatus::Active {
                    Outcome::ok(row)
                } else {
                    Outcome::err(ManagerError::Validation(error))
                };
            }
            let reason = match &before {
                GrantStatus::InDoubt { reason } => format!(
                    "the refresh token was refused ({error}) after an earlier refresh's outcome was unknown ({reason}): that refresh most likely rotated it and its answer was lost"
                ),
                _ => format!("the refresh token was refused ({error})"),
            };
            return self.dead(a, &row, reason).await;
        }
        match error {
            // A well-formed refusal: nothing was rotated.
            Error::ServerRefused(_) => {
                let mut current = current.clone();
                current.version = self.restore(a, &current, &before).await;
                current.status = before;
                self.release(a).await;
                self.failed(a, &current, ManagerError::from(error))
            }
            // An HTML page, a truncated or oversized body: the server may have rotated.
            _ => {
                let reason = format!("the refresh response could not be read ({error})");
                self.in_doubt(a, current, reason, ManagerError::from(error))
                    .await
            }
        }
    }

    /// Writes rotated tokens: compare-and-swap on `expected`, retried with backoff; on a
    /// lost race, re-read and decide; after the last retry, hold them in memory.
    #[allow(clippy::too_many_arguments, reason = "one write, spelled out")]
    async fn persist(
        &self,
        a: &mut Attempt<'_>,
        mut expected: u64,
        tokens: &TokenSet,
        id_claims: Option<&IdTokenClaims>,
        status: &GrantStatus,
        release: bool,
        replaced: Option<&RefreshToken>,
    ) -> Persisted {
        let mut pause = self.settings.persist_backoff;
        let mut attempt = 0u32;
        loop {
            let mut update = GrantUpdate::tokens(expected, tokens, id_claims, status);
            if release {
                update = update.releasing(&a.lease.owner);
            }
            let error = match self.store.update(a.key, &update).await {
                Ok(v) => return Persisted::Written(v),
                Err(StoreError::Conflict { .. }) => match self.store.load(a.key).await {
                    Ok(Some(row)) => {
                        let stored = row.tokens.refresh_token.as_ref();
                        if stored == replaced || stored == tokens.refresh_token.as_ref() {
                            // Only the status or version moved (or our own write landed):
                            // write again at the version now stored.
                            expected = row.version;
                            continue;
                        }
                        a.events.push(TokenEvent::Superseded { key: a.key.clone() });
                        return Persisted::Superseded(row);
                    }
                    Ok(None) => {
                        a.events.push(TokenEvent::Superseded { key: a.key.clone() });
                        return Persisted::Held(StoreError::Conflict { expected });
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            attempt += 1;
            if attempt > self.settings.persist_retries || !error.is_transient() {
                a.events.push(TokenEvent::PersistFailed {
                    key: a.key.clone(),
                    error: error.to_string(),
                });
                self.held.insert(
                    a.key.clone(),
                    Held {
                        tokens: tokens.clone(),
                        id_claims: id_claims.cloned(),
                        status: status.clone(),
                        replaced: replaced.cloned(),
                        lease_owner: a.lease.owner.clone(),
                    },
                );
                return Persisted::Held(error);
            }
            a.events.push(TokenEvent::PersistRetry {
                key: a.key.clone(),
                attempt,
                error: error.to_string(),
            });
            self.client.http().sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Writes tokens held in memory after an earlier failed write.
    async fn persist_held(&self, a: &mut Attempt<'_>, held: Held) -> Result<(), StoreError> {
        let row = match self.store.load(a.key).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.held.insert(a.key.clone(), held);
                return Err(e);
            }
        };
        let stored = row.tokens.refresh_token.as_ref();
        if stored != held.replaced.as_ref() && stored != held.tokens.refresh_token.as_ref() {
            // A login replaced the grant: the held tokens are older.
            a.events.push(TokenEvent::Superseded { key: a.key.clone() });
            return Ok(());
        }
        let update = GrantUpdate::tokens(
            row.version,
            &held.tokens,
            held.id_claims.as_ref(),
            &held.status,
        )
        .releasing(&held.lease_owner);
        match self.store.update(a.key, &update).await {
            Ok(_) => Ok(()),
            Err(e) => {
                a.events.push(TokenEvent::PersistFailed {
                    key: a.key.clone(),
                    error: e.to_string(),
                });
                self.held.insert(a.key.clone(), held);
                Err(e)
            }
        }
    }
}
