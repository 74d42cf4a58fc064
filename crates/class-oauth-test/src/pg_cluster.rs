//! A throwaway PostgreSQL cluster that accepts TLS connections only, the way managed
//! services do: its own data directory and port on loopback, a server certificate
//! issued by a fresh private CA for `localhost` only, client certificates checked
//! against the same CA for one role, and no `hostnossl` line in `pg_hba.conf` (a plain
//! connection is refused). Stopped (immediate mode) and removed when dropped.
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl`; Debian's `postgresql`
//! package, found under `/usr/lib/postgresql/*/bin` or `PG_BIN`). Run as root, the
//! cluster runs as the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The role that logs in with a client certificate only (`hostssl ... cert`).
pub const CERT_ROLE: &str = "cert_user";

/// A running TLS-only cluster; see the module docs.
#[derive(Debug)]
pub struct TlsCluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
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

fn pg_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL server binaries: /usr/lib/postgresql: {e} (set PG_BIN)"))?
        .flatten()
        .filter_map(|d| {
            let v = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin (set PG_BIN)".into())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

impl TlsCluster {
    /// Creates and starts the cluster under a fresh directory in the system's temporary
    /// directory (bounded: `pg_ctl` waits at most 60 s for it).
    ///
    /// # Errors
    /// What failed, with the tool's output: no binaries, initdb, the start.
    pub fn start() -> Result<Self, String> {
        let bin = pg_bin()?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "class-oauth-pg-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("certs")).map_err(|e| e.to_string())?;
        let port = free_port();
        let cluster = Self {
            port,
            ca: dir.join("certs/ca.pem"),
            other_ca: dir.join("certs/other-ca.pem"),
            client_cert: dir.join("certs/client.pem"),
            client_key: dir.join("certs/client.key"),
            dir,
            bin,
            as_postgres,
        };
        cluster.write_certificates()?;
        let data = cluster.dir.join("data");
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir))?;
        }
        run(cluster
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-D",
            ])
            .arg(&data))?;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\nhostssl all {CERT_ROLE} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let certs = cluster.dir.join("certs");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} -c ssl=on -c ssl_cert_file={c}/server.pem -c ssl_key_file={c}/server.key -c ssl_ca_file={c}/ca.pem -c fsync=off -c max_connections=40",
            sock = cluster.dir.display(),
            c = certs.display(),
        );
        run(cluster
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.join("log"))
            .args(["-o", &options, "start"]))
        .map_err(|e| {
            let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })?;
        // The role that authenticates by certificate.
        run(cluster.command("psql").args([
            "-h",
            &cluster.dir.display().to_string(),
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE ROLE {CERT_ROLE} LOGIN SUPERUSER"),
        ]))?;
        Ok(cluster)
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
        &self.dir
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn write_certificates(&self) -> Result<(), String> {
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
        let certs = self.dir.join("certs");
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
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
