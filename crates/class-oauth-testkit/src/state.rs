//! The emulator's state: grants, codes and tokens as issued, faults to inject, the
//! record of requests, the clock (the real one plus what tests advance) and randomness.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use wiremock::Request;

use crate::keys::TestKey;
use crate::{Business, ClientRegistration, EmulatorConfig, Fault, RecordedRequest, User};

#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) user: String,
    pub(crate) business: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) revoked: bool,
    pub(crate) auth_time: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub(crate) grant: Grant,
    pub(crate) redirect_uri: String,
    pub(crate) nonce: Option<String>,
    pub(crate) challenge: Option<String>,
    pub(crate) used: bool,
    pub(crate) expires: u64,
    /// The grant the code was redeemed for, revoked if the code comes back.
    pub(crate) issued: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cfg: EmulatorConfig,
    pub(crate) issuer: String,
    pub(crate) keys: Vec<TestKey>,
    pub(crate) current_key: usize,
    pub(crate) grants: Vec<Grant>,
    pub(crate) codes: HashMap<String, CodeGrant>,
    pub(crate) access: HashMap<String, (usize, u64)>,
    pub(crate) refresh: HashMap<String, (usize, bool, u64)>,
    pub(crate) denial: Option<String>,
    pub(crate) faults: Vec<(String, Fault, usize)>,
    pub(crate) rate: HashMap<String, (u64, u32)>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) corrupt_id_tokens: usize,
    /// Seconds added to the real clock (`ClassEmulator::advance_clock`).
    pub(crate) clock_offset: u64,
    /// When each spent refresh token was spent (for a reuse grace window).
    pub(crate) spent_at: HashMap<String, u64>,
    /// Consent pages shown and not yet answered: ticket -> the authorization request.
    pub(crate) consents: HashMap<String, HashMap<String, String>>,
    /// What the token endpoint did with refresh grants.
    pub(crate) refresh_counts: crate::RefreshCounts,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn random() -> String {
    let mut b = [0u8; 24];
    SystemRandom::new().fill(&mut b).expect("system RNG");
    URL_SAFE_NO_PAD.encode(b)
}

impl State {
    /// The emulator's clock: the real one plus the offset tests advance.
    pub(crate) fn now(&self) -> u64 {
        now() + self.clock_offset
    }

    pub(crate) fn user(&self, username: &str) -> Option<&User> {
        self.cfg.users.iter().find(|u| u.username == username)
    }

    pub(crate) fn business(&self, code: &str) -> Option<&Business> {
        self.cfg.businesses.iter().find(|b| b.code == code)
    }

    pub(crate) fn client_from_basic(&self, req: &Request) -> Option<ClientRegistration> {
        let header = req.headers.get("authorization")?.to_str().ok()?;
        let b64 = header.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(b64).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let (id, secret) = (dec(id), dec(secret));
        self.cfg
            .clients
            .iter()
            .find(|c| c.client_id == id && c.client_secret == secret)
            .cloned()
    }
}
