//! What a run simulates: the provider's behaviour and the configuration.

use std::fmt;
use std::time::Duration;

use class_oauth_manager::InDoubtRule;
use class_oauth_manager::machine::Mutation;

/// How the provider answers a refresh token presented a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// `400 invalid_grant` (Class's documented behaviour).
    InvalidGrant,
    /// `400 invalid_grant`, and the whole grant is revoked (its access tokens too).
    RevokeOnReuse,
    /// Within this window after its first use, the old token still works (a new pair
    /// is issued and the previous successor invalidated); after it, `invalid_grant`.
    Grace(Duration),
}

impl Behaviour {
    /// The three behaviours the figures are given for.
    pub const ALL: [Self; 3] = [
        Self::InvalidGrant,
        Self::RevokeOnReuse,
        Self::Grace(Duration::from_secs(60)),
    ];

    /// Parses `invalid-grant`, `revoke` or `grace`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invalid-grant" => Some(Self::InvalidGrant),
            "revoke" => Some(Self::RevokeOnReuse),
            "grace" => Some(Self::Grace(Duration::from_secs(60))),
            _ => None,
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidGrant => f.write_str("invalid-grant"),
            Self::RevokeOnReuse => f.write_str("revoke"),
            Self::Grace(_) => f.write_str("grace"),
        }
    }
}

/// One simulation's set-up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Simulated days.
    pub days: u64,
    /// Tenants (businesses), each with its own grant.
    pub tenants: usize,
    /// Manager instances sharing the store.
    pub instances: usize,
    /// The provider's answer to reuse.
    pub behaviour: Behaviour,
    /// The in-doubt rule under test.
    pub rule: InDoubtRule,
    /// A deliberate bug (the proof that the simulator finds bugs).
    pub mutation: Mutation,
    /// A lease shorter than the transport's timeout (the fourth deliberate bug).
    pub short_lease: bool,
    /// Keep a trace of the last events (for a failing seed).
    pub trace: bool,
    /// Every instance runs the keeper ([`class_oauth_manager::keeper`]) with its default
    /// settings: idle grants are refreshed before their refresh token lapses.
    pub keeper: bool,
    /// Refresh tokens lapse 30 days after the login, whatever the refreshes (an absolute
    /// lifetime; the keeper, told so, announces each lapse instead of refreshing).
    pub absolute_lifetime: bool,
}

impl Config {
    /// Ten tenants on three instances for `days`, Class's documented behaviour, the
    /// manager's default in-doubt rule, no mutation.
    #[must_use]
    pub fn new(days: u64) -> Self {
        Self {
            days,
            tenants: 10,
            instances: 3,
            behaviour: Behaviour::InvalidGrant,
            rule: InDoubtRule::default(),
            mutation: Mutation::None,
            short_lease: false,
            trace: false,
            keeper: false,
            absolute_lifetime: false,
        }
    }
}
