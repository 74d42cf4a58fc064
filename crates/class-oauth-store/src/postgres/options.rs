//! How the PostgreSQL store connects: the connection settings (a URL, a key-value string
//! or the application's own `tokio_postgres::Config`), TLS as libpq reads `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey`, the pool's size, the schema, and whether the
//! store applies its migrations.

use std::path::PathBuf;
use std::str::FromStr;

use class_oauth_core::flow::RootCerts;
use percent_encoding::percent_decode_str;

use crate::StoreError;

/// Whether and how the connection to PostgreSQL is encrypted and the server checked:
/// libpq's `sslmode`, with libpq's meanings.
///
/// Managed PostgreSQL services require TLS; use [`SslMode::VerifyFull`] with the
/// service's CA (`sslrootcert`) wherever it is known. `Prefer` and `Require` encrypt
/// without checking who answers (as libpq does), which protects against a passive
/// listener only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP: no TLS at all.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    /// libpq's default, and the default here. (libpq's `allow` reads as this.)
    #[default]
    Prefer,
    /// TLS or no connection. The certificate is not checked unless a root certificate
    /// file is given (`sslrootcert`), in which case this reads as [`Self::VerifyCa`], as
    /// in libpq.
    Require,
    /// TLS, and the server's certificate must chain to a trusted root; its name is not
    /// checked.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Config(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// The certificates a verifying [`SslMode`] trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Roots {
    /// As the transports: the bundled Mozilla roots, or the platform's verifier.
    Certs(RootCerts),
    /// The CA certificates in this PEM file (`sslrootcert=<file>`).
    File(PathBuf),
}

/// Everything the PostgreSQL store needs to connect, built from a connection string
/// ([`Self::from_url`]) or the application's own [`tokio_postgres::Config`]
/// ([`Self::from_config`]), then adjusted with the setters.
///
/// ```
/// use class_oauth_store::postgres::{PostgresOptions, SslMode};
///
/// let options = PostgresOptions::from_url(
///     "postgres://app@db.example.com/class?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
/// )?
/// .pool_size(8)
/// .schema("class_oauth");
/// assert_eq!(options.ssl_mode(), SslMode::VerifyFull);
/// # Ok::<(), class_oauth_store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) roots: Roots,
    /// True when the roots were named (`sslrootcert` or a setter), not defaulted.
    pub(crate) roots_given: bool,
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    pub(crate) pool_size: u32,
    pub(crate) schema: Option<String>,
    pub(crate) apply_migrations: bool,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PostgresOptions")
            .field("config", &self.config)
            .field("ssl_mode", &self.ssl_mode)
            .field("roots", &self.roots)
            .field("client_cert", &self.client_cert)
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("apply_migrations", &self.apply_migrations)
            .finish()
    }
}

/// The TLS parameters libpq knows and `tokio_postgres` does not (or knows only in part).
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl PostgresOptions {
    /// Reads a libpq connection string: a URL (`postgres://user@host:5432/db?sslmode=...`)
    /// or key-value pairs (`host=db user=app sslmode=verify-full`). On top of what
    /// `tokio_postgres` reads, it takes libpq's TLS parameters:
    ///
    /// - `sslmode`: `disable`, `allow` (read as `prefer`), `prefer` (the default),
    ///   `require`, `verify-ca`, `verify-full`;
    /// - `sslrootcert`: a PEM file of the CAs to trust, or `system` for the operating
    ///   system's verifier (which, as in libpq, needs `verify-full` and is its default).
    ///   Without it the verifying modes trust the bundled Mozilla roots, as the HTTP
    ///   transports do (libpq would read `~/.postgresql/root.crt`);
    /// - `sslcert` and `sslkey`: a client certificate chain and its private key (PEM),
    ///   for servers that authenticate clients by certificate.
    ///
    /// Files are read when the store connects.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a string `tokio_postgres` cannot read, an unknown
    /// `sslmode`, `sslrootcert=system` with a weaker mode, or `sslcert` without `sslkey`.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let (rest, tls) = split_tls_params(url)?;
        let config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL connection string: {e}")))?;
        let mut options = Self::from_config(config);
        let mut mode = None;
        let mut cert = None;
        let mut key = None;
        for (name, value) in tls {
            match name.as_str() {
                "sslmode" => mode = Some(value.parse::<SslMode>()?),
                "sslrootcert" if value == "system" => {
                    options = options.root_certs(RootCerts::Platform);
                    mode.get_or_insert(SslMode::VerifyFull);
                }
                "sslrootcert" => options = options.root_cert_file(value),
                "sslcert" => cert = Some(PathBuf::from(value)),
                _ => key = Some(PathBuf::from(value)),
            }
        }
        if let Some(mode) = mode {
            options = options.with_ssl_mode(mode);
        }
        match (cert, key) {
            (Some(cert), Some(key)) => options = options.client_certificate(cert, key),
            (None, None) => {}
            _ => {
                return Err(StoreError::Config(
                    "sslcert and sslkey go together: a client certificate needs its key".into(),
                ));
            }
        }
        options.check()?;
        Ok(options)
    }

    /// Starts from the application's own `tokio_postgres::Config` (hosts, user, password
    /// from its secrets, timeouts). Its `ssl_mode` becomes this [`SslMode`]; the store
    /// adds its session limits to the config's `options` and sets a connect timeout of
    /// 10 s when the config has none.
    #[must_use]
    pub fn from_config(config: tokio_postgres::Config) -> Self {
        let ssl_mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        };
        Self {
            config,
            ssl_mode,
            roots: Roots::Certs(RootCerts::Bundled),
            roots_given: false,
            client_cert: None,
            pool_size: 4,
            schema: None,
            apply_migrations: true,
        }
    }

    /// Sets the TLS mode (see [`SslMode`]).
    #[must_use]
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// The TLS mode the store will connect with.
    #[must_use]
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Trusts the bundled Mozilla roots ([`RootCerts::Bundled`], the default) or the
    /// operating system's verifier ([`RootCerts::Platform`], `verify-full` only) for the
    /// verifying modes.
    #[must_use]
    pub fn root_certs(mut self, roots: RootCerts) -> Self {
        self.roots = Roots::Certs(roots);
        self.roots_given = true;
        self
    }

    /// Trusts only the CA certificates in this PEM file (libpq's `sslrootcert`); with
    /// [`SslMode::Require`] the server's certificate is then checked against it.
    #[must_use]
    pub fn root_cert_file(mut self, pem: impl Into<PathBuf>) -> Self {
        self.roots = Roots::File(pem.into());
        self.roots_given = true;
        self
    }

    /// Presents this client certificate chain and private key (PEM files; libpq's
    /// `sslcert` and `sslkey`) to servers that ask for one.
    #[must_use]
    pub fn client_certificate(
        mut self,
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_cert = Some((chain.into(), key.into()));
        self
    }

    /// The pool's size: at most this many connections (at least 1; default 4).
    #[must_use]
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// Keeps the store's tables in this schema (created when missing) instead of the
    /// first schema of the role's `search_path`: the store's connections set their
    /// `search_path` to it. Lowercase letters, digits and `_`, starting with a letter or
    /// `_`, at most 63 bytes; checked when the store connects.
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// Whether the store applies its migrations when it connects (default: yes, under an
    /// advisory lock, so instances starting together do not race). Off, the store checks
    /// that every migration is recorded and refuses to start otherwise; apply
    /// [`super::PostgresStore::migrations`] with your own tool first.
    #[must_use]
    pub fn apply_migrations(mut self, apply: bool) -> Self {
        self.apply_migrations = apply;
        self
    }

    /// libpq's rule: the platform's verifier is for `verify-full` only.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.roots == Roots::Certs(RootCerts::Platform) && self.ssl_mode != SslMode::VerifyFull {
            return Err(StoreError::Config(format!(
                "sslrootcert=system (the platform's verifier) needs sslmode=verify-full, not {}",
                self.ssl_mode.as_str()
            )));
        }
        if let Some(schema) = &self.schema {
            let ok = !schema.is_empty()
                && schema.len() <= 63
                && schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !schema.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(StoreError::Config(format!(
                    "schema {schema:?}: use lowercase letters, digits and _ (starting with a letter or _), at most 63 bytes"
                )));
            }
        }
        Ok(())
    }
}

/// Splits libpq's TLS parameters out of a connection string, returning the rest (for
/// `tokio_postgres`) and the TLS parameters in their order, decoded.
fn split_tls_params(s: &str) -> Result<(String, Vec<(String, String)>), StoreError> {
    let mut tls = Vec::new();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let Some((base, query)) = s.split_once('?') else {
            return Ok((s.to_owned(), tls));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k)?;
            if TLS_KEYS.contains(&k.as_str()) {
                tls.push((k, decode(v)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    // Key-value form: `key = value` pairs separated by whitespace; a value is a run of
    // non-space characters or single-quoted, with `\` escaping the next character.
    let mut rest = String::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(StoreError::Config(format!(
                "bad PostgreSQL connection string: expected `=` after `{key}`"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(StoreError::Config(
                            "bad PostgreSQL connection string: unterminated quoted value".into(),
                        ));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((rest, tls))
}

fn decode(s: &str) -> Result<String, StoreError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| StoreError::Config("bad PostgreSQL URL: a parameter is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_what_tokio_postgres_reads_and_hand_over_the_tls_parameters() {
        let o = PostgresOptions::from_url(
            "postgres://app:p%40ss@db.example.com:6432/class?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(o.roots, Roots::File("/etc/ca.pem".into()));
        assert_eq!(o.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(o.config.get_application_name(), Some("x"));
        assert_eq!(
            o.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(o.config.get_ports(), &[6432]);
        // tokio_postgres only gets a mode it knows: the verification is ours.
        assert_eq!(
            o.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
    }

    #[test]
    fn key_value_strings_are_read_as_libpq_reads_them() {
        let o = PostgresOptions::from_url(
            r"host=db.example.com user=app password='it\'s a secret' dbname = class sslmode=verify-ca sslcert=/c.pem sslkey='/k.pem'",
        )
        .unwrap();
        assert_eq!(o.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(o.config.get_password(), Some(&b"it's a secret"[..]));
        assert_eq!(o.config.get_dbname(), Some("class"));
        assert_eq!(o.client_cert, Some(("/c.pem".into(), "/k.pem".into())));
    }

    #[test]
    fn defaults_and_refusals_follow_libpq() {
        let o = PostgresOptions::from_url("postgres://localhost/test").unwrap();
        assert_eq!(o.ssl_mode(), SslMode::Prefer);
        assert_eq!(o.roots, Roots::Certs(RootCerts::Bundled));
        // sslrootcert=system means verify-full, and refuses a weaker mode.
        let o = PostgresOptions::from_url("postgres://h/d?sslrootcert=system").unwrap();
        assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
        let e = PostgresOptions::from_url("postgres://h/d?sslrootcert=system&sslmode=require")
            .unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = PostgresOptions::from_url("postgres://h/d?sslmode=verify").unwrap_err();
        assert!(
            e.to_string().contains("sslmode=verify is not one of"),
            "{e}"
        );
        let e = PostgresOptions::from_url("host=h sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslkey"), "{e}");
        let e = PostgresOptions::from_url("host=h password='open").unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        assert_eq!(
            PostgresOptions::from_url("postgres://h/d?sslmode=allow")
                .unwrap()
                .ssl_mode(),
            SslMode::Prefer
        );
        for bad in ["Class", "1st", "a-b", "", "a;drop"] {
            let e = PostgresOptions::from_url("postgres://h/d")
                .unwrap()
                .schema(bad)
                .check();
            assert!(matches!(e, Err(StoreError::Config(_))), "{bad}: {e:?}");
        }
        assert!(
            PostgresOptions::from_url("postgres://h/d")
                .unwrap()
                .schema("tenant_7")
                .check()
                .is_ok()
        );
    }

    #[test]
    fn the_debug_string_keeps_the_password_out() {
        let o = PostgresOptions::from_url("postgres://app:hunter2@h/d").unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
