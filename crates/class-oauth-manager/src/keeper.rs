//! The keeper: keeps idle grants alive. A Class refresh token lapses when it goes unused
//! for [`Settings::refresh_token_idle_limit`] (30 days), so a business synced monthly, or
//! a customer who pauses for six weeks, would come back to a grant that needs consent
//! again. The keeper sweeps the store in pages and refreshes each grant once its refresh
//! token is older than a share of that limit (with a per-grant spread, and at a bounded
//! rate), through the manager's own single flight and leases: every instance may run one,
//! and a grant another instance refreshed first is not refreshed again (its version moved
//! on, so the forced refresh uses it as it is). Where the lifetime is absolute and
//! refreshing cannot extend it, the keeper announces each lapse ahead instead
//! ([`TokenEvent::LapseAhead`] at each configured lead time), once across instances and
//! restarts: the instance that claims the notice in the store ([`announce`],
//! `TokenStore::claim_lapse_notice`) reports it.
//!
//! [`Keeper`] is sans-IO, in the machine's verbs: [`Keeper::poll`] says what to do next
//! (list a page, refresh a grant, announce, wait) and `handle_*` feed the answers back.
//! [`TokenManager::start_keeper`](crate::TokenManager::start_keeper) runs it (a tokio
//! task, or a thread for the blocking face); the simulator runs the same machine in
//! virtual time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use class_oauth_store::{GrantQuery, GrantStatus, GrantSummary, StoreError, TenantKey, TokenStore};

use crate::{Settings, TokenEvent};

/// Whether to report `event`, a [`KeeperAction::Announce`]: a lapse notice only when this
/// instance claims it in `store` (so several instances, and a restarted one, announce
/// each lead of a lapse once); any other event, and a notice the store could not answer
/// for (twice is better than never), always.
pub async fn announce<S: TokenStore + ?Sized>(store: &S, event: &TokenEvent) -> bool {
    let TokenEvent::LapseAhead {
        key,
        lapses_at,
        lead,
    } = event
    else {
        return true;
    };
    match store.claim_lapse_notice(key, *lapses_at, *lead).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(tenant = %key, error = %e, "could not claim a lapse notice; announcing it anyway");
            true
        }
    }
}

/// The keeper's tunables, with their defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KeeperSettings {
    /// Refresh a grant once its refresh token is older than this share of
    /// [`Settings::refresh_token_idle_limit`] (default 0.5: after 15 days for Class).
    pub refresh_after: f64,
    /// Each grant's due time moves later by up to this share of the limit, by a hash of
    /// its key, so that grants made together are not refreshed together, and every
    /// instance computes the same due time (default 0.1: up to 3 days).
    pub spread: f64,
    /// At most this many keeper refreshes per second on one instance (default 2), so a
    /// store of 100,000 grants never refreshes in one burst.
    pub max_refreshes_per_second: f64,
    /// Grants read per page (default 500).
    pub page_size: u32,
    /// The pause between two sweeps of the store (default 1 hour). A failed page is
    /// read again after a minute.
    pub sweep_interval: Duration,
    /// The refresh token's lifetime counts from the login and refreshing does not extend
    /// it (default `false`: Class does not document which; a refresh costs little). When
    /// set, the keeper refreshes nothing and announces each lapse at `announce_leads`.
    pub absolute_lifetime: bool,
    /// How long before a lapse to announce it, one [`TokenEvent::LapseAhead`] each
    /// (default 7 days and 1 day).
    pub announce_leads: Vec<Duration>,
}

impl Default for KeeperSettings {
    fn default() -> Self {
        Self {
            refresh_after: 0.5,
            spread: 0.1,
            max_refreshes_per_second: 2.0,
            page_size: 500,
            sweep_interval: Duration::from_secs(3600),
            absolute_lifetime: false,
            announce_leads: vec![
                Duration::from_secs(7 * 24 * 3600),
                Duration::from_secs(24 * 3600),
            ],
        }
    }
}

/// What the keeper asks its driver to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeeperAction {
    /// Read this page of the store ([`class_oauth_store::TokenStore::list`]); answer
    /// with [`Keeper::handle_page`].
    List(GrantQuery),
    /// Refresh this grant now unless it changed since `version`
    /// ([`TokenManager::force_refresh`](crate::TokenManager::force_refresh)); answer
    /// with [`Keeper::handle_refreshed`].
    Refresh {
        /// The grant.
        key: TenantKey,
        /// The version the keeper saw.
        version: u64,
    },
    /// Report this event to the application if [`announce`] says so (a lapse notice is
    /// reported by the one instance that claims it).
    Announce(TokenEvent),
    /// Nothing to do for this long.
    Wait(Duration),
}

/// The keeper's state (see the module docs).
#[derive(Debug)]
pub struct Keeper {
    settings: KeeperSettings,
    idle_limit: Duration,
    /// The page being read: `Some(cursor)` while a sweep runs.
    sweep: Option<Option<TenantKey>>,
    /// A `List` or `Refresh` is out; poll answers `Wait` until it comes back.
    busy: bool,
    next_sweep: Option<SystemTime>,
    next_refresh: Option<SystemTime>,
    due: VecDeque<(TenantKey, u64)>,
    events: VecDeque<TokenEvent>,
    /// The leads announced per grant, for the login they were announced for.
    announced: HashMap<TenantKey, (u64, usize)>,
    /// Grants by status ([`GrantStatus::NAMES`]) in the sweep under way, and in the last
    /// one completed until it is taken.
    counting: [u64; 4],
    swept: Option<[u64; 4]>,
}

impl Keeper {
    /// A keeper for grants under `settings` (their idle limit), with `keeper`'s tunables.
    #[must_use]
    pub fn new(settings: &Settings, keeper: KeeperSettings) -> Self {
        let mut keeper = keeper;
        keeper.announce_leads.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            settings: keeper,
            idle_limit: settings.refresh_token_idle_limit,
            sweep: None,
            busy: false,
            next_sweep: None,
            next_refresh: None,
            due: VecDeque::new(),
            events: VecDeque::new(),
            announced: HashMap::new(),
            counting: [0; 4],
            swept: None,
        }
    }

    /// The grants by status ([`GrantStatus::NAMES`]) that the last completed sweep
    /// counted, once per sweep (for a metrics gauge).
    pub fn take_sweep_counts(&mut self) -> Option<[(&'static str, u64); 4]> {
        let counts = self.swept.take()?;
        Some(std::array::from_fn(|i| (GrantStatus::NAMES[i], counts[i])))
    }

    /// What to do next at `now`.
    pub fn poll(&mut self, now: SystemTime) -> KeeperAction {
        if let Some(e) = self.events.pop_front() {
            return KeeperAction::Announce(e);
        }
        if self.busy {
            return KeeperAction::Wait(Duration::from_secs(1));
        }
        if let Some((key, version)) = self.due.front().cloned() {
            match self.next_refresh.and_then(|t| t.duration_since(now).ok()) {
                Some(wait) if !wait.is_zero() => return KeeperAction::Wait(wait),
                _ => {
                    self.due.pop_front();
                    let gap = 1.0 / self.settings.max_refreshes_per_second.max(0.001);
                    self.next_refresh = Some(now + Duration::from_secs_f64(gap));
                    self.busy = true;
                    return KeeperAction::Refresh { key, version };
                }
            }
        }
        if self.sweep.is_none() {
            match self.next_sweep.and_then(|t| t.duration_since(now).ok()) {
                Some(wait) if !wait.is_zero() => return KeeperAction::Wait(wait),
                _ => self.sweep = Some(None),
            }
        }
        let mut query = GrantQuery::page(self.settings.page_size.max(1));
        if let Some(Some(cursor)) = &self.sweep {
            query = query.after(cursor);
        }
        self.busy = true;
        KeeperAction::List(query)
    }

    /// The page asked for by [`KeeperAction::List`].
    pub fn handle_page(&mut self, now: SystemTime, page: Result<Vec<GrantSummary>, StoreError>) {
        self.busy = false;
        let rows = match page {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "the keeper could not read the store; trying again in a minute");
                self.sweep = None;
                self.next_sweep = Some(now + Duration::from_secs(60));
                return;
            }
        };
        if matches!(self.sweep, Some(None)) {
            self.counting = [0; 4];
        }
        for row in &rows {
            let status = row.status.as_parts().0;
            if let Some(i) = GrantStatus::NAMES.iter().position(|n| *n == status) {
                self.counting[i] += 1;
            }
            self.consider(now, row);
        }
        let full = rows.len() >= self.settings.page_size.max(1) as usize;
        match rows.last() {
            Some(last) if full => self.sweep = Some(Some(last.key.clone())),
            _ => {
                self.sweep = None;
                self.swept = Some(self.counting);
                self.next_sweep = Some(now + self.settings.sweep_interval);
            }
        }
    }

    /// The end of a [`KeeperAction::Refresh`] (its errors are the manager's events).
    pub fn handle_refreshed(&mut self, _now: SystemTime) {
        self.busy = false;
    }

    /// When `row`'s refresh token lapses if nobody uses it, and whether a refresh moves
    /// that time (a sliding lifetime).
    fn lapse(&self, row: &GrantSummary) -> Option<SystemTime> {
        let from = if self.settings.absolute_lifetime {
            row.granted_at.or(row.tokens_received_at)
        } else {
            row.tokens_received_at
        }?;
        Some(class_oauth_core::time::from_unix(from) + self.idle_limit)
    }

    fn consider(&mut self, now: SystemTime, row: &GrantSummary) {
        if matches!(row.status, GrantStatus::NeedsReauthorization { .. }) {
            self.announced.remove(&row.key);
            return;
        }
        if self.settings.absolute_lifetime {
            return self.announce(now, row);
        }
        let Some(received) = row.tokens_received_at else {
            // A row written before the store kept the tokens' time: one refresh
            // records it.
            return self.due.push_back((row.key.clone(), row.version));
        };
        let limit = self.idle_limit.as_secs_f64();
        let after = limit * self.settings.refresh_after.clamp(0.0, 1.0)
            + limit * self.settings.spread.max(0.0) * spread_of(&row.key);
        let due = class_oauth_core::time::from_unix(received) + Duration::from_secs_f64(after);
        // No grant is queued twice: the pages of one sweep are disjoint, and a sweep
        // starts only once the queue is empty (`poll` refreshes before it sweeps).
        if now >= due {
            self.due.push_back((row.key.clone(), row.version));
        }
    }

    fn announce(&mut self, now: SystemTime, row: &GrantSummary) {
        let Some(lapses_at) = self.lapse(row) else {
            return;
        };
        let login = row.granted_at.unwrap_or(0);
        let done = match self.announced.get(&row.key) {
            Some((l, n)) if *l == login => *n,
            _ => 0,
        };
        let mut n = done;
        for (i, lead) in self.settings.announce_leads.iter().enumerate().skip(done) {
            if now + *lead < lapses_at {
                break;
            }
            n = i + 1;
            if now < lapses_at {
                self.events.push_back(TokenEvent::LapseAhead {
                    key: row.key.clone(),
                    lapses_at: class_oauth_core::time::to_unix(lapses_at),
                    lead: *lead,
                });
            }
        }
        if n != done {
            self.announced.insert(row.key.clone(), (login, n));
        }
    }
}

/// A running keeper ([`TokenManager::start_keeper`](crate::TokenManager::start_keeper)):
/// dropping it stops the keeper within about a second (a refresh it started runs to its
/// end).
#[derive(Debug)]
#[must_use = "dropping the handle stops the keeper"]
pub struct KeeperHandle {
    stop: Arc<AtomicBool>,
}

impl KeeperHandle {
    pub(crate) fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops the keeper (as dropping the handle does).
    pub fn stop(self) {}
}

impl Drop for KeeperHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A grant's place in the spread, in [0, 1): from its row key, the same on every
/// instance (FNV-1a; not the process-keyed hash maps use).
fn spread_of(key: &TenantKey) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.storage_key().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use class_oauth_core::ClientId;

    const DAY: u64 = 24 * 3600;

    fn at(secs: u64) -> SystemTime {
        class_oauth_core::time::from_unix(secs)
    }

    fn row(tenant: &str, received: u64, granted: u64) -> GrantSummary {
        let mut s = GrantSummary::new(
            TenantKey::new(&ClientId::new("app"), tenant),
            GrantStatus::Active,
            4,
        );
        s.tokens_received_at = Some(received);
        s.granted_at = Some(granted);
        s
    }

    /// Drives the keeper by hand over a fixed listing until it waits for the next sweep;
    /// returns what it refreshed and announced.
    fn sweep(
        k: &mut Keeper,
        now: SystemTime,
        rows: &[GrantSummary],
    ) -> (Vec<String>, Vec<TokenEvent>) {
        let (mut refreshed, mut events) = (Vec::new(), Vec::new());
        let mut t = now;
        for _ in 0..1000 {
            match k.poll(t) {
                KeeperAction::List(q) => {
                    let page: Vec<_> = rows
                        .iter()
                        .filter(|r| q.matches(r))
                        .take(q.limit.unwrap_or(u32::MAX) as usize)
                        .cloned()
                        .collect();
                    k.handle_page(t, Ok(page));
                }
                KeeperAction::Refresh { key, .. } => {
                    refreshed.push(key.tenant().to_owned());
                    k.handle_refreshed(t);
                }
                KeeperAction::Announce(e) => events.push(e),
                KeeperAction::Wait(d) if d >= Duration::from_secs(60) => break,
                KeeperAction::Wait(d) => t += d,
            }
        }
        (refreshed, events)
    }

    #[test]
    fn refreshes_grants_past_their_share_in_pages_at_a_bounded_rate() {
        let t0 = 1_800_000_000;
        let settings = Settings::default();
        let keeper = KeeperSettings {
            page_size: 2,
            ..KeeperSettings::default()
        };
        let mut k = Keeper::new(&settings, keeper);
        // Five grants: three with tokens 20 days old (past 15 days and any spread up to
        // 3 days), one 2 days old, one ended.
        let mut rows: Vec<_> = ["A", "B", "C"]
            .iter()
            .map(|t| row(t, t0, t0))
            .chain([row("D", t0 + 18 * DAY, t0)])
            .collect();
        let mut ended = row("E", t0, t0);
        ended.status = GrantStatus::NeedsReauthorization {
            reason: "revoked".into(),
        };
        rows.push(ended);
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        let now = at(t0 + 20 * DAY);
        let started = std::time::Instant::now();
        let (refreshed, events) = sweep(&mut k, now, &rows);
        assert_eq!(refreshed, ["A", "B", "C"]);
        assert!(events.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no real time passes"
        );
        // At 2 per second: the third refresh waited 1 s of virtual time after the first.
        let mut k = Keeper::new(&settings, KeeperSettings::default());
        let mut waits = Duration::ZERO;
        for _ in 0..20 {
            match k.poll(now) {
                KeeperAction::List(_) => k.handle_page(now, Ok(rows.clone())),
                KeeperAction::Refresh { .. } => k.handle_refreshed(now),
                KeeperAction::Wait(d) => {
                    waits = d;
                    break;
                }
                KeeperAction::Announce(_) => {}
            }
        }
        assert_eq!(waits, Duration::from_millis(500), "the rate holds");
    }

    #[test]
    fn the_spread_is_stable_and_within_its_share() {
        let keys: Vec<_> = (0..1000)
            .map(|i| TenantKey::new(&ClientId::new("app"), format!("B{i}")))
            .collect();
        let s: Vec<f64> = keys.iter().map(spread_of).collect();
        assert!(s.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(
            s,
            keys.iter().map(spread_of).collect::<Vec<_>>(),
            "the same on every instance"
        );
        let low = s.iter().filter(|v| **v < 0.5).count();
        assert!(
            (400..600).contains(&low),
            "spread out: {low} of 1000 below one half"
        );
    }

    #[test]
    fn an_absolute_lifetime_is_announced_at_each_lead_once() {
        let t0 = 1_800_000_000;
        let keeper = KeeperSettings {
            absolute_lifetime: true,
            ..KeeperSettings::default()
        };
        let mut k = Keeper::new(&Settings::default(), keeper);
        // Refreshed yesterday, but the login was 24 days ago: lapses in 6 days.
        let rows = [row("A", t0 + 23 * DAY, t0)];
        let (refreshed, events) = sweep(&mut k, at(t0 + 24 * DAY), &rows);
        assert!(refreshed.is_empty(), "refreshing cannot extend it");
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(
            &events[0],
            TokenEvent::LapseAhead { lead, lapses_at, .. }
                if *lead == Duration::from_secs(7 * DAY) && *lapses_at == t0 + 30 * DAY
        ));
        // The next sweep the same day: nothing new. Within a day of the lapse: the 1-day
        // warning, once.
        assert!(sweep(&mut k, at(t0 + 24 * DAY + 3600), &rows).1.is_empty());
        let (_, events) = sweep(&mut k, at(t0 + 29 * DAY + 1), &rows);
        assert!(
            matches!(&events[..], [TokenEvent::LapseAhead { lead, .. }] if *lead == Duration::from_secs(DAY))
        );
        assert!(sweep(&mut k, at(t0 + 29 * DAY + 7200), &rows).1.is_empty());
        // A new login starts over.
        let rows = [row("A", t0 + 29 * DAY + 9000, t0 + 29 * DAY + 9000)];
        assert!(sweep(&mut k, at(t0 + 29 * DAY + 9000), &rows).1.is_empty());
    }

    #[test]
    fn a_failed_page_is_read_again_after_a_minute() {
        let mut k = Keeper::new(&Settings::default(), KeeperSettings::default());
        let now = at(1_800_000_000);
        assert!(matches!(k.poll(now), KeeperAction::List(_)));
        k.handle_page(now, Err(StoreError::Backend("down".into())));
        assert_eq!(k.poll(now), KeeperAction::Wait(Duration::from_secs(60)));
        assert!(matches!(
            k.poll(now + Duration::from_secs(60)),
            KeeperAction::List(_)
        ));
    }
}
