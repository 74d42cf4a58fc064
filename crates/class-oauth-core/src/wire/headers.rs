//! Parsed response headers that errors carry: `Retry-After` and `WWW-Authenticate`.

use std::time::{Duration, SystemTime};

/// The cap on any wait a `Retry-After` asks for (one hour).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A parsed `Retry-After` (RFC 9110 10.2.3): a delay in seconds or an HTTP date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAfter {
    /// Wait this long.
    Delay(Duration),
    /// Wait until this time.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses the header value; `None` when it is neither form.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Self::Delay(Duration::from_secs(secs)));
        }
        httpdate::parse_http_date(value).ok().map(Self::At)
    }

    /// How long to wait from `now`: the delay, or the time until the date (zero when it
    /// has passed); never more than [`MAX_RETRY_AFTER`].
    #[must_use]
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        let d = match *self {
            Self::Delay(d) => d,
            Self::At(t) => t.duration_since(now).unwrap_or(Duration::ZERO),
        };
        d.min(MAX_RETRY_AFTER)
    }

    /// `; retry after 30s` or `; retry after <HTTP date>`, for error messages.
    pub(crate) fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Delay(d) => write!(f, "; retry after {}s", d.as_secs()),
            Self::At(t) => write!(f, "; retry after {}", httpdate::fmt_http_date(t)),
        }
    }

    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
    }
}

/// A parsed `WWW-Authenticate` challenge (RFC 9110 11.6.1, RFC 6750 3).
///
/// Only the first challenge is parsed; the raw value is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WwwAuthenticate {
    /// The raw header value (truncated to 1 KiB).
    pub raw: String,
    /// The auth scheme (`Bearer`, `Basic`), as sent.
    pub scheme: String,
    /// The auth-params of the first challenge, names lower-cased.
    pub params: Vec<(String, String)>,
}

impl WwwAuthenticate {
    /// Parses a header value. Never fails: unparseable params are skipped.
    #[must_use]
    pub fn parse(value: &str) -> Self {
        let raw = crate::text::truncate(value, 1024).to_owned();
        let s = raw.trim().to_owned();
        let s = s.as_str();
        let (scheme, mut rest) = match s.find(char::is_whitespace) {
            Some(i) => (&s[..i], s[i..].trim_start()),
            None => (s, ""),
        };
        let mut params = Vec::new();
        while !rest.is_empty() {
            let Some(eq) = rest.find('=') else { break };
            let name = rest[..eq]
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(stripped) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = stripped.char_indices();
                let mut end = stripped.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => out.push(c),
                    }
                }
                value = out;
                rest = &stripped[end.min(stripped.len())..];
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                value = rest[..end].trim().to_owned();
                rest = &rest[end..];
            }
            rest = rest.trim_start().trim_start_matches(',').trim_start();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                params.push((name, value));
            }
        }
        Self {
            raw,
            scheme: scheme.to_owned(),
            params,
        }
    }

    /// The value of a parameter (name compared case-insensitively).
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The RFC 6750 `error` parameter (`invalid_token`, `insufficient_scope`, ...).
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        headers
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            RetryAfter::parse("120"),
            Some(RetryAfter::Delay(Duration::from_secs(120)))
        );
        let at = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767);
        assert_eq!(at.delay_from(now), Duration::from_secs(10));
        assert_eq!(RetryAfter::parse("soon"), None);
        // Every wait is capped, whichever form asks for it.
        assert_eq!(
            RetryAfter::parse("99999999").unwrap().delay_from(now),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            RetryAfter::parse("Sat, 06 Nov 2094 08:49:37 GMT")
                .unwrap()
                .delay_from(now),
            MAX_RETRY_AFTER
        );
        assert_eq!(RetryAfter::parse("-1"), None);
    }

    #[test]
    fn www_authenticate_bearer() {
        let w = WwwAuthenticate::parse(
            r#"Bearer realm="class", error="invalid_token", error_description="The access token \"x\" expired""#,
        );
        assert_eq!(w.scheme, "Bearer");
        assert_eq!(w.param("realm"), Some("class"));
        assert_eq!(w.error(), Some("invalid_token"));
        assert_eq!(
            w.param("ERROR_DESCRIPTION"),
            Some("The access token \"x\" expired")
        );
        let basic = WwwAuthenticate::parse("Basic realm=api");
        assert_eq!(basic.scheme, "Basic");
        assert_eq!(basic.param("realm"), Some("api"));
        let junk = WwwAuthenticate::parse("\"=,,=\"");
        assert!(junk.params.len() <= 2);
    }
}
