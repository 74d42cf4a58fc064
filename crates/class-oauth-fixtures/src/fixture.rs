//! The conformance corpus as values: one `Fixture` per JSON file under `fixtures/`, the
//! canned responses and ID tokens it describes, and the loader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{CLIENT_ID, CLIENT_SECRET, NOW_UNIX, harness_nonce, jwt};

/// One conformance case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// What the case shows.
    pub description: String,
    /// The spec section or Class behaviour it comes from.
    #[serde(default)]
    pub spec: Option<String>,
    /// The operation.
    pub operation: String,
    /// Operation parameters.
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Client settings: `public` (no secret), `pkce` (default true), endpoint paths.
    #[serde(default)]
    pub client: Map<String, Value>,
    /// The request the library must send; `null` when it must send none.
    #[serde(default)]
    pub expect_request: Option<ExpectRequest>,
    /// The canned response.
    #[serde(default)]
    pub response: Option<CannedResponse>,
    /// The expected outcome: `{"ok": {...}}` or `{"error": {...}}`.
    pub expect: Value,
    /// Faults only a real transport can show (`"timeout"`, `"reset"`); the in-memory
    /// core replay skips these cases.
    #[serde(default)]
    pub transport_fault: Option<String>,
    /// Responses for other paths (the key set, say), keyed by path.
    #[serde(default)]
    pub other_responses: BTreeMap<String, CannedResponse>,
    /// How many requests the library must send in all (default: 1 with
    /// `expect_request`, else 0). After a rejection, no follow-up request may be made.
    #[serde(default)]
    pub expect_request_count: Option<usize>,
}

/// An ID token the harness signs at run time (its `iss` depends on the server address).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdTokenSpec {
    /// Signing key: `a`, `b` (RSA) or `ec`.
    #[serde(default)]
    pub key: Option<String>,
    /// `RS256` (default), `PS256`, `ES256`, `HS256` (client secret) or `none`.
    #[serde(default)]
    pub alg: Option<String>,
    /// Omit the `kid` header.
    #[serde(default)]
    pub no_kid: bool,
    /// Extra header members.
    #[serde(default)]
    pub header: Value,
    /// Claims; `{issuer}`, `{client_id}`, `{now}` and `{nonce}` are substituted, and
    /// `null` removes a default claim.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// XOR every signature byte with 0x5A.
    #[serde(default)]
    pub corrupt_signature: bool,
}

/// What the outgoing request must look like.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRequest {
    /// HTTP method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// Headers that must be present with these exact values (names lower-case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that must be absent.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// Form fields that must be present with these exact values.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Form fields that must be absent.
    #[serde(default)]
    pub form_absent: Vec<String>,
}

/// The canned response.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (serialised compactly; `{issuer}` in strings is substituted).
    #[serde(default)]
    pub json: Option<Value>,
    /// A text body (`{issuer}` substituted).
    #[serde(default)]
    pub body: Option<String>,
    /// Repeat `body` this many times (oversized bodies).
    #[serde(default)]
    pub repeat: Option<usize>,
    /// Delay before answering, in milliseconds (transports only).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// An ID token to sign and add to the JSON body as `id_token`.
    #[serde(default)]
    pub id_token: Option<IdTokenSpec>,
    /// Serve a key set with these test keys (`a`, `b`, `ec`) as the JSON body.
    #[serde(default)]
    pub jwks: Option<Vec<String>>,
}

fn test_key(name: &str) -> jwt::TestKey {
    match name {
        "b" => jwt::TestKey::rsa_b(),
        "ec" => ec_key(),
        _ => jwt::TestKey::rsa_a(),
    }
}

/// One P-256 key per process, so a key set and the tokens it verifies agree.
fn ec_key() -> jwt::TestKey {
    static PK8: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    jwt::TestKey::ec_from_pkcs8(PK8.get_or_init(jwt::TestKey::ec_pkcs8))
}

impl IdTokenSpec {
    /// Signs the token for `issuer`. The nonce placeholder takes the harness's
    /// deterministic nonce.
    #[must_use]
    pub fn sign(&self, issuer: &str, nonce: Option<&str>) -> String {
        let mut claims = json!({"iss": issuer, "sub": "user-123", "aud": CLIENT_ID, "exp": NOW_UNIX + 300, "iat": NOW_UNIX - 10});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let text = |s: &str| {
            s.replace("{issuer}", issuer)
                .replace("{client_id}", CLIENT_ID)
                .replace("{nonce}", nonce.unwrap_or(""))
        };
        for (k, v) in &self.claims {
            let v = match v {
                Value::String(s) => {
                    let s = text(s);
                    match s.parse::<u64>() {
                        Ok(n) if s.starts_with(char::is_numeric) && k != "sub" && k != "nonce" => {
                            json!(n)
                        }
                        _ => json!(s),
                    }
                }
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.clone(), |s| json!(text(s))))
                        .collect(),
                ),
                other => other.clone(),
            };
            if v.is_null() {
                claims.as_object_mut().expect("object").remove(k);
            } else {
                claims[k] = v;
            }
        }
        let alg = self.alg.as_deref().unwrap_or("RS256");
        let token = match alg {
            "none" => jwt::unsigned(&claims),
            "HS256" => jwt::sign_hs256(CLIENT_SECRET.as_bytes(), &claims),
            _ => {
                let mut key = test_key(self.key.as_deref().unwrap_or("a"));
                if self.no_kid {
                    key = key.with_kid(None);
                }
                key.sign(alg, &claims, &self.header)
            }
        };
        if self.corrupt_signature {
            jwt::corrupt_signature(&token)
        } else {
            token
        }
    }
}

impl CannedResponse {
    /// The body bytes with `{issuer}` replaced (and any ID token or key set added).
    #[must_use]
    pub fn body_bytes(&self, issuer: &str) -> Vec<u8> {
        let text = match (&self.json, &self.body) {
            (Some(v), _) => {
                let mut v = v.clone();
                if let Some(spec) = &self.id_token {
                    v["id_token"] = json!(spec.sign(issuer, Some(&harness_nonce())));
                }
                serde_json::to_string(&v).expect("JSON values serialise")
            }
            (None, Some(b)) => b.clone(),
            (None, None) => match &self.jwks {
                Some(names) => {
                    let keys: Vec<jwt::TestKey> = names.iter().map(|n| test_key(n)).collect();
                    jwt::jwks(&keys.iter().collect::<Vec<_>>()).to_string()
                }
                None => String::new(),
            },
        };
        let text = text.replace("{issuer}", issuer);
        match self.repeat {
            Some(n) => text.repeat(n).into_bytes(),
            None => text.into_bytes(),
        }
    }

    /// As an `http::Response`.
    #[must_use]
    pub fn to_http(&self, issuer: &str) -> http::Response<Vec<u8>> {
        let mut b = http::Response::builder().status(self.status);
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.replace("{issuer}", issuer));
        }
        b.body(self.body_bytes(issuer))
            .expect("fixture responses are valid")
    }
}

/// The repository's `fixtures/` directory.
#[must_use]
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Every fixture, sorted by name (`area/file` without `.json`).
///
/// # Panics
/// When a file does not parse: a broken fixture is a test failure.
#[must_use]
pub fn load_all() -> Vec<(String, Fixture)> {
    let root = fixtures_dir();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("readable dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).expect("readable fixture");
                let fixture: Fixture = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = path
                    .strip_prefix(&root)
                    .expect("under root")
                    .with_extension("");
                out.push((name.to_string_lossy().replace('\\', "/"), fixture));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
