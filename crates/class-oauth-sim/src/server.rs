//! The simulated provider and the network between: requests sent, delayed, lost or answered, and one-time refresh tokens rotated at the server.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use class_oauth_core::flow::{TransportError, TransportErrorKind};
use class_oauth_testkit::keys::{TestKey, corrupt_signature, jwks};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::*;

#[derive(Debug)]
pub(super) enum RtState {
    Valid,
    Used { at: u64 },
    Dead,
}

#[derive(Debug)]
pub(super) struct ServerRt {
    pub(super) family: u64,
    pub(super) state: RtState,
    pub(super) issued_at: u64,
}

/// Where the newest refresh token of a grant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Where {
    /// In the store (or at login).
    Stored,
    /// In an answer on its way to a run.
    InFlight { run: u64 },
    /// Delivered to a run that has not finished.
    Delivered { run: u64 },
    /// Its answer was lost.
    AnswerLost,
    /// Its holder crashed.
    Crashed,
}

#[derive(Debug)]
pub(super) struct Family {
    pub(super) tenant: usize,
    pub(super) latest_rt: String,
    pub(super) latest_at: String,
    pub(super) where_: Where,
    pub(super) ended: Option<Ending>,
    pub(super) revoked_by_customer: bool,
    pub(super) revoked_on_reuse: bool,
    /// The grant ended in the store (the loss is counted once).
    pub(super) counted: bool,
    /// The login (ms).
    pub(super) started: u64,
    /// The lead times a keeper announced this grant's lapse at.
    pub(super) announced: Vec<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    Customer,
    Reuse,
}

pub(super) struct Server {
    pub(super) behaviour: Behaviour,
    pub(super) rts: HashMap<String, ServerRt>,
    /// Access tokens issued: family, expiry (ms), withheld (failed validation).
    pub(super) ats: HashMap<String, (u64, u64)>,
    pub(super) families: Vec<Family>,
    pub(super) counter: u64,
    pub(super) keys: Vec<TestKey>,
    pub(super) key_counter: u64,
    /// ID tokens that were sent corrupted: their access tokens must never be served.
    pub(super) withheld: HashSet<String>,
}

impl Server {
    pub(super) fn jwks_body(&self) -> Vec<u8> {
        let refs: Vec<&TestKey> = self.keys.iter().collect();
        serde_json::to_vec(&jwks(&refs)).unwrap_or_default()
    }

    pub(super) fn rotate_key(&mut self) {
        self.key_counter += 1;
        let kid = format!("key-{}", self.key_counter);
        self.keys
            .push(TestKey::ec_p256().with_kid(Some(kid.as_str())));
        if self.keys.len() > 2 {
            self.keys.remove(0);
        }
    }

    pub(super) fn new_family(&mut self, tenant: usize, now: u64) -> (u64, String, String) {
        let family = self.families.len() as u64;
        self.counter += 1;
        let rt = format!("rt-{family}-{}", self.counter);
        let at = format!("at-{family}-{}", self.counter);
        self.rts.insert(
            rt.clone(),
            ServerRt {
                family,
                state: RtState::Valid,
                issued_at: now,
            },
        );
        self.ats
            .insert(at.clone(), (family, now + ACCESS_LIFETIME_S * SEC));
        self.families.push(Family {
            tenant,
            latest_rt: rt.clone(),
            latest_at: at.clone(),
            where_: Where::Stored,
            ended: None,
            revoked_by_customer: false,
            revoked_on_reuse: false,
            counted: false,
            started: now,
            announced: Vec::new(),
        });
        (family, rt, at)
    }

    pub(super) fn revoke_family(&mut self, family: u64) {
        for rt in self.rts.values_mut() {
            if rt.family == family {
                rt.state = RtState::Dead;
            }
        }
        self.ats.retain(|_, (f, _)| *f != family);
    }

    pub(super) fn token_json(at: &str, rt: &str, id_token: Option<String>) -> Vec<u8> {
        let mut body = json!({
            "access_token": at,
            "token_type": "bearer",
            "expires_in": ACCESS_LIFETIME_S,
            "refresh_token": rt,
            "scope": "openid offline_access target:b/SIMBIZ fund.read",
        });
        if let Some(t) = id_token {
            body["id_token"] = json!(t);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

pub(super) fn json_response(status: u16, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json;charset=UTF-8")
        .body(body)
        .unwrap_or_default()
}

pub(super) fn oauth_error(status: u16, code: &str) -> http::Response<Vec<u8>> {
    json_response(
        status,
        serde_json::to_vec(&json!({"error": code, "error_description": "sim"})).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------
// The manager instances.

impl Sim {
    pub(super) fn send(&mut self, run: u64, req: http::Request<Vec<u8>>) {
        self.check_lease(run, "sending a request");
        let send = self.id();
        let path = if req.uri().path().ends_with("jwks") {
            ReqKind::Keys
        } else {
            ReqKind::Token
        };
        if let Some(r) = self.runs.get_mut(&run) {
            r.awaiting = Some(send);
        }
        let lat = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.002) {
                rng.random_range(1_000..40_000)
            } else {
                rng.random_range(5..150)
            }
        };
        let mut fate = Fate {
            to_server: Some(lat(&mut self.rng)),
            back: Some(lat(&mut self.rng)),
            proxy: None,
        };
        match self.rng.random_range(0..10_000) {
            0..20 => {
                // Refused before anything was sent.
                self.report.faults += 1;
                self.note(|| format!("r{run}: connection refused"));
                let e = TransportError::new(TransportErrorKind::Connect, "sim: connection refused");
                return self.at(
                    1,
                    Ev::Answer {
                        run,
                        send,
                        answer: Err(e),
                    },
                );
            }
            20..30 => fate.to_server = None,
            30..40 => fate.back = None,
            40..60 => fate.proxy = Some(Proxy::Unavailable),
            60..70 => fate.proxy = Some(Proxy::RateLimited),
            70..80 => {
                let after = self.chance(0.5);
                fate.proxy = Some(Proxy::Html { after });
            }
            _ => {}
        }
        if fate.to_server.is_none() || fate.back.is_none() || fate.proxy.is_some() {
            self.report.faults += 1;
        }
        // The client gives up at its timeout.
        let total = fate.to_server.unwrap_or(u64::MAX / 4) + fate.back.unwrap_or(u64::MAX / 4);
        if total >= TIMEOUT {
            let e = TransportError::new(TransportErrorKind::Timeout, "sim: timed out");
            self.at(
                TIMEOUT,
                Ev::Answer {
                    run,
                    send,
                    answer: Err(e),
                },
            );
        }
        if let Some(d) = fate.to_server {
            if d < TIMEOUT {
                let body = req.into_body();
                self.at(
                    d,
                    Ev::Arrive {
                        run,
                        send,
                        body,
                        path,
                        fate,
                    },
                );
            }
        }
    }
    pub(super) fn arrive(&mut self, run: u64, send: u64, body: &[u8], path: ReqKind, fate: Fate) {
        let back = fate.back;
        let reply = |sim: &mut Self, resp: http::Response<Vec<u8>>| {
            if let Some(b) = back {
                if let Some(to) = fate.to_server {
                    if to + b < TIMEOUT {
                        sim.at(
                            b,
                            Ev::Answer {
                                run,
                                send,
                                answer: Ok(resp),
                            },
                        );
                    }
                }
            }
        };
        if path == ReqKind::Keys {
            if self.chance(0.02) {
                self.report.faults += 1;
                return reply(self, oauth_error(503, "temporarily_unavailable"));
            }
            let body = self.server.jwks_body();
            return reply(self, json_response(200, body));
        }
        match fate.proxy {
            Some(Proxy::Unavailable) => {
                return reply(self, oauth_error(503, "temporarily_unavailable"));
            }
            Some(Proxy::RateLimited) => {
                let resp = http::Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .body(Vec::new())
                    .unwrap_or_default();
                return reply(self, resp);
            }
            _ => {}
        }
        self.report.refresh_requests += 1;
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let delivered = fate.proxy.is_none()
            && matches!((fate.to_server, back), (Some(to), Some(b)) if to + b < TIMEOUT);
        let resp = self.refresh_at_server(run, &presented, delivered);
        if let Some(Proxy::Html { after: true }) = fate.proxy {
            // The server committed; a proxy page goes back instead.
            if let Some(f) = self.server.rts.get(&presented).map(|r| r.family) {
                let fam = &mut self.server.families[f as usize];
                if matches!(fam.where_, Where::InFlight { run: r } if r == run) {
                    fam.where_ = Where::AnswerLost;
                }
            }
        }
        match fate.proxy {
            Some(Proxy::Html { .. }) => {
                let page = http::Response::builder()
                    .status(502)
                    .header("content-type", "text/html")
                    .body(b"<html><body>502 Bad Gateway</body></html>".to_vec())
                    .unwrap_or_default();
                reply(self, page);
            }
            _ => reply(self, resp),
        }
    }
    /// The server's refresh grant.
    pub(super) fn refresh_at_server(
        &mut self,
        run: u64,
        presented: &str,
        delivered: bool,
    ) -> http::Response<Vec<u8>> {
        let now = self.now;
        let Some(rt) = self.server.rts.get(presented) else {
            return oauth_error(400, "invalid_grant");
        };
        let family = rt.family;
        let issued_at = if self.cfg.absolute_lifetime {
            self.server.families[family as usize].started
        } else {
            rt.issued_at
        };
        let reuse_at = match rt.state {
            RtState::Valid => None,
            RtState::Used { at } => Some(at),
            RtState::Dead => return oauth_error(400, "invalid_grant"),
        };
        if now.saturating_sub(issued_at) > RT_LIFETIME {
            return oauth_error(400, "invalid_grant");
        }
        if let Some(first) = reuse_at {
            // Presented twice: only the in-doubt rule may do that.
            let by_rule = self
                .runs
                .get(&run)
                .is_some_and(|r| r.machine.presents_in_doubt());
            if !by_rule {
                let t = self.server.families[family as usize].tenant;
                self.violate(format!(
                    "t{t}: r{run} presented refresh token {presented} a second time, not by the in-doubt rule"
                ));
            }
            self.report.reuses += 1;
            match self.server.behaviour {
                Behaviour::InvalidGrant => return oauth_error(400, "invalid_grant"),
                Behaviour::RevokeOnReuse => {
                    let fam = &mut self.server.families[family as usize];
                    if fam.ended.is_none() {
                        fam.ended = Some(Ending::Reuse);
                        fam.revoked_on_reuse = true;
                    }
                    self.server.revoke_family(family);
                    return oauth_error(400, "invalid_grant");
                }
                Behaviour::Grace(window) => {
                    if now - first > window.as_millis() as u64 {
                        return oauth_error(400, "invalid_grant");
                    }
                    // The previous successor stops working.
                    let prev = self.server.families[family as usize].latest_rt.clone();
                    if let Some(p) = self.server.rts.get_mut(&prev) {
                        if matches!(p.state, RtState::Valid) {
                            p.state = RtState::Used { at: now };
                        }
                    }
                }
            }
        }
        if let Some(r) = self.server.rts.get_mut(presented) {
            if reuse_at.is_none() {
                r.state = RtState::Used { at: now };
            }
        }
        // Rotate.
        self.server.counter += 1;
        let n = self.server.counter;
        let new_rt = format!("rt-{family}-{n}");
        let new_at = format!("at-{family}-{n}");
        self.server.rts.insert(
            new_rt.clone(),
            ServerRt {
                family,
                state: RtState::Valid,
                issued_at: now,
            },
        );
        self.server
            .ats
            .insert(new_at.clone(), (family, now + ACCESS_LIFETIME_S * SEC));
        self.report.rotations += 1;
        let fam = &mut self.server.families[family as usize];
        fam.latest_rt = new_rt.clone();
        fam.latest_at = new_at.clone();
        fam.where_ = if delivered {
            Where::InFlight { run }
        } else {
            Where::AnswerLost
        };
        let tenant = fam.tenant;
        self.note(|| format!("server t{tenant}: {presented} -> {new_rt}"));
        // Now and then an ID token (signed with the newest key; now and then broken).
        let id_token = if self.chance(0.03) {
            let claims = json!({
                "iss": ISSUER,
                "aud": CLIENT,
                "sub": format!("user-{tenant}"),
                "iat": self.base_secs() + now / SEC,
                "exp": self.base_secs() + now / SEC + 300,
            });
            let key = self.server.keys.last().unwrap_or_else(|| unreachable!());
            let token = key.sign("ES256", &claims, &json!({}));
            if self.chance(0.05) {
                self.server.withheld.insert(new_at.clone());
                Some(corrupt_signature(&token))
            } else {
                Some(token)
            }
        } else {
            None
        };
        json_response(200, Server::token_json(&new_at, &new_rt, id_token))
    }
    pub(super) fn base_secs(&self) -> u64 {
        self.base
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
    pub(super) fn answer(
        &mut self,
        run: u64,
        send: u64,
        answer: Result<http::Response<Vec<u8>>, TransportError>,
    ) {
        let Some((inst, epoch, awaiting)) =
            self.runs.get(&run).map(|r| (r.inst, r.epoch, r.awaiting))
        else {
            return self.lost_answer(run, &answer);
        };
        if awaiting != Some(send) || epoch != self.instances[inst].epoch {
            return;
        }
        let now = self.time(inst);
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        r.awaiting = None;
        let tenant = r.tenant;
        // A rotated token reaches its run.
        if let Ok(resp) = &answer {
            if resp.status() == 200 {
                if let Some(rt) = serde_json::from_slice::<serde_json::Value>(resp.body())
                    .ok()
                    .and_then(|v| v["refresh_token"].as_str().map(str::to_owned))
                {
                    r.unwritten = Some(rt.clone());
                    if let Some(f) = self.tenant_family[tenant] {
                        let fam = &mut self.server.families[f as usize];
                        if fam.latest_rt == rt {
                            fam.where_ = Where::Delivered { run };
                        }
                    }
                }
            }
        }
        self.check_lease(run, "handling the answer");
        let status = match &answer {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => e.kind.as_str().to_owned(),
        };
        self.note(|| format!("r{run}: answer {status}"));
        let Some(r) = self.runs.get_mut(&run) else {
            return;
        };
        match answer {
            Ok(resp) => r.machine.handle_response(now, resp),
            Err(e) => r.machine.handle_transport_failure(now, e),
        }
        self.advance(run);
    }
    /// An answer for a run that no longer exists (its process died): the rotated
    /// token in it is lost.
    pub(super) fn lost_answer(
        &mut self,
        run: u64,
        answer: &Result<http::Response<Vec<u8>>, TransportError>,
    ) {
        if answer.is_ok() {
            for fam in &mut self.server.families {
                if fam.where_ == (Where::InFlight { run }) {
                    fam.where_ = Where::Crashed;
                }
            }
        }
    }
}
