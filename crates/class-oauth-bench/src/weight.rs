//! Section 5, dependency weight: crates in the normal dependency tree, and a clean
//! release build of the core.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Distinct crates (name and version) in the normal tree, the root included.
fn tree(manifest: &Path, package: &str) -> Option<usize> {
    let out = cargo()
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "cargo tree -p {package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let set: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(format!("{} {}", w.next()?, w.next()?))
        })
        .collect();
    Some(set.len())
}

pub(crate) struct Weight {
    pub(crate) rows: Vec<(String, Option<usize>)>,
    pub(crate) core_build_secs: Option<f64>,
}

pub(crate) fn measure(build: bool) -> Weight {
    let manifest = root().join("Cargo.toml");
    let mut rows = Vec::new();
    for p in [
        "class-oauth-core",
        "class-oauth-reqwest",
        "class-oauth-ureq",
    ] {
        rows.push((p.to_owned(), tree(&manifest, p)));
    }
    // oauth2 with its default features, resolved on its own (not unified with ours).
    let probe = root().join("target/weight-probe");
    let _ = std::fs::create_dir_all(probe.join("src"));
    let _ = std::fs::write(
        probe.join("Cargo.toml"),
        "[package]\nname = \"weight-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[dependencies]\noauth2 = \"5\"\n\n[workspace]\n",
    );
    let _ = std::fs::write(probe.join("src/lib.rs"), "");
    let _ = std::fs::copy(root().join("Cargo.lock"), probe.join("Cargo.lock"));
    rows.push((
        "oauth2 5 (default features)".to_owned(),
        tree(&probe.join("Cargo.toml"), "oauth2"),
    ));
    let core_build_secs = build.then(|| {
        let dir = root().join("target/bench-clean-build");
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let ok = cargo()
            .args([
                "build",
                "--release",
                "--offline",
                "-p",
                "class-oauth-core",
                "--target-dir",
            ])
            .arg(&dir)
            .current_dir(root())
            .status()
            .is_ok_and(|s| s.success());
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&dir);
        if ok { secs } else { f64::NAN }
    });
    Weight {
        rows,
        core_build_secs,
    }
}
