//! Response-body handling shared by every parser: size cap, content-type
//! classification, JSON object decoding, and redacted excerpts for error messages.

use http::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::headers::RetryAfter;
use crate::types::EndpointKind;
use crate::wire::refusal::{MalformedReason, MalformedResponse};

/// What the body helpers raise: a response that does not follow the protocol (boxed, as
/// [`Error::MalformedResponse`](crate::error::Error::MalformedResponse) holds it).
pub(crate) type Malformed = Box<MalformedResponse>;

/// Default cap on response bodies: 1 MiB, as golang/oauth2 does. Transports enforce
/// it while reading; the core checks again so that any driver gets the same answer.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Maximum characters in an error excerpt.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// Member names whose values are never copied into an excerpt.
const SENSITIVE: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "password",
    "client_secret",
    "code_verifier",
    "assertion",
    "token",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    Json,
    Form,
    Other,
}

pub(crate) fn content_type(resp: &Response<Vec<u8>>) -> Option<&str> {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Classifies the body by `Content-Type`, falling back to sniffing when the header is
/// missing or `text/plain` (some servers send JSON as text).
pub(crate) fn format_of(resp: &Response<Vec<u8>>) -> BodyFormat {
    let body_looks_json = || {
        let first = resp.body().iter().find(|b| !b.is_ascii_whitespace());
        first == Some(&b'{')
    };
    match content_type(resp) {
        None => {
            if body_looks_json() {
                BodyFormat::Json
            } else {
                BodyFormat::Other
            }
        }
        Some(ct) => {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
            {
                BodyFormat::Json
            } else if mime == "application/x-www-form-urlencoded" {
                BodyFormat::Form
            } else if mime == "text/plain" && body_looks_json() {
                BodyFormat::Json
            } else {
                BodyFormat::Other
            }
        }
    }
}

pub(crate) fn malformed(
    endpoint: EndpointKind,
    resp: &Response<Vec<u8>>,
    reason: MalformedReason,
) -> Malformed {
    Box::new(MalformedResponse {
        endpoint,
        status: resp.status(),
        reason,
        content_type: content_type(resp).map(|c| crate::text::truncate(c, 100).to_owned()),
        excerpt: redacted_excerpt(resp.body()),
        retry_after: RetryAfter::from_headers(resp.headers()),
    })
}

/// A 3xx is an error of its own: redirects are never followed.
pub(crate) fn reject_redirect(
    endpoint: EndpointKind,
    resp: &Response<Vec<u8>>,
) -> Result<(), Malformed> {
    if !resp.status().is_redirection() {
        return Ok(());
    }
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| crate::text::truncate(l.split(['?', '#']).next().unwrap_or(""), 200).to_owned());
    Err(malformed(
        endpoint,
        resp,
        MalformedReason::Redirect { location },
    ))
}

/// Decodes the body as a JSON object (or a form body, turned into an object of
/// strings). Checks for a redirect, size and emptiness first.
pub(crate) fn object(
    endpoint: EndpointKind,
    resp: &Response<Vec<u8>>,
    max_body: usize,
) -> Result<Map<String, Value>, Malformed> {
    reject_redirect(endpoint, resp)?;
    if resp.body().len() > max_body {
        return Err(malformed(
            endpoint,
            resp,
            MalformedReason::BodyTooLarge { limit: max_body },
        ));
    }
    if resp.body().iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(endpoint, resp, MalformedReason::EmptyBody));
    }
    match format_of(resp) {
        BodyFormat::Json => match serde_json::from_slice::<Value>(resp.body()) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(malformed(
                endpoint,
                resp,
                MalformedReason::InvalidJson {
                    detail: format!("expected an object, found {}", json_type(&other)),
                },
            )),
            Err(e) => Err(malformed(
                endpoint,
                resp,
                MalformedReason::InvalidJson {
                    detail: json_error_detail(&e),
                },
            )),
        },
        BodyFormat::Form => {
            let mut map = Map::new();
            for (k, v) in url::form_urlencoded::parse(resp.body()) {
                map.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            Ok(map)
        }
        BodyFormat::Other => Err(malformed(
            endpoint,
            resp,
            MalformedReason::UnexpectedContentType,
        )),
    }
}

/// serde_json's message without the input echoed (it never echoes, but the
/// category plus position is all we want).
pub(crate) fn json_error_detail(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Is the status a success the endpoint may answer with?
pub(crate) fn is_success(status: StatusCode) -> bool {
    status.is_success()
}

/// A short excerpt of a body for error messages, with the values of sensitive members
/// (JSON `"access_token": "..."` or form `access_token=...`) replaced by `[redacted]`,
/// even when the JSON is truncated. Control characters are dropped.
#[must_use]
pub fn redacted_excerpt(body: &[u8]) -> String {
    // Work on a bounded prefix: the excerpt is short, but a secret may start inside it
    // and end after it, so look a little further than we print.
    let window = &body[..body.len().min(EXCERPT_CHARS * 8)];
    let text = String::from_utf8_lossy(window);
    let redacted = redact(&text);
    let cleaned: String = redacted
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::truncate(&collapsed, EXCERPT_CHARS).to_owned()
}

fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let Some((key_end, value_start, value_end)) = sensitive_at(text, i) {
            out.push_str(&text[i..value_start]);
            out.push_str("[redacted]");
            let _ = key_end;
            i = value_end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// If a sensitive member name starts at byte `i`, returns (end of key, start of value,
/// end of value) in bytes.
fn sensitive_at(text: &str, i: usize) -> Option<(usize, usize, usize)> {
    let rest = &text[i..];
    let (quoted, name_start) = match rest.strip_prefix('"') {
        Some(_) => (true, 1),
        None => (false, 0),
    };
    // A bare key must start at a boundary so `barcode=` is not taken for `code=`.
    if !quoted && i > 0 {
        let prev = text.as_bytes()[i - 1];
        if prev.is_ascii_alphanumeric() || prev == b'_' {
            return None;
        }
    }
    for name in SENSITIVE {
        let after = &rest[name_start..];
        if !after
            .get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let mut j = name_start + name.len();
        if quoted {
            if !rest[j..].starts_with('"') {
                continue;
            }
            j += 1;
            let after_key = rest[j..].trim_start();
            let Some(after_colon) = after_key.strip_prefix(':') else {
                continue;
            };
            let after_colon_trim = after_colon.trim_start();
            let value_start = rest.len() - after_colon_trim.len();
            if let Some(v) = after_colon_trim.strip_prefix('"') {
                let vs = value_start + 1;
                let end = find_string_end(v).map_or(rest.len(), |e| vs + e);
                return Some((i + j, i + vs, i + end));
            }
            // Non-string value: redact up to the next delimiter.
            let end = after_colon_trim
                .find([',', '}', ']'])
                .map_or(rest.len(), |e| value_start + e);
            return Some((i + j, i + value_start, i + end));
        }
        if rest[j..].starts_with('=') {
            let vs = j + 1;
            let end = rest[vs..]
                .find(['&', ' ', '\n'])
                .map_or(rest.len(), |e| vs + e);
            return Some((i + j, i + vs, i + end));
        }
    }
    None
}

fn find_string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (idx, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(idx),
            _ => escaped = false,
        }
    }
    None
}

/// An `application/x-www-form-urlencoded` body that may carry secrets (a code, a
/// refresh token, a password). It is written into one allocation sized for the worst
/// case (every byte percent-encoded), so building it never grows a buffer and leaves a
/// copy of a secret behind in freed memory; the intermediate values are borrowed, not
/// copied.
#[derive(Default)]
pub(crate) struct FormBody<'a> {
    pairs: Vec<(&'static str, std::borrow::Cow<'a, str>)>,
}

impl<'a> FormBody<'a> {
    pub(crate) fn pair(&mut self, name: &'static str, value: impl Into<std::borrow::Cow<'a, str>>) {
        self.pairs.push((name, value.into()));
    }

    /// The worst-case encoded length: three bytes per input byte, plus `=` and `&`.
    fn capacity(&self) -> usize {
        self.pairs
            .iter()
            .map(|(k, v)| 3 * (k.len() + v.len()) + 2)
            .sum()
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.finish_checked().0
    }

    /// The body, and whether its buffer kept the capacity it started with.
    fn finish_checked(self) -> (Vec<u8>, bool) {
        let buffer = String::with_capacity(self.capacity());
        let reserved = buffer.capacity();
        let mut form = url::form_urlencoded::Serializer::new(buffer);
        for (k, v) in &self.pairs {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let kept = body.capacity() == reserved;
        debug_assert!(kept, "the form body never grows");
        (body.into_bytes(), kept)
    }
}

/// A JSON response, for the unit tests of every module.
#[cfg(test)]
pub(crate) fn json_response(status: u16, body: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .expect("a valid test response")
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_body_is_built_in_one_allocation() {
        // Worst-case input: every byte needs percent-encoding.
        let secret = "€ &=+%/\u{1F600}".repeat(40);
        let mut form = FormBody::default();
        form.pair("grant_type", "password");
        form.pair("password", secret.as_str());
        form.pair("scope", String::from("openid fund.read"));
        let (body, kept) = form.finish_checked();
        assert!(kept, "no reallocation left a copy behind");
        let decoded: Vec<(String, String)> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        assert_eq!(decoded[1], ("password".to_owned(), secret));
    }

    use super::*;

    #[test]
    fn excerpt_redacts_json_form_and_truncated_values() {
        let e = redacted_excerpt(
            br#"{"access_token":"SECRETA","token_type":"bearer","refresh_token" : "SECRETB"}"#,
        );
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("token_type"));
        let e = redacted_excerpt(br#"{"access_token":"SECRETC..."#);
        assert!(!e.contains("SECRET"), "{e}");
        let e = redacted_excerpt(b"access_token=SECRETD&token_type=bearer");
        assert!(!e.contains("SECRET"), "{e}");
        let e = redacted_excerpt(b"<html><body>502 Bad Gateway</body></html>");
        assert_eq!(e, "<html><body>502 Bad Gateway</body></html>");
        let e = redacted_excerpt(br#"{"id_token": 12345}"#);
        assert!(!e.contains("12345"), "{e}");
        let e = redacted_excerpt("é\"code\":\"SECRETE\"".as_bytes());
        assert!(!e.contains("SECRET"), "{e}");
    }
}
