//! The refresh policy: from a stored token set and `now`, decide whether to use the
//! access token, refresh it, or send the user back through authorization.
//!
//! The refresh-ahead margin defaults to 60 s (Duende's `RefreshBeforeExpiration`) but is
//! clamped to half the token's lifetime, so a short-lived token never looks expired the
//! moment it is issued (the Authlib #716 bug: a 60 s leeway on a 59 s token). Optional
//! jitter spreads the refreshes of many tenants issued together; its randomness is
//! injected.

use std::time::{Duration, SystemTime};

use crate::client::EntropySource;
use crate::token::TokenSet;

/// When to refresh.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Refresh this long before expiry (default 60 s), clamped to
    /// `max_margin_fraction` of the lifetime.
    pub margin: Duration,
    /// Upper bound on margin plus jitter, as a fraction of the lifetime (default 0.5).
    pub max_margin_fraction: f64,
    /// Up to this much extra, random, earliness (default zero).
    pub jitter: Duration,
    /// The lifetime assumed when a response had no `expires_in` (default 899 s, Class's).
    pub assumed_lifetime: Duration,
    /// If set, the refresh token is treated as dead this long after it was received
    /// (Class: 30 days; whether sliding is unknown, so off by default).
    pub refresh_token_lifetime: Option<Duration>,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(60),
            max_margin_fraction: 0.5,
            jitter: Duration::ZERO,
            assumed_lifetime: Duration::from_secs(899),
            refresh_token_lifetime: None,
        }
    }
}

/// Why the user must authorize again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReauthorizationReason {
    /// The access token expired and there is no refresh token (no `offline_access`).
    NoRefreshToken,
    /// The refresh token is older than the configured lifetime.
    RefreshTokenExpired,
}

/// What to do with a token set now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshDecision {
    /// The access token is good; come back at `refresh_at`.
    Use {
        /// When the policy will ask for a refresh.
        refresh_at: SystemTime,
        /// When the access token expires.
        expires_at: SystemTime,
    },
    /// Refresh now. When `expired` is false the current token still works until
    /// `expires_at`, so a transient refresh failure need not fail the caller.
    Refresh {
        /// Has the access token already expired?
        expired: bool,
        /// When the access token expires.
        expires_at: SystemTime,
    },
    /// The grant cannot be renewed without the user.
    Reauthorize(ReauthorizationReason),
}

impl RefreshPolicy {
    /// Sets the margin.
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Sets the jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The access token's expiry: `expires_at`, or `received_at + assumed_lifetime`.
    #[must_use]
    pub fn expires_at(&self, tokens: &TokenSet) -> SystemTime {
        tokens
            .expires_at
            .unwrap_or_else(|| crate::time::add(tokens.received_at, self.assumed_lifetime))
    }

    /// When to refresh this token set. Draws 4 bytes from `entropy` only when jitter is
    /// configured; compute it once per token set and keep it.
    pub fn refresh_at(
        &self,
        tokens: &TokenSet,
        entropy: Option<&mut dyn EntropySource>,
    ) -> SystemTime {
        let expires_at = self.expires_at(tokens);
        let lifetime = expires_at
            .duration_since(tokens.received_at)
            .unwrap_or(Duration::ZERO);
        let fraction = self.max_margin_fraction.clamp(0.0, 1.0);
        let cap = lifetime.mul_f64(fraction);
        let margin = self.margin.min(cap);
        let mut early = margin;
        if let (Some(entropy), false) = (entropy, self.jitter.is_zero()) {
            let mut b = [0u8; 4];
            entropy.fill_bytes(&mut b);
            let unit = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
            let room = cap.saturating_sub(margin).min(self.jitter);
            early += room.mul_f64(unit);
        }
        expires_at.checked_sub(early).unwrap_or(tokens.received_at)
    }

    /// Decides what to do at `now`, given a refresh time from [`RefreshPolicy::refresh_at`].
    #[must_use]
    pub fn decide_at(
        &self,
        tokens: &TokenSet,
        refresh_at: SystemTime,
        now: SystemTime,
    ) -> RefreshDecision {
        let expires_at = self.expires_at(tokens);
        if now < refresh_at {
            return RefreshDecision::Use {
                refresh_at,
                expires_at,
            };
        }
        let expired = now >= expires_at;
        let rt_dead = self
            .refresh_token_lifetime
            .is_some_and(|l| now >= crate::time::add(tokens.received_at, l));
        match (&tokens.refresh_token, rt_dead) {
            (Some(_), false) => RefreshDecision::Refresh {
                expired,
                expires_at,
            },
            (Some(_), true) if !expired => RefreshDecision::Use {
                refresh_at: expires_at,
                expires_at,
            },
            (Some(_), true) => {
                RefreshDecision::Reauthorize(ReauthorizationReason::RefreshTokenExpired)
            }
            (None, _) if !expired => RefreshDecision::Use {
                refresh_at: expires_at,
                expires_at,
            },
            (None, _) => RefreshDecision::Reauthorize(ReauthorizationReason::NoRefreshToken),
        }
    }

    /// [`RefreshPolicy::refresh_at`] (without jitter) then [`RefreshPolicy::decide_at`].
    #[must_use]
    pub fn decide(&self, tokens: &TokenSet, now: SystemTime) -> RefreshDecision {
        self.decide_at(tokens, self.refresh_at(tokens, None), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scopes;
    use crate::secret::{AccessToken, RefreshToken};

    fn tokens(lifetime: Option<u64>, refresh: bool) -> TokenSet {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        TokenSet {
            access_token: AccessToken::new("at"),
            token_type: "bearer".into(),
            refresh_token: refresh.then(|| RefreshToken::new("rt")),
            id_token: None,
            scopes: Scopes::default(),
            scope_in_response: false,
            received_at: now,
            expires_in: lifetime,
            expires_at: lifetime.map(|l| now + Duration::from_secs(l)),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn class_token_refreshes_a_minute_early() {
        let t = tokens(Some(899), true);
        let p = RefreshPolicy::default();
        assert_eq!(
            p.refresh_at(&t, None),
            t.received_at + Duration::from_secs(839)
        );
        assert!(matches!(
            p.decide(&t, t.received_at),
            RefreshDecision::Use { .. }
        ));
        assert_eq!(
            p.decide(&t, t.received_at + Duration::from_secs(840)),
            RefreshDecision::Refresh {
                expired: false,
                expires_at: t.received_at + Duration::from_secs(899)
            }
        );
    }

    #[test]
    fn short_token_never_expired_at_issue() {
        for life in [0u64, 1, 2, 30, 59, 60, 61, 119] {
            let t = tokens(Some(life), true);
            let at = RefreshPolicy::default().refresh_at(&t, None);
            assert!(
                at >= t.received_at + Duration::from_secs(life) / 2,
                "life {life}"
            );
            if life > 0 {
                assert!(
                    matches!(
                        RefreshPolicy::default().decide(&t, t.received_at),
                        RefreshDecision::Use { .. }
                    ),
                    "life {life}"
                );
            }
        }
    }

    #[test]
    fn jitter_stays_inside_half_lifetime() {
        let t = tokens(Some(899), true);
        let p = RefreshPolicy::default().with_jitter(Duration::from_secs(600));
        let mut max = |b: &mut [u8]| b.fill(0xFF);
        let at = p.refresh_at(&t, Some(&mut max));
        assert!(at >= t.received_at + Duration::from_secs(449), "{at:?}");
        assert!(at < t.received_at + Duration::from_secs(839));
    }

    #[test]
    fn no_refresh_token_means_reauthorize_after_expiry() {
        let t = tokens(None, false);
        let p = RefreshPolicy::default();
        assert!(matches!(
            p.decide(&t, t.received_at + Duration::from_secs(850)),
            RefreshDecision::Use { .. }
        ));
        assert_eq!(
            p.decide(&t, t.received_at + Duration::from_secs(899)),
            RefreshDecision::Reauthorize(ReauthorizationReason::NoRefreshToken)
        );
    }
}
