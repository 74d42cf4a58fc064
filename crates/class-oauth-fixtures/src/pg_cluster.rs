//! A throwaway PostgreSQL cluster that accepts TLS connections only, the way managed
//! services do: its own data directory and port on loopback, a server certificate
//! issued by a fresh private CA for `localhost` only, client certificates checked
//! against the same CA for one role, and no `hostnossl` line in `pg_hba.conf` (a plain
//! connection is refused). Stopped (immediate mode) and removed when dropped.
//!
//! Built on [`crate::pg_server::PgServer`] (which finds the server binaries and runs
//! them as `postgres` under root).

use std::path::{Path, PathBuf};

use crate::pg_server::PgServer;

/// The role that logs in with a client certificate only (`hostssl ... cert`).
pub const CERT_ROLE: &str = "cert_user";

/// A running TLS-only cluster; see the module docs.
#[derive(Debug)]
pub struct TlsCluster {
    server: PgServer,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The PEM file of the CA that issued the server's and the client's certificates.
    pub ca: PathBuf,
    /// The PEM file of another CA, which issued nothing this server presents.
    pub other_ca: PathBuf,
    /// The client certificate (PEM) for [`CERT_ROLE`], and its key.
    pub client_cert: PathBuf,
    /// The client certificate's private key (PEM).
    pub client_key: PathBuf,
}

impl TlsCluster {
    /// Creates and starts the cluster under a fresh directory in the system's temporary
    /// directory (bounded: `pg_ctl` waits at most 60 s for it).
    ///
    /// # Errors
    /// What failed, with the tool's output: no binaries, initdb, the start.
    pub fn start() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "class-oauth-pg-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut server = PgServer::create(dir, |dir| write_certificates(&dir.join("certs")))?;
        server.hba(&format!(
            "local all all trust\nhostssl all {CERT_ROLE} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n"
        ))?;
        let certs = server.dir().join("certs");
        server.start(&format!(
            "-c ssl=on -c ssl_cert_file={c}/server.pem -c ssl_key_file={c}/server.key -c ssl_ca_file={c}/ca.pem",
            c = certs.display(),
        ))?;
        // The role that authenticates by certificate.
        server.psql(&format!("CREATE ROLE {CERT_ROLE} LOGIN SUPERUSER"))?;
        Ok(Self {
            port: server.port,
            ca: certs.join("ca.pem"),
            other_ca: certs.join("other-ca.pem"),
            client_cert: certs.join("client.pem"),
            client_key: certs.join("client.key"),
            server,
        })
    }

    /// A libpq URL for `user` on this cluster over TCP at `host` (`localhost` or
    /// `127.0.0.1`), database `postgres`, with `params` (`sslmode=...&...`).
    #[must_use]
    pub fn url(&self, user: &str, host: &str, params: &str) -> String {
        format!("postgres://{user}@{host}:{}/postgres?{params}", self.port)
    }

    /// The directory of the cluster's Unix socket (no TLS there): for set-up and checks.
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        self.server.dir()
    }
}

/// The CAs and certificates, written into `certs` (0600).
fn write_certificates(certs: &Path) -> Result<(), String> {
    std::fs::create_dir_all(certs).map_err(|e| e.to_string())?;
    let e = |e: rcgen::Error| e.to_string();
    let ca_issuer =
        |name: &str| -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().map_err(e)?)
                .map_err(e)
        };
    let ca = ca_issuer("class-oauth throwaway PostgreSQL CA")?;
    let other = ca_issuer("class-oauth unrelated CA")?;
    // The server's certificate names localhost only (not 127.0.0.1): verify-full
    // to 127.0.0.1 must fail where verify-ca passes.
    let server_key = rcgen::KeyPair::generate().map_err(e)?;
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(e)?
        .signed_by(&server_key, &ca)
        .map_err(e)?;
    let client_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, CERT_ROLE);
    let client = client.signed_by(&client_key, &ca).map_err(e)?;
    let write = |name: &str, pem: String| {
        let path = certs.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| e.to_string())
    };
    write("ca.pem", ca.pem())?;
    write("other-ca.pem", other.pem())?;
    write("server.pem", server.pem())?;
    write("server.key", server_key.serialize_pem())?;
    write("client.pem", client.pem())?;
    write("client.key", client_key.serialize_pem())?;
    Ok(())
}
