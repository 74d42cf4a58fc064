//! The endpoints the emulator serves, routed by method and path: discovery and the key
//! set, authorize (with the consent page), token, UserInfo, revocation and the Class API.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wiremock::Request;

use crate::keys::TestKey;
use crate::reply::{Reply, append_query, json_response, oauth_error, redirect};
use crate::state::{CodeGrant, Grant, State, random};
use crate::{RefreshTokenMode, User, consent};

pub(crate) fn scope_list(scope: Option<&String>) -> Vec<String> {
    scope
        .map(|s| {
            s.split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The business a consent covers: `target:b` picks the user's first business,
/// `target:b/<CODE>` must be one of theirs; no target means their first.
pub(crate) fn pick_business(user: &User, scopes: &[String]) -> Option<String> {
    match scopes.iter().find(|s| s.starts_with("target:")) {
        Some(t) if t == "target:b" => user.businesses.first().cloned(),
        Some(t) => t
            .strip_prefix("target:b/")
            .filter(|c| user.businesses.iter().any(|b| b == c))
            .map(str::to_owned),
        None => user.businesses.first().cloned(),
    }
}

impl State {
    pub(crate) fn endpoints(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/connect/authorize"),
            "token_endpoint": format!("{i}/connect/token"),
            "userinfo_endpoint": format!("{i}/connect/userinfo"),
            "revocation_endpoint": format!("{i}/connect/revocation"),
            "jwks_uri": format!("{i}/.well-known/openid-configuration/jwks"),
            "scopes_supported": ["openid", "profile", "email", "address", "phone", "class_profile", "offline_access"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }
}

impl State {
    /// `/connect/authorize`; `answer` is the consent page's (`None`: not shown yet).
    pub(crate) fn authorize(
        &mut self,
        q: &HashMap<String, String>,
        answer: Option<consent::Answer>,
    ) -> Reply {
        let Some(client) = q
            .get("client_id")
            .and_then(|id| self.cfg.clients.iter().find(|c| &c.client_id == id))
            .cloned()
        else {
            return Reply::new(400)
                .header("content-type", "text/html")
                .body("<html><body>Unknown client</body></html>");
        };
        let Some(redirect_uri) = q
            .get("redirect_uri")
            .filter(|r| client.redirect_uris.contains(r))
            .cloned()
        else {
            // RFC 6749 4.1.2.1: never redirect to an unregistered URI.
            return Reply::new(400).header("content-type", "text/html").body(
                "<html><body>The redirect_uri is not registered for this client</body></html>",
            );
        };
        let state = q.get("state").cloned().unwrap_or_default();
        let iss = self.issuer.clone();
        let fail = |code: &str| {
            redirect(&append_query(
                &redirect_uri,
                &[
                    ("error", code),
                    ("error_description", "Class emulator"),
                    ("state", &state),
                    ("iss", &iss),
                ],
            ))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type");
        }
        for unsupported in ["request", "request_uri", "registration"] {
            if q.contains_key(unsupported) {
                return fail(&format!("{unsupported}_not_supported"));
            }
        }
        if let Some(code) = self.denial.take() {
            return fail(&code);
        }
        let prompt = q.get("prompt").cloned().unwrap_or_default();
        let Some(user) = self
            .cfg
            .session_user
            .clone()
            .and_then(|u| self.user(&u).cloned())
        else {
            return fail(if prompt == "none" {
                "login_required"
            } else {
                "access_denied"
            });
        };
        let scopes = scope_list(q.get("scope"));
        let Some(mut business) = pick_business(&user, &scopes) else {
            return fail("access_denied");
        };
        if scopes.iter().any(|s| s == "class_profile") && !scopes.iter().any(|s| s == "openid") {
            return fail("invalid_scope");
        }
        match answer {
            None if self.cfg.consent_page => {
                return self.consent_page(q, &user, &client.client_id, &scopes, &business);
            }
            None => {}
            Some(consent::Answer::Deny) => return fail("access_denied"),
            Some(consent::Answer::Allow { picked: None }) => {}
            // The user picks among their own businesses, for `target:b` only.
            Some(consent::Answer::Allow {
                picked: Some(picked),
            }) => {
                if !scopes.iter().any(|s| s == "target:b") || !user.businesses.contains(&picked) {
                    return fail("access_denied");
                }
                business = picked;
            }
        }
        let grant = Grant {
            client_id: client.client_id,
            user: user.username,
            business,
            scopes,
            revoked: false,
            auth_time: self.now(),
        };
        let code = random();
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            (Some(_), _) => return fail("invalid_request"),
            _ => None,
        };
        self.codes.insert(
            code.clone(),
            CodeGrant {
                grant,
                redirect_uri: redirect_uri.clone(),
                nonce: q.get("nonce").cloned(),
                challenge,
                used: false,
                expires: self.now() + 300,
                issued: None,
            },
        );
        if q.get("response_mode").map(String::as_str) == Some("form_post") {
            let html = format!(
                "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{redirect_uri}\"><input type=\"hidden\" name=\"code\" value=\"{code}\"/><input type=\"hidden\" name=\"state\" value=\"{state}\"/><input type=\"hidden\" name=\"iss\" value=\"{iss}\"/></form></body></html>"
            );
            return Reply::new(200)
                .header("content-type", "text/html")
                .body(html);
        }
        redirect(&append_query(
            &redirect_uri,
            &[("code", &code), ("state", &state), ("iss", &iss)],
        ))
    }

    pub(crate) fn token(&mut self, req: &Request) -> Reply {
        let Some(client) = self.client_from_basic(req) else {
            return oauth_error(400, "invalid_client", "Client authentication failed");
        };
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let now = self.now();
                let Some(c) = self.codes.get_mut(&code) else {
                    return oauth_error(400, "invalid_grant", "unknown code");
                };
                if c.used || c.expires < now {
                    // A reused code revokes what it issued (RFC 6749 4.1.2, RFC 9700
                    // 4.5): someone else holds the code, so the tokens are suspect.
                    c.used = true;
                    if let Some(gi) = c.issued {
                        self.grants[gi].revoked = true;
                    }
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "the code was already used or expired",
                    );
                }
                c.used = true;
                let c = c.clone();
                if c.grant.client_id != client.client_id
                    || form.get("redirect_uri") != Some(&c.redirect_uri)
                {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "redirect_uri or client does not match the authorization request",
                    );
                }
                if let Some(challenge) = &c.challenge {
                    let ok = form.get("code_verifier").is_some_and(|v| {
                        URL_SAFE_NO_PAD
                            .encode(ring::digest::digest(&ring::digest::SHA256, v.as_bytes()))
                            == *challenge
                    });
                    if !ok {
                        return oauth_error(400, "invalid_grant", "PKCE verification failed");
                    }
                }
                self.grants.push(c.grant);
                let gi = self.grants.len() - 1;
                if let Some(record) = self.codes.get_mut(&code) {
                    record.issued = Some(gi);
                }
                let body = self.issue(gi, c.nonce.as_deref());
                json_response(200, &body)
            }
            Some("password") => {
                let (u, p) = (
                    form.get("username").cloned().unwrap_or_default(),
                    form.get("password").cloned().unwrap_or_default(),
                );
                let Some(user) = self.user(&u).filter(|x| x.password == p).cloned() else {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "The user name or password is incorrect.",
                    );
                };
                let scopes = scope_list(form.get("scope"));
                let Some(business) = pick_business(&user, &scopes) else {
                    return oauth_error(
                        400,
                        "invalid_scope",
                        "the user has no access to that business",
                    );
                };
                self.grants.push(Grant {
                    client_id: client.client_id,
                    user: user.username,
                    business,
                    scopes,
                    revoked: false,
                    auth_time: self.now(),
                });
                let body = self.issue(self.grants.len() - 1, None);
                json_response(200, &body)
            }
            Some("refresh_token") => {
                self.refresh_counts.refreshes += 1;
                let rt = form.get("refresh_token").cloned().unwrap_or_default();
                let Some(&(gi, current, expires)) = self.refresh.get(&rt) else {
                    return self.invalid_grant();
                };
                if self.grants[gi].revoked
                    || expires < self.now()
                    || self.grants[gi].client_id != client.client_id
                {
                    return self.invalid_grant();
                }
                if !current {
                    let within_grace = match self.cfg.refresh_token_mode {
                        RefreshTokenMode::ReusableWithin(window) => self
                            .spent_at
                            .get(&rt)
                            .is_some_and(|&at| self.now() <= at + window.as_secs()),
                        _ => false,
                    };
                    if !within_grace {
                        // Reuse of a spent refresh token: revoke the grant.
                        self.grants[gi].revoked = true;
                        self.refresh_counts.reuse_detected += 1;
                        return self.invalid_grant();
                    }
                }
                if let Some(narrow) = form.get("scope") {
                    let granted = &self.grants[gi].scopes;
                    let business = self.grants[gi].business.clone();
                    let ok = narrow.split(' ').all(|s| {
                        granted.iter().any(|g| g == s) || s == format!("target:b/{business}")
                    });
                    if !ok {
                        return oauth_error(
                            400,
                            "invalid_scope",
                            "the scope must be the same as or a subset of the granted scope",
                        );
                    }
                }
                if current {
                    let now = self.now();
                    self.spent_at.insert(rt.clone(), now);
                }
                self.refresh.insert(rt, (gi, false, expires));
                let body = self.issue_with(gi, None, self.cfg.id_token_on_refresh);
                json_response(200, &body)
            }
            _ => oauth_error(400, "unsupported_grant_type", "unsupported grant_type"),
        }
    }

    /// A refresh refused with `invalid_grant`, counted.
    fn invalid_grant(&mut self) -> Reply {
        self.refresh_counts.invalid_grants += 1;
        oauth_error(400, "invalid_grant", "Invalid Grant")
    }

    pub(crate) fn bearer(&self, req: &Request) -> Option<usize> {
        let header = req.headers.get("authorization")?.to_str().ok()?;
        let token = header.strip_prefix("Bearer ")?;
        let (gi, expires) = *self.access.get(token)?;
        (expires >= self.now() && !self.grants[gi].revoked).then_some(gi)
    }

    pub(crate) fn userinfo(&self, req: &Request) -> Reply {
        let Some(gi) = self.bearer(req) else {
            return Reply::new(401).header("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"The access token is invalid or expired\"");
        };
        let g = &self.grants[gi];
        if !g.scopes.iter().any(|s| s == "openid") {
            return Reply::new(403).header(
                "www-authenticate",
                "Bearer error=\"insufficient_scope\", scope=\"openid\"",
            );
        }
        let user = self.user(&g.user).expect("user");
        let mut claims = json!({"sub": user.sub});
        let has = |s: &str| g.scopes.iter().any(|x| x == s);
        if has("profile") {
            claims["name"] = json!(format!("{} {}", user.given_name, user.family_name));
            claims["given_name"] = json!(user.given_name);
            claims["family_name"] = json!(user.family_name);
        }
        if has("email") {
            claims["email"] = json!(user.username);
        }
        if has("class_profile") {
            let b = self.business(&g.business);
            claims["business_code"] = json!(g.business);
            claims["business_name"] = json!(b.map(|b| b.name.clone()));
            claims["class_role"] = json!(user.roles.join(", "));
        }
        json_response(200, &claims)
    }

    pub(crate) fn api(&mut self, req: &Request, business: &str) -> Reply {
        let envelope = |status: u16, code: &str, message: &str| {
            json_response(
                status,
                &json!({"Errors": [{"Code": code, "Message": message}], "Data": null}),
            )
        };
        let Some(gi) = self.bearer(req) else {
            return envelope(401, "API_NOT_AUTHORISED", "Not authorised");
        };
        let client_id = self.grants[gi].client_id.clone();
        let now = self.now();
        let minute = now / 60;
        let entry = self.rate.entry(client_id).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        let remaining = self.cfg.rate_limit.saturating_sub(entry.1);
        let reset = 60 - now % 60;
        if entry.1 > self.cfg.rate_limit {
            return Reply::new(429)
                .header("x-ratelimit-1min-remaining", "0")
                .header("x-ratelimit-resetafter", &reset.to_string());
        }
        let g = &self.grants[gi];
        let allowed = g
            .scopes
            .iter()
            .any(|s| s == "business.fund.list" || s == "fund.read" || s == "fund.maintain");
        let response = if !allowed {
            envelope(401, "API_NOT_AUTHORISED", "Not authorised")
        } else if g.business != business {
            envelope(
                404,
                "API_NOT_FOUND",
                "Resource not available or user does not have access to the fund.",
            )
        } else {
            json_response(
                200,
                &json!({"Errors": [], "Data": {"Funds": [
                    {"Code": "SMSF01", "Name": "Sample Family Super Fund", "Status": "Active", "Abn": "12345678901"},
                    {"Code": "SMSF02", "Name": "Retirement Pension Fund", "Status": "Active", "Abn": "98765432109"}
                ]}}),
            )
        };
        response
            .header("x-ratelimit-1min-remaining", &remaining.to_string())
            .header("x-ratelimit-resetafter", &reset.to_string())
    }

    pub(crate) fn route(&mut self, req: &Request) -> Reply {
        let path = req.url.path().to_owned();
        let method = req.method.as_str().to_owned();
        let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        match (method.as_str(), path.as_str()) {
            ("GET", "/.well-known/openid-configuration") if self.cfg.discovery => {
                json_response(200, &self.endpoints())
            }
            ("GET", "/.well-known/openid-configuration/jwks") => {
                let public: Vec<Value> = self.keys.iter().map(TestKey::jwk).collect();
                json_response(200, &json!({"keys": public}))
            }
            ("GET", "/connect/authorize") => self.authorize(&query, None),
            ("POST", consent::PATH) => self.consent(req),
            ("POST", "/connect/token") => self.token(req),
            ("GET" | "POST", "/connect/userinfo" | "/api/1.0/u/connect/userinfo") => {
                self.userinfo(req)
            }
            ("POST", "/connect/revocation") => {
                if self.client_from_basic(req).is_none() {
                    return oauth_error(401, "invalid_client", "Client authentication failed");
                }
                let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
                let token = form.get("token").cloned().unwrap_or_default();
                if let Some(&(gi, _, _)) = self.refresh.get(&token) {
                    self.grants[gi].revoked = true;
                }
                if let Some(&(gi, _)) = self.access.get(&token) {
                    self.access.remove(&token);
                    let _ = gi;
                }
                Reply::new(200)
            }
            ("GET", p) if p.starts_with("/api/1.0/b/") && p.ends_with("/fund/list") => {
                let business = p
                    .trim_start_matches("/api/1.0/b/")
                    .trim_end_matches("/fund/list")
                    .to_owned();
                self.api(req, &business)
            }
            _ => Reply::new(404)
                .header("content-type", "text/html")
                .body("<html><body>Not Found</body></html>"),
        }
    }
}
