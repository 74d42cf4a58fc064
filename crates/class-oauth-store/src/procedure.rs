//! The refresh procedure as a sans-IO state machine, driven by the token managers of both
//! transports (one copy of the logic, two drivers).
//!
//! ```text
//! Load ──► usable? ──yes──► Done(grant)
//!   │ due for refresh
//!   ▼
//! Lock (cross-instance) ──► re-read: another instance refreshed? ──yes──► Unlock, Done(grant)
//!   │
//!   ▼
//! Send refresh (token request, ID-token check) ──ok──► Commit (CAS) ──► Unlock, Done(new grant)
//!   │                                   commit failed ──► Unlock, Done(PersistFailed) + event
//!   ├─ invalid_grant ──► Unlock, Load again: the stored refresh token changed? ──yes──► Done(grant)
//!   │                                              └─no──► Mark needs-reauthorization, Done(error)
//!   └─ transient / transport ──► Unlock, no retry (a lost response may have spent the
//!                                refresh token); the old access token if still valid
//! ```
//!
//! The new refresh token is written before the new access token is handed out: the
//! procedure yields `Done(Ok)` only after the store confirmed the commit.

use std::sync::Arc;
use std::time::SystemTime;

use class_oauth_core::environment::Endpoints;
use class_oauth_core::flow::{DriveError, Flow, OnFailure, Step, TokenFlow, TransportError};
use class_oauth_core::id_token::IdTokenClaims;
use class_oauth_core::refresh::{RefreshDecision, RefreshPolicy};
use class_oauth_core::session::ClientConfig;
use class_oauth_core::token::TokenSet;

use crate::{GrantStatus, StoreError, StoredGrant, TenantKey};

/// Why a manager could not produce a token. `Clone`: one outcome is shared by every
/// caller waiting on the same refresh.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Nothing is stored for the tenant: run the authorization flow.
    #[error("no grant is stored for {key}; the user must authorize first")]
    NoGrant {
        /// The tenant.
        key: TenantKey,
    },
    /// The grant is dead: the user must authorize again.
    #[error("the grant for {key} needs re-authorization: {reason}")]
    NeedsReauthorization {
        /// The tenant.
        key: TenantKey,
        /// Why.
        reason: String,
    },
    /// The refresh failed (transient or protocol); the stored grant is unchanged.
    #[error("refreshing the grant failed: {0}")]
    Refresh(DriveError),
    /// The store failed before anything was spent.
    #[error(transparent)]
    Store(StoreError),
    /// The refresh succeeded but the new tokens could not be stored; they are not handed
    /// out, because their refresh token would be lost. The tenant may need to authorize
    /// again if the server rotated the refresh token.
    #[error("the refreshed tokens could not be stored ({0}); they were not used")]
    PersistFailed(StoreError),
}

impl ManagerError {
    /// True when the user must authorize (again).
    #[must_use]
    pub fn requires_reauthorization(&self) -> bool {
        matches!(
            self,
            Self::NoGrant { .. } | Self::NeedsReauthorization { .. }
        )
    }

    /// True when trying later may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refresh(e) => e.is_transient(),
            Self::Store(_) => true,
            _ => false,
        }
    }
}

/// What the manager reports to its hook.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEvent {
    /// A grant was stored after a login.
    Stored {
        /// The tenant.
        key: TenantKey,
        /// The new version.
        version: u64,
    },
    /// A refresh succeeded and was stored.
    Refreshed {
        /// The tenant.
        key: TenantKey,
        /// The new version.
        version: u64,
        /// The new access token's expiry (Unix seconds).
        expires_at: Option<u64>,
    },
    /// Another instance had refreshed already; its tokens were used.
    RefreshedElsewhere {
        /// The tenant.
        key: TenantKey,
    },
    /// A refresh failed; the grant is unchanged.
    RefreshFailed {
        /// The tenant.
        key: TenantKey,
        /// The error, without secrets.
        error: String,
        /// Whether trying later may help.
        transient: bool,
    },
    /// The grant needs the user again.
    ReauthorizationRequired {
        /// The tenant.
        key: TenantKey,
        /// Why.
        reason: String,
    },
    /// Refreshed tokens could not be stored (their refresh token is lost).
    PersistFailed {
        /// The tenant.
        key: TenantKey,
        /// The store error.
        error: String,
    },
}

impl TokenEvent {
    /// Logs the event with `tracing` (tenant keys and reasons only, never a token).
    pub fn log(&self) {
        match self {
            Self::Refreshed {
                key,
                version,
                expires_at,
            } => tracing::info!(tenant = %key, version, expires_at, "token refreshed"),
            Self::RefreshedElsewhere { key } => {
                tracing::debug!(tenant = %key, "another instance refreshed first")
            }
            Self::RefreshFailed {
                key,
                error,
                transient,
            } => tracing::warn!(tenant = %key, transient, error = %error, "refresh failed"),
            Self::ReauthorizationRequired { key, reason } => {
                tracing::warn!(tenant = %key, reason = %reason, "re-authorization required")
            }
            Self::PersistFailed { key, error } => {
                tracing::error!(tenant = %key, error = %error, "refreshed tokens could not be stored")
            }
            Self::Stored { key, version } => tracing::info!(tenant = %key, version, "grant stored"),
        }
    }
}

/// What the driver must do next.
#[derive(Debug)]
#[must_use]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "one action at a time; boxing buys nothing"
)]
pub enum Action {
    /// Read the grant (`TokenStore::load`), then feed [`Input::Loaded`].
    Load,
    /// Take the refresh lock (`TokenStore::lock`), keep the guard, feed [`Input::Locked`]
    /// with `guard.current()`.
    Lock,
    /// Send this request, feed [`Input::Response`] or [`Input::TransportFailed`].
    Send(http::Request<Vec<u8>>),
    /// Wait, then poll.
    Wait(std::time::Duration),
    /// Commit through the guard (CAS, releases the lock); feed [`Input::Committed`] or
    /// [`Input::StoreFailed`].
    Commit {
        /// The new tokens.
        tokens: TokenSet,
        /// The ID-token claims to keep.
        id_claims: Option<IdTokenClaims>,
    },
    /// Drop the guard (release the lock without writing), then poll.
    Unlock,
    /// Write this status (`TokenStore::set_status`), then poll (a failure is ignored: the
    /// next refresh finds the same dead grant).
    SetStatus(GrantStatus),
    /// Finished.
    Done(Result<Arc<StoredGrant>, ManagerError>),
}

impl Action {
    /// A short name, for logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Lock => "lock",
            Self::Send(_) => "send",
            Self::Wait(_) => "wait",
            Self::Commit { .. } => "commit",
            Self::Unlock => "unlock",
            Self::SetStatus(_) => "set_status",
            Self::Done(_) => "done",
        }
    }
}

/// What the driver reports back.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The result of [`Action::Load`].
    Loaded(Option<StoredGrant>),
    /// The row read under the lock.
    Locked(Option<StoredGrant>),
    /// The response to [`Action::Send`].
    Response(http::Response<Vec<u8>>),
    /// [`Action::Send`] failed in transport.
    TransportFailed(TransportError),
    /// [`Action::Commit`] succeeded with this version.
    Committed(u64),
    /// [`Action::Load`], [`Action::Lock`] or [`Action::Commit`] failed.
    StoreFailed(StoreError),
}

#[derive(Debug)]
enum State {
    Start,
    AwaitLoad,
    AwaitLock {
        loaded: StoredGrant,
    },
    Refreshing {
        current: StoredGrant,
        flow: Box<TokenFlow>,
    },
    AwaitCommit {
        tokens: TokenSet,
        id_claims: Option<IdTokenClaims>,
    },
    Reread {
        sent: Option<String>,
        error: DriveError,
    },
    /// Emit these actions in order, then continue in the boxed state.
    Queue(std::collections::VecDeque<Action>, Box<Self>),
    Finished,
}

fn emit(actions: impl IntoIterator<Item = Action>, then: State) -> State {
    State::Queue(actions.into_iter().collect(), Box::new(then))
}

fn finish(result: Result<StoredGrant, ManagerError>) -> Action {
    Action::Done(result.map(Arc::new))
}

/// One refresh attempt for one tenant.
#[derive(Debug)]
pub struct RefreshProcedure {
    key: TenantKey,
    config: ClientConfig,
    endpoints: Endpoints,
    policy: RefreshPolicy,
    force_if_version: Option<u64>,
    state: State,
    events: Vec<TokenEvent>,
}

impl RefreshProcedure {
    /// A procedure for `key` with the client's configuration and endpoints.
    #[must_use]
    pub fn new(
        key: TenantKey,
        config: ClientConfig,
        endpoints: Endpoints,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            key,
            config,
            endpoints,
            policy,
            force_if_version: None,
            state: State::Start,
            events: Vec::new(),
        }
    }

    /// Refreshes even if the access token looks valid, unless the stored version is no
    /// longer `version` (someone refreshed since). For a 401 from an API.
    #[must_use]
    pub fn force_if_version(mut self, version: u64) -> Self {
        self.force_if_version = Some(version);
        self
    }

    /// Events produced so far (drain after [`Action::Done`]).
    pub fn take_events(&mut self) -> Vec<TokenEvent> {
        std::mem::take(&mut self.events)
    }

    fn needs_reauth(&mut self, reason: String) -> Vec<Action> {
        self.events.push(TokenEvent::ReauthorizationRequired {
            key: self.key.clone(),
            reason: reason.clone(),
        });
        vec![
            Action::SetStatus(GrantStatus::NeedsReauthorization {
                reason: reason.clone(),
            }),
            finish(Err(ManagerError::NeedsReauthorization {
                key: self.key.clone(),
                reason,
            })),
        ]
    }

    /// Does `g` need a refresh at `now` (with forcing applied)? `Err` when it is dead.
    fn wants_refresh(&self, g: &StoredGrant, now: SystemTime) -> Result<bool, String> {
        if let GrantStatus::NeedsReauthorization { reason } = &g.status {
            return Err(reason.clone());
        }
        match self.policy.decide(&g.tokens, now) {
            RefreshDecision::Use { .. } => Ok(self.force_if_version == Some(g.version)),
            RefreshDecision::Reauthorize(r) => Err(match r {
                class_oauth_core::refresh::ReauthorizationReason::NoRefreshToken => {
                    "the access token expired and there is no refresh token (offline_access was not granted)".to_owned()
                }
                _ => "the refresh token is past its lifetime".to_owned(),
            }),
            _ => Ok(true),
        }
    }

    /// The next action at `now`.
    pub fn poll(&mut self, now: SystemTime) -> Action {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Start => {
                self.state = State::AwaitLoad;
                Action::Load
            }
            State::Queue(mut actions, then) => match actions.pop_front() {
                Some(action) => {
                    self.state = if actions.is_empty() {
                        *then
                    } else {
                        State::Queue(actions, then)
                    };
                    action
                }
                None => {
                    self.state = *then;
                    self.poll(now)
                }
            },
            State::Refreshing { current, mut flow } => match flow.poll(now) {
                Step::Send(req) => {
                    self.state = State::Refreshing { current, flow };
                    Action::Send(req)
                }
                Step::Wait(d) => {
                    self.state = State::Refreshing { current, flow };
                    Action::Wait(d)
                }
                Step::Done(Ok(v)) => {
                    let id_claims = v.id_claims.or(current.id_claims);
                    self.state = State::AwaitCommit {
                        tokens: v.tokens.clone(),
                        id_claims: id_claims.clone(),
                    };
                    Action::Commit {
                        tokens: v.tokens,
                        id_claims,
                    }
                }
                Step::Done(Err(e)) => {
                    self.state = self.failed(current, DriveError::Protocol(e), now);
                    self.poll(now)
                }
                _ => {
                    self.state = self.failed(current, DriveError::Protocol(unknown_step()), now);
                    self.poll(now)
                }
            },
            State::Finished => finish(Err(ManagerError::Store(StoreError::Backend(
                "refresh procedure polled after it finished".into(),
            )))),
            waiting => {
                self.state = waiting;
                finish(Err(ManagerError::Store(StoreError::Backend(
                    "refresh procedure polled while waiting for input".into(),
                ))))
            }
        }
    }

    fn failed(&mut self, current: StoredGrant, error: DriveError, now: SystemTime) -> State {
        if error.requires_reauthorization() {
            // Another instance may have won the race and rotated the token: re-read once.
            let sent = current
                .tokens
                .refresh_token
                .as_ref()
                .map(|t| t.secret().to_owned());
            return emit(
                [Action::Unlock, Action::Load],
                State::Reread { sent, error },
            );
        }
        self.events.push(TokenEvent::RefreshFailed {
            key: self.key.clone(),
            error: error.to_string(),
            transient: error.is_transient(),
        });
        // No retry: a timed-out refresh may have spent the one-time refresh token.
        let still_valid = now < self.policy.expires_at(&current.tokens);
        let result = if still_valid {
            Ok(current)
        } else {
            Err(ManagerError::Refresh(error))
        };
        emit([Action::Unlock, finish(result)], State::Finished)
    }

    /// Feeds the outcome of the last action.
    pub fn feed(&mut self, now: SystemTime, input: Input) {
        let state = std::mem::replace(&mut self.state, State::Finished);
        self.state = match (state, input) {
            (State::AwaitCommit { .. }, Input::StoreFailed(e)) => {
                self.events.push(TokenEvent::PersistFailed {
                    key: self.key.clone(),
                    error: e.to_string(),
                });
                emit(
                    [finish(Err(ManagerError::PersistFailed(e)))],
                    State::Finished,
                )
            }
            (_, Input::StoreFailed(e)) => emit(
                [Action::Unlock, finish(Err(ManagerError::Store(e)))],
                State::Finished,
            ),
            (State::AwaitLoad, Input::Loaded(None)) => emit(
                [finish(Err(ManagerError::NoGrant {
                    key: self.key.clone(),
                }))],
                State::Finished,
            ),
            (State::AwaitLoad, Input::Loaded(Some(g))) => match self.wants_refresh(&g, now) {
                Ok(false) => emit([finish(Ok(g))], State::Finished),
                Ok(true) => emit([Action::Lock], State::AwaitLock { loaded: g }),
                Err(reason) if g.status != GrantStatus::Active => emit(
                    [finish(Err(ManagerError::NeedsReauthorization {
                        key: self.key.clone(),
                        reason,
                    }))],
                    State::Finished,
                ),
                Err(reason) => emit(self.needs_reauth(reason), State::Finished),
            },
            (State::AwaitLock { loaded }, Input::Locked(current)) => {
                self.locked(&loaded, current, now)
            }
            (State::Refreshing { current, mut flow }, Input::Response(resp)) => {
                flow.handle_response(now, resp);
                State::Refreshing { current, flow }
            }
            (State::Refreshing { current, mut flow }, Input::TransportFailed(e)) => {
                if flow.handle_transport_failure(now) == OnFailure::Abort {
                    self.failed(current, DriveError::Transport(e), now)
                } else {
                    State::Refreshing { current, flow }
                }
            }
            (State::AwaitCommit { tokens, id_claims }, Input::Committed(version)) => {
                self.events.push(TokenEvent::Refreshed {
                    key: self.key.clone(),
                    version,
                    expires_at: tokens.expires_at.map(class_oauth_core::time::to_unix),
                });
                emit(
                    [finish(Ok(StoredGrant {
                        tokens,
                        id_claims,
                        status: GrantStatus::Active,
                        version,
                    }))],
                    State::Finished,
                )
            }
            (State::Reread { sent, error }, Input::Loaded(g)) => match g {
                Some(g)
                    if g.status == GrantStatus::Active
                        && g.tokens
                            .refresh_token
                            .as_ref()
                            .map(|t| t.secret().to_owned())
                            != sent =>
                {
                    self.events.push(TokenEvent::RefreshedElsewhere {
                        key: self.key.clone(),
                    });
                    emit([finish(Ok(g))], State::Finished)
                }
                _ => emit(
                    self.needs_reauth(format!("the refresh token was refused ({error})")),
                    State::Finished,
                ),
            },
            _ => emit(
                [finish(Err(ManagerError::Store(StoreError::Backend(
                    "unexpected input to the refresh procedure".into(),
                ))))],
                State::Finished,
            ),
        };
    }

    fn locked(
        &mut self,
        loaded: &StoredGrant,
        current: Option<StoredGrant>,
        now: SystemTime,
    ) -> State {
        let Some(current) = current else {
            return emit(
                [
                    Action::Unlock,
                    finish(Err(ManagerError::NoGrant {
                        key: self.key.clone(),
                    })),
                ],
                State::Finished,
            );
        };
        match self.wants_refresh(&current, now) {
            Ok(false) => {
                if current.version != loaded.version {
                    self.events.push(TokenEvent::RefreshedElsewhere {
                        key: self.key.clone(),
                    });
                }
                emit([Action::Unlock, finish(Ok(current))], State::Finished)
            }
            Err(reason) => {
                let mut actions = vec![Action::Unlock];
                if current.status == GrantStatus::Active {
                    actions.extend(self.needs_reauth(reason));
                } else {
                    actions.push(finish(Err(ManagerError::NeedsReauthorization {
                        key: self.key.clone(),
                        reason,
                    })));
                }
                emit(actions, State::Finished)
            }
            Ok(true) => match self.config.refresh_flow(
                &self.endpoints,
                &current.tokens,
                current.id_claims.as_ref(),
            ) {
                Ok(flow) => State::Refreshing {
                    current,
                    flow: Box::new(flow),
                },
                Err(e) => emit(
                    [
                        Action::Unlock,
                        finish(Err(ManagerError::Refresh(DriveError::Protocol(e)))),
                    ],
                    State::Finished,
                ),
            },
        }
    }
}

fn unknown_step() -> class_oauth_core::Error {
    class_oauth_core::error::InputError::InvalidValue {
        field: "flow",
        detail: "unknown step".into(),
    }
    .into()
}
