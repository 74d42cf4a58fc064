//! The PostgreSQL store against a throwaway cluster that, like a managed service,
//! accepts TLS connections only (`class_oauth_fixtures::pg_cluster`): each `sslmode` with
//! libpq's meaning, the private CA trusted or not, the certificate's name checked or
//! not, a client certificate, and the schema and migration options. One cluster per
//! test binary run; the whole test runs under a watchdog.

use std::time::{Duration, SystemTime};

use class_oauth_core::ClientId;
use class_oauth_fixtures::bounded;
use class_oauth_fixtures::pg_cluster::{CERT_ROLE, TlsCluster};
use class_oauth_fixtures::seed::token_set;
use class_oauth_store::postgres::{PostgresOptions, SslMode};
use class_oauth_store::{Encryption, PostgresStore, StoreError, TenantKey, TokenStore};
use pollster::block_on;

fn key(tenant: &str) -> TenantKey {
    TenantKey::new(&ClientId::new("client-1"), tenant)
}

/// Connects as `options` say and proves the store works: a save and a load.
fn round_trip(options: PostgresOptions, tenant: &str) -> Result<(), StoreError> {
    let store = PostgresStore::connect_blocking_with(options, Encryption::DangerPlaintext)?;
    let k = key(tenant);
    let v = block_on(store.save(
        &k,
        &token_set("AT", "RT", 899, SystemTime::now()),
        None,
        None,
    ))?;
    assert_eq!(block_on(store.load(&k))?.map(|g| g.version), Some(v));
    Ok(())
}

fn url(c: &TlsCluster, host: &str, params: &str) -> PostgresOptions {
    PostgresOptions::from_url(&c.url("postgres", host, params)).unwrap()
}

fn refused(what: &str, r: Result<(), StoreError>, needles: &[&str]) {
    let e = match r {
        Err(e) => e.to_string(),
        Ok(()) => panic!("{what}: connected, and should not have"),
    };
    for n in needles {
        assert!(e.contains(n), "{what}: {e:?} does not say {n:?}");
    }
}

#[test]
fn a_tls_only_postgres_is_reached_as_libpq_would_reach_it() {
    bounded("TLS PostgreSQL", Duration::from_secs(240), || {
        let c = TlsCluster::start().unwrap_or_else(|e| panic!("the throwaway cluster: {e}"));
        let ca = c.ca.display().to_string();
        let other = c.other_ca.display().to_string();

        // verify-full with the private CA, by the name on the certificate.
        round_trip(
            url(
                &c,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "verify-full",
        )
        .expect("verify-full against the cluster's CA");

        // The same through the application's own tokio_postgres::Config.
        let mut config = tokio_postgres::Config::new();
        config
            .host("localhost")
            .port(c.port)
            .user("postgres")
            .dbname("postgres");
        let options = PostgresOptions::from_config(config)
            .with_ssl_mode(SslMode::VerifyFull)
            .root_cert_file(&c.ca);
        round_trip(options, "own-config").expect("an application's own config");

        // Another CA: refused, and the error says what to check.
        refused(
            "verify-full with an unrelated CA",
            round_trip(
                url(
                    &c,
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={other}"),
                ),
                "wrong-ca",
            ),
            &["certificate was refused", "UnknownIssuer", "sslrootcert"],
        );
        // libpq: require with a root certificate file checks the chain.
        refused(
            "require with an unrelated CA's file",
            round_trip(
                url(
                    &c,
                    "localhost",
                    &format!("sslmode=require&sslrootcert={other}"),
                ),
                "require-wrong-ca",
            ),
            &["UnknownIssuer"],
        );
        // No sslrootcert: the bundled Mozilla roots do not know a private CA.
        refused(
            "verify-full with the bundled roots",
            round_trip(url(&c, "localhost", "sslmode=verify-full"), "bundled"),
            &["UnknownIssuer"],
        );

        // The certificate names localhost, not 127.0.0.1: verify-full refuses the
        // address, verify-ca does not look at names.
        refused(
            "verify-full to an address the certificate does not name",
            round_trip(
                url(
                    &c,
                    "127.0.0.1",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ),
                "by-address",
            ),
            &["not valid for name \"127.0.0.1\""],
        );
        round_trip(
            url(
                &c,
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
            "verify-ca",
        )
        .expect("verify-ca by address");

        // require and prefer (libpq's default): encrypted, certificate unchecked.
        round_trip(url(&c, "127.0.0.1", "sslmode=require"), "require").expect("require");
        round_trip(
            PostgresOptions::from_url(&format!(
                "postgres://postgres@127.0.0.1:{}/postgres",
                c.port
            ))
            .unwrap(),
            "prefer",
        )
        .expect("prefer, the default");
        // The cluster has no hostnossl line: a plain connection is refused by the
        // server, which proves the ones above were encrypted.
        refused(
            "sslmode=disable against a TLS-only server",
            round_trip(url(&c, "127.0.0.1", "sslmode=disable"), "plain"),
            &["pg_hba.conf", "no encryption"],
        );

        // A client certificate, for a role that may log in with nothing else.
        let cert = c.client_cert.display().to_string();
        let key_file = c.client_key.display().to_string();
        round_trip(
            PostgresOptions::from_url(&c.url(
                CERT_ROLE,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key_file}"),
            ))
            .unwrap(),
            "client-cert",
        )
        .expect("a client certificate");
        refused(
            "the certificate role without a client certificate",
            round_trip(
                PostgresOptions::from_url(&c.url(
                    CERT_ROLE,
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ))
                .unwrap(),
                "no-client-cert",
            ),
            &["certificate"],
        );

        // An async caller on its runtime, over TLS.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = PostgresStore::connect(
                &c.url(
                    "postgres",
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ),
                2,
                Encryption::DangerPlaintext,
            )
            .await
            .expect("async connect over verify-full");
            assert!(store.load(&key("verify-full")).await.unwrap().is_some());
        });

        // A missing root file is a configuration error naming the file.
        refused(
            "a missing sslrootcert file",
            round_trip(
                url(
                    &c,
                    "localhost",
                    "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                ),
                "missing",
            ),
            &["/nonexistent/ca.pem", "sslrootcert"],
        );
    });
}

#[test]
fn schemas_keep_stores_apart_and_migrations_can_be_left_to_the_dba() {
    bounded("PostgreSQL schemas", Duration::from_secs(240), || {
        let c = TlsCluster::start().unwrap_or_else(|e| panic!("the throwaway cluster: {e}"));
        let base = || {
            PostgresOptions::from_url(&c.url(
                "postgres",
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", c.ca.display()),
            ))
            .unwrap()
        };
        let open = |o: PostgresOptions| {
            PostgresStore::connect_blocking_with(o, Encryption::DangerPlaintext)
        };
        let k = key("tenant");
        let now = SystemTime::now();

        let a = open(base().schema("partner_a")).expect("schema partner_a");
        block_on(a.save(&k, &token_set("AT-a", "RT-a", 899, now), None, None)).unwrap();
        let b = open(base().schema("partner_b")).expect("schema partner_b");
        assert!(
            block_on(b.load(&k)).unwrap().is_none(),
            "partner_b sees partner_a's grant"
        );
        let public = open(base()).expect("the default schema");
        assert!(
            block_on(public.load(&k)).unwrap().is_none(),
            "public sees partner_a's grant"
        );
        assert!(block_on(a.load(&k)).unwrap().is_some());

        // With its migrations off, the store refuses a schema that lacks them, and says
        // which and where they are.
        let e = open(base().schema("by_the_dba").apply_migrations(false)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, StoreError::Config(_)), "{e:?}");
        let all: Vec<String> = PostgresStore::migrations()
            .iter()
            .map(|(v, _)| v.to_string())
            .collect();
        assert!(
            text.contains(&format!("migrations {} (", all.join(", ")))
                && text.contains("PostgresStore::migrations"),
            "{text}"
        );
        // Applied (here by a store with migrations on), it starts.
        drop(open(base().schema("by_the_dba")).expect("applying the migrations"));
        let s = open(base().schema("by_the_dba").apply_migrations(false))
            .expect("every migration recorded");
        assert!(block_on(s.load(&k)).unwrap().is_none());

        let e = open(base().schema("Partner-A")).unwrap_err();
        assert!(matches!(e, StoreError::Config(_)), "{e:?}");
    });
}
