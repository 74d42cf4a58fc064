//! The manager's metrics (feature `metrics`): a login and a refresh against the Class
//! emulator, then the counters and histograms as a recorder saw them.
//!
//! ```sh
//! cargo run -p class-oauth-manager --features metrics --example metrics
//! ```
//!
//! Here the recorder is `metrics-util`'s debugging recorder, to print what was recorded;
//! a service installs an exporter instead (`metrics-exporter-prometheus`, an
//! OpenTelemetry bridge), and the same names appear there.

use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, IssuerUrl, Password, Username};
use class_oauth_manager::TenantKey;
use class_oauth_manager::blocking::TokenManager;
use class_oauth_store::MemoryStore;
use class_oauth_testkit::{ClassEmulator, EmulatorConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;

    let emulator = ClassEmulator::start_blocking(EmulatorConfig::demo());
    let client = class_oauth_ureq::ClassClient::builder(
        Environment::Custom(IssuerUrl::new(&emulator.issuer())?),
        ClientId::new("demo-client"),
    )
    .secret(ClientSecret::new("demo-secret"))
    .build()?;
    let manager = TokenManager::new(client, MemoryStore::new());
    let granted = manager.client().password(
        Username::new("sam@example.com"),
        Password::new("demo-password"),
        Scopes::parse("openid target:b/OAUTH_TEST offline_access business.fund.list")?,
    )?;
    let tenant = TenantKey::new(&ClientId::new("demo-client"), "OAUTH_TEST");
    let stored = manager.store_tokens(&tenant, &granted)?;
    let refreshed = manager.force_refresh(&tenant, stored.version)?;
    println!(
        "refreshed: version {} -> {}",
        stored.version, refreshed.version
    );

    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.to_string(),
                DebugValue::Histogram(h) => format!(
                    "{} sample(s), last {:.4}",
                    h.len(),
                    h.last().map_or(0.0, |v| v.into_inner())
                ),
            };
            format!("{kind:?} {}{{{}}} {value}", key.name(), labels.join(","))
        })
        .collect();
    lines.sort();
    for l in &lines {
        println!("{l}");
    }
    if !lines
        .iter()
        .any(|l| l.contains("class_oauth_refreshes_total{outcome=refreshed} 1"))
    {
        return Err("the refresh was not counted".into());
    }
    Ok(())
}
