//! Grant health: what a partner's dashboard shows of each stored grant, and which
//! customers must connect again. Read from the store's listing ([`TokenStore::list`]);
//! never a secret.

use std::time::{Duration, SystemTime};

#[cfg(doc)]
use class_oauth_store::TokenStore;
use class_oauth_store::{GrantStatus, GrantSummary, TenantKey};

use crate::Settings;

/// One grant's health at a moment: its status, how old its refresh token is and when it
/// lapses if nobody refreshes it, when it was last refreshed, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantHealth {
    /// The grant's key.
    pub key: TenantKey,
    /// The business it covers.
    pub business_code: Option<String>,
    /// Its status, with the reason it was given.
    pub status: GrantStatus,
    /// When the access token expires.
    pub access_expires_at: Option<SystemTime>,
    /// How old the refresh token is (since the login or the last refresh).
    pub refresh_token_age: Option<Duration>,
    /// When the refresh token lapses if it is not used before
    /// ([`Settings::refresh_token_idle_limit`] after it was received); `None` when the
    /// grant has already ended or the store does not know the token's age.
    pub lapses_at: Option<SystemTime>,
    /// The last refresh (`None` when the grant has not been refreshed since its login).
    pub last_refresh: Option<SystemTime>,
    /// The last login.
    pub granted_at: Option<SystemTime>,
    /// Why the last refresh failed without ending the grant (Class unavailable, the
    /// network), and when; `None` once a refresh succeeds. The grant stays usable while
    /// its access token lasts and is refreshed again at the next call or sweep.
    pub last_error: Option<(String, SystemTime)>,
    /// What the partner should do, in words (`None` when nothing is needed).
    pub action: Option<String>,
}

impl GrantHealth {
    /// The health of `summary` at `now` under `settings`.
    #[must_use]
    pub fn new(summary: &GrantSummary, settings: &Settings, now: SystemTime) -> Self {
        let at = |s: Option<u64>| s.map(class_oauth_core::time::from_unix);
        let received = at(summary.tokens_received_at);
        let granted = at(summary.granted_at);
        let ended = matches!(summary.status, GrantStatus::NeedsReauthorization { .. });
        let lapses_at = received
            .filter(|_| !ended)
            .map(|r| r + settings.refresh_token_idle_limit);
        let action = match &summary.status {
            GrantStatus::NeedsReauthorization { .. } => {
                Some("ask the customer to connect this business again".to_owned())
            }
            _ if lapses_at.is_some_and(|l| l <= now) => Some(
                "the refresh token has probably lapsed: refresh now, or ask the customer to connect again".to_owned(),
            ),
            _ => None,
        };
        Self {
            key: summary.key.clone(),
            business_code: summary.business_code.clone(),
            status: summary.status.clone(),
            access_expires_at: at(summary.expires_at),
            refresh_token_age: received.map(|r| now.duration_since(r).unwrap_or_default()),
            lapses_at,
            last_refresh: at(summary.refreshed_at),
            granted_at: granted,
            last_error: summary.last_error.clone().zip(at(summary.last_error_at)),
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use class_oauth_core::ClientId;

    fn summary(status: GrantStatus, received: u64, granted: u64) -> GrantSummary {
        let mut s = GrantSummary::new(TenantKey::new(&ClientId::new("app"), "BIZ"), status, 3);
        s.tokens_received_at = Some(received);
        s.granted_at = Some(granted);
        s.refreshed_at = (received != granted).then_some(received);
        s
    }

    const DAY: u64 = 24 * 3600;

    #[test]
    fn age_lapse_and_last_refresh() {
        let t0 = 1_800_000_000;
        let now = class_oauth_core::time::from_unix(t0 + 10 * DAY);
        let h = GrantHealth::new(
            &summary(GrantStatus::Active, t0 + 4 * DAY, t0),
            &Settings::default(),
            now,
        );
        assert_eq!(h.refresh_token_age, Some(Duration::from_secs(6 * DAY)));
        assert_eq!(
            h.lapses_at,
            Some(class_oauth_core::time::from_unix(t0 + 34 * DAY))
        );
        assert_eq!(
            h.last_refresh,
            Some(class_oauth_core::time::from_unix(t0 + 4 * DAY))
        );
        assert_eq!(h.action, None);
        // Never refreshed since the login: no last refresh.
        let h = GrantHealth::new(
            &summary(GrantStatus::Active, t0, t0),
            &Settings::default(),
            now,
        );
        assert_eq!(h.last_refresh, None);
        // Idle past the limit: say so.
        let later = class_oauth_core::time::from_unix(t0 + 31 * DAY);
        let h = GrantHealth::new(
            &summary(GrantStatus::Active, t0, t0),
            &Settings::default(),
            later,
        );
        assert!(
            h.action.as_deref().is_some_and(|a| a.contains("lapsed")),
            "{h:?}"
        );
        // An ended grant: no lapse to estimate, and the customer must connect again.
        let dead = GrantStatus::NeedsReauthorization {
            reason: "revoked".into(),
        };
        let h = GrantHealth::new(&summary(dead, t0, t0), &Settings::default(), now);
        assert_eq!(h.lapses_at, None);
        assert!(
            h.action.as_deref().is_some_and(|a| a.contains("connect")),
            "{h:?}"
        );
        assert_eq!(h.refresh_token_age, Some(Duration::from_secs(10 * DAY)));
    }
}
