//! Issuing tokens: access and refresh tokens for a grant, and the ID token signed with
//! the emulator's current key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::state::{Grant, State, random};

impl State {
    pub(crate) fn id_token(
        &mut self,
        grant: &Grant,
        nonce: Option<&str>,
        access_token: &str,
    ) -> String {
        let user = self.user(&grant.user).expect("grant user exists");
        let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
        let mut claims = json!({
            "iss": self.issuer, "sub": user.sub, "aud": grant.client_id, "iat": self.now(), "exp": self.now() + self.cfg.id_token_lifetime,
            "auth_time": grant.auth_time, "at_hash": URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]), "amr": ["pwd", "mfa"],
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        if grant.scopes.iter().any(|s| s == "email") {
            claims["email"] = json!(user.username);
            claims["email_verified"] = json!(true);
        }
        let token = self.keys[self.current_key].sign("RS256", &claims, &json!({}));
        if self.corrupt_id_tokens > 0 {
            self.corrupt_id_tokens -= 1;
            // Flip the signature's bytes, as the OpenID conformance suite does.
            let (input, sig) = token.rsplit_once('.').expect("a compact JWS");
            let bytes: Vec<u8> = URL_SAFE_NO_PAD
                .decode(sig)
                .expect("base64url")
                .iter()
                .map(|b| b ^ 0x5A)
                .collect();
            return format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes));
        }
        token
    }

    /// Issues tokens for `grant_index`; the refresh token only with offline_access.
    pub(crate) fn issue(&mut self, grant_index: usize, nonce: Option<&str>) -> Value {
        self.issue_with(grant_index, nonce, true)
    }

    /// Issues tokens; `with_id_token` false leaves the ID token out even with `openid`.
    pub(crate) fn issue_with(
        &mut self,
        grant_index: usize,
        nonce: Option<&str>,
        with_id_token: bool,
    ) -> Value {
        let grant = self.grants[grant_index].clone();
        let at = random();
        self.access.insert(
            at.clone(),
            (grant_index, self.now() + self.cfg.access_token_lifetime + 1),
        );
        let business = self.business(&grant.business).cloned();
        let scope: Vec<String> = grant
            .scopes
            .iter()
            .map(|s| {
                if s == "target:b" || s.starts_with("target:b/") {
                    format!("target:b/{}", grant.business)
                } else {
                    s.clone()
                }
            })
            .collect();
        let mut body = json!({
            "access_token": at,
            "token_type": "bearer",
            "expires_in": if self.cfg.expires_in_as_string { json!(self.cfg.access_token_lifetime.to_string()) } else { json!(self.cfg.access_token_lifetime) },
            "scope": scope.join(" "),
        });
        if let Some(b) = business {
            body["BusinessName"] = json!(b.name);
            body["BusinessCode"] = json!(b.code);
        }
        if grant.scopes.iter().any(|s| s == "offline_access") {
            let rt = random();
            self.refresh.insert(
                rt.clone(),
                (
                    grant_index,
                    true,
                    self.now() + self.cfg.refresh_token_lifetime,
                ),
            );
            body["refresh_token"] = json!(rt);
        }
        if with_id_token && grant.scopes.iter().any(|s| s == "openid") {
            body["id_token"] = json!(self.id_token(
                &grant,
                nonce,
                body["access_token"].as_str().unwrap_or_default()
            ));
        }
        body
    }
}
