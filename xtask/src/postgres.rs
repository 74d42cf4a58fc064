//! The tests' PostgreSQL. The token store's tests read `CLASS_OAUTH_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); when nothing answers there,
//! `cargo xtask test` starts a throwaway server of its own for the run (the machine's
//! `initdb` and `pg_ctl`, trust authentication, a free port on loopback, database
//! `test`), points the tests at it, and stops and removes it at the end. Without server
//! binaries it stops at once, naming the package to install.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

#[allow(
    unreachable_pub,
    dead_code,
    reason = "shared with class-oauth-fixtures by path"
)]
#[path = "../../crates/class-oauth-fixtures/src/pg_server.rs"]
mod pg_server;

pub(crate) use pg_server::is_root;

/// Where the tests look when `CLASS_OAUTH_TEST_POSTGRES_URL` is not set.
pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL the tests use: its URL and, when it is a throwaway one, the server
/// (dropped: stopped and removed).
#[derive(Debug)]
pub(crate) struct TestPostgres {
    pub(crate) url: String,
    server: Option<pg_server::PgServer>,
}

impl TestPostgres {
    /// True when this run started its own server.
    pub(crate) fn is_throwaway(&self) -> bool {
        self.server.is_some()
    }
}

/// `url` when a server there lets the tests in; otherwise a throwaway server under
/// `scratch`.
pub(crate) fn for_tests(url: &str, scratch: &Path) -> Result<TestPostgres, String> {
    let why = match usable(url) {
        Ok(()) => {
            return Ok(TestPostgres {
                url: url.to_owned(),
                server: None,
            });
        }
        Err(why) => why,
    };
    let bin = pg_server::bin_dir().map_err(|e| {
        format!("no usable PostgreSQL at {url} ({why}; the token store's tests need one), and {e}")
    })?;
    let dir = scratch.join(format!("postgres-{}", std::process::id()));
    let mut server = pg_server::PgServer::create(dir, |_| Ok(()))?;
    server.hba("local all all trust\nhost all all 127.0.0.1/32 trust\n")?;
    server.start("")?;
    server.psql("CREATE DATABASE test")?;
    eprintln!(
        "xtask: no usable PostgreSQL at {url} ({why}): started a throwaway server ({}) on 127.0.0.1:{} in {}; it is removed when the tests end",
        bin.display(),
        server.port,
        server.dir().display()
    );
    Ok(TestPostgres {
        url: format!("postgres://postgres@127.0.0.1:{}/test", server.port),
        server: Some(server),
    })
}

/// Whether the tests can use the server at `url`: it accepts TCP connections and, where
/// `psql` is at hand, lets the URL's user into its database (a fresh distribution
/// package answers on 5432 but asks for a password, and has no `test` database).
fn usable(url: &str) -> Result<(), String> {
    if !answers(url) {
        return Err("nothing answers there".into());
    }
    let Some(psql) = pg_server::bin_dir()
        .ok()
        .map(|d| d.join("psql"))
        .filter(|p| p.is_file())
    else {
        return Ok(());
    };
    let out = std::process::Command::new(psql)
        .args(["-w", "-X", "-q", "-c", "SELECT 1", url])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        Err(said
            .lines()
            .next()
            .unwrap_or("psql failed")
            .trim()
            .to_owned())
    }
}

/// Whether something accepts TCP connections where `url` points. A string that is not a
/// `postgres://` URL over TCP (key-value form, a Unix socket) is taken as answering: the
/// tests will say if it does not.
fn answers(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return true;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap_or(5432)),
        _ => (hostport, 5432),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "localhost" } else { host };
    if host.starts_with('/') || host.starts_with("%2F") || host.starts_with("%2f") {
        return true;
    }
    (host, port).to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-command path: pointed at a closed port, the test command gets a
    /// throwaway server that answers, and it is gone once dropped. (Needs the server
    /// binaries, as the test command does.)
    #[test]
    fn a_closed_port_gets_a_throwaway_server() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("postgres://postgres@127.0.0.1:{closed}/test");
        assert!(!answers(&url), "nothing listens on {closed}");
        let scratch = std::env::temp_dir().join(format!("xtask-pg-test-{}", std::process::id()));
        let pg = for_tests(&url, &scratch).unwrap_or_else(|e| panic!("{e}"));
        assert!(pg.is_throwaway());
        assert_ne!(pg.url, url);
        assert!(
            answers(&pg.url),
            "the throwaway server answers at {}",
            pg.url
        );
        let server_dir = pg.server.as_ref().unwrap().dir().to_path_buf();
        drop(pg);
        assert!(!server_dir.exists(), "removed when dropped");
        let _ = std::fs::remove_dir_all(&scratch);
    }

    #[test]
    fn what_counts_as_answering() {
        // Not a TCP URL: left to the tests.
        assert!(answers("host=/var/run/postgresql dbname=test"));
        assert!(answers("postgres://%2Fvar%2Frun%2Fpostgresql/test"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        assert!(!answers(&format!(
            "postgresql://u:p@127.0.0.1:{closed}/db?sslmode=disable"
        )));
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let url = format!("postgres://127.0.0.1:{port}");
        assert!(answers(&url));
        // Something listens (and hangs up), but it is not a PostgreSQL that lets the
        // tests in. (Without psql the TCP answer is all there is to go on.)
        std::thread::spawn(move || {
            for conn in open.incoming().take(4) {
                drop(conn);
            }
        });
        let psql = pg_server::bin_dir().is_ok_and(|d| d.join("psql").is_file());
        assert_eq!(usable(&url).is_err(), psql, "{:?}", usable(&url));
    }
}
