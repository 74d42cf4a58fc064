//! Project automation. Run `cargo xtask help`.
//!
//! Every CI job calls one of these subcommands, so a local run matches CI exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod layers;
mod postgres;
mod tidy;

const HELP: &str = "\
cargo xtask <command>

  ci      everything CI checks: fmt, lint, test, conformance, examples, package, man, doc (the README's test command)
  deny    cargo-deny (deny.toml): licences, bans, sources; advisories when the database can be fetched
  external-types  the public API names only the external types each manifest allows (nightly, cargo-check-external-types)
  examples  every example, offline against the emulator it starts (each bounded to 300 s)
  test    cargo test --workspace --all-features (every backend and middleware; unit, integration, property, fixture replay, doc tests, tidy)
  lint    cargo clippy --workspace --all-targets --all-features -D warnings
  fmt     cargo fmt --all --check
  doc     cargo doc --workspace --no-deps --all-features with warnings denied
  msrv    cargo check --locked --lib --bins of every published crate on its MSRV toolchain (its rust-version; needs those toolchains installed)
  sim     the simulated year: --seeds N --days D (each seed: 10 tenants, 3 instances, every
          invariant at every step, figures per provider behaviour); --seed S replays one with
          its trace; --compare runs every in-doubt rule; --mutation NAME proves it finds bugs
  man     the CLI's manual page, target/man/class-oauth.1 (clap_mangen, from its --help)
  package every published crate packaged (cargo package, dependency order, each built from its .crate; no upload)
  conformance  every fixture through core, async and blocking transports; prints the matrix
  fuzz    [--smoke | --seconds N]  every cargo-fuzz target for N seconds (smoke: 10 s each; needs nightly and cargo-fuzz)
  bench   [--split]  the benchmark table (release build; client and token server pinned to CPU 0, --split: server on CPU 1; BENCH_ROUNDS=n, BENCH_ONLY=exchange,cached,...)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("lint") => lint(),
        Some("fmt") => fmt(),
        Some("doc") => doc(),
        Some("msrv") => msrv(),
        Some("bench") => bench(&args[1..]),
        Some("sim") => sim(&args[1..]),
        Some("conformance") => conformance(),
        Some("package") => package(),
        Some("man") => man(),
        Some("examples") => examples(),
        Some("deny") => deny(),
        Some("external-types") => external_types(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root, from this crate's manifest directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn ci() -> Result<(), String> {
    fmt()?;
    lint()?;
    test()?;
    conformance()?;
    examples()?;
    package()?;
    man()?;
    doc()
}

/// Every published crate, in dependency order: the libraries and the command line (the tidy test
/// `every_published_crate_is_ready_to_publish` keeps this list whole).
pub(crate) const PUBLISHED: &[&str] = &[
    "class-oauth-core",
    "class-oauth-client",
    "class-oauth-reqwest",
    "class-oauth-ureq",
    "class-oauth-store",
    "class-oauth-manager",
    "class-oauth-axum",
    "class-oauth-testkit",
    "class-oauth-cli",
];

/// The CLI's manual page from its own definition (`class-oauth man`), written to
/// `target/man/class-oauth.1`.
fn man() -> Result<(), String> {
    let dir = project_root().join("target").join("man");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "-q",
        "--locked",
        "-p",
        "class-oauth-cli",
        "--",
        "man",
    ]);
    eprintln!("$ {cmd:?} > target/man/class-oauth.1");
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() || !out.stdout.starts_with(b".ie") {
        return Err(format!(
            "class-oauth man failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let page = dir.join("class-oauth.1");
    std::fs::write(&page, &out.stdout).map_err(|e| format!("{}: {e}", page.display()))?;
    eprintln!("xtask: wrote {}", page.display());
    Ok(())
}

/// `cargo package` of every published crate together (cargo orders them by their
/// dependencies and resolves each against the others' packages, as crates.io would),
/// each verified by building it from its own `.crate`: nothing is uploaded.
fn package() -> Result<(), String> {
    // A target directory of its own, whose builds of our crates all come from packaged
    // sources: Cargo treats a registry crate as immutable and would reuse an earlier
    // build of the same name and version (0.1.0 from one commit to the next), so those
    // are removed; third-party builds stay cached.
    let target = project_root().join("target").join("package-verify");
    forget_packaged_sources(&target)?;
    let mut cmd = cargo();
    cmd.env("CARGO_TARGET_DIR", &target);
    cmd.args(["package", "--locked"]);
    for krate in PUBLISHED {
        cmd.args(["-p", krate]);
    }
    run(cmd)
}

/// Removes what earlier `cargo package` runs unpacked of our own crates into Cargo's
/// cache. Each run verifies a crate against its dependencies' fresh `.crate` files,
/// served from a local registry under the target directory's `package/`; Cargo unpacks them under
/// `$CARGO_HOME/registry/src/<that registry's hash>/` and, the version being the same
/// (0.1.0) from one commit to the next, would reuse an old unpacking and verify against
/// an older API (seen: a clone at a reused path failed with "no `KeyCache` in `flow`").
/// Only our crates' directories in local registries are removed, never crates.io's;
/// and our crates' builds in `target` (the verification's own target directory).
fn forget_packaged_sources(target: &Path) -> Result<(), String> {
    let ours = |name: &str| {
        let name = name.trim_start_matches("lib").replace('_', "-");
        PUBLISHED.iter().any(|k| name.starts_with(&format!("{k}-")))
    };
    for sub in ["debug/.fingerprint", "debug/deps", "debug/build"] {
        let Ok(entries) = std::fs::read_dir(target.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            if ours(&entry.file_name().to_string_lossy()) {
                remove(&entry.path())?;
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(home) = home else { return Ok(()) };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            // crates.io's directories are named `index.crates.io-<hash>`; local
            // registries' are `-<hash>`.
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(registry.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !PUBLISHED
                    .iter()
                    .any(|k| name.starts_with(&format!("{k}-0")))
                {
                    continue;
                }
                remove(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Removes a file or a directory tree.
fn remove(path: &Path) -> Result<(), String> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| format!("{}: {e}", path.display()))
}

/// `cargo check-external-types` on every published library, all features: its public
/// API may name only the external types its manifest lists
/// (`[package.metadata.cargo_check_external_types]`), so a dependency's type cannot
/// slip into the API (and its semver into ours) unnoticed. Needs the nightly the tool
/// supports.
fn external_types() -> Result<(), String> {
    // The libraries (the CLI has no public API).
    for krate in PUBLISHED.iter().filter(|k| **k != "class-oauth-cli") {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(project_root())
            .args([
                "+nightly",
                "check-external-types",
                "--all-features",
                "--manifest-path",
            ])
            .arg(format!("crates/{krate}/Cargo.toml"));
        run(cmd)?;
    }
    Ok(())
}

/// cargo-deny with `deny.toml`. Licences, bans and sources need nothing but the lock
/// file; the advisory check needs the RustSec database, and is reported as skipped (not
/// passed) when it cannot be fetched.
fn deny() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "deny",
        "--all-features",
        "check",
        "bans",
        "licenses",
        "sources",
    ]);
    run(cmd)?;
    let mut fetch = cargo();
    fetch.args(["deny", "fetch", "db"]);
    if run(fetch).is_err() {
        eprintln!("xtask: advisories SKIPPED: the RustSec database could not be fetched");
        return Ok(());
    }
    let mut cmd = cargo();
    cmd.args([
        "deny",
        "--all-features",
        "check",
        "--disable-fetch",
        "advisories",
    ]);
    run(cmd)
}

/// Every example, run offline (against the emulator it starts), each bounded in time:
/// package, example, the features it needs.
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("class-oauth-reqwest", "password", ""),
    ("class-oauth-reqwest", "authorization_code", ""),
    ("class-oauth-ureq", "blocking_password", ""),
    ("class-oauth-ureq", "blocking_authorization_code", ""),
    ("class-oauth-core", "tour", ""),
    ("class-oauth-manager", "metrics", "metrics"),
];

fn examples() -> Result<(), String> {
    for (package, example, features) in EXAMPLES {
        let mut cmd = cargo();
        cmd.args(["run", "-q", "--locked", "-p", package, "--example", example]);
        if !features.is_empty() {
            cmd.args(["--features", features]);
        }
        cmd.env_remove("CLASS_CLIENT_ID")
            .stdin(std::process::Stdio::null());
        eprintln!("xtask: example {package} {example}");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{package} {example}: {e}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("example {package} {example} ran past 300 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if !status.success() {
            return Err(format!("example {package} {example} failed: {status}"));
        }
    }
    Ok(())
}

/// The cargo-fuzz targets (one per parser); keep in step with fuzz/Cargo.toml.
pub(crate) const FUZZ_TARGETS: &[&str] = &[
    "token_response",
    "error_response",
    "discovery",
    "jwks",
    "id_token",
    "callback",
    "scope",
    "api_envelope",
    "headers",
];

fn fuzz(args: &[String]) -> Result<(), String> {
    let seconds = match args {
        [flag] if flag == "--smoke" => 10,
        [flag, n] if flag == "--seconds" => n.parse().map_err(|_| format!("bad seconds `{n}`"))?,
        [] => 10,
        _ => return Err("usage: cargo xtask fuzz [--smoke | --seconds N]".into()),
    };
    let fuzz_dir = project_root().join("fuzz");
    for target in FUZZ_TARGETS {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir).args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
        ]);
        run(cmd)?;
    }
    eprintln!(
        "fuzz: {} targets ran {seconds} s each without a finding (corpus in fuzz/corpus/, findings would be in fuzz/artifacts/)",
        FUZZ_TARGETS.len()
    );
    Ok(())
}

fn conformance() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "class-oauth-conformance",
    ]);
    run(cmd)
}

/// The workspace's tests, with a PostgreSQL for the store's: the one at
/// `CLASS_OAUTH_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
/// or, when nothing answers there, a throwaway server for this run (`postgres.rs`).
fn test() -> Result<(), String> {
    let url = std::env::var("CLASS_OAUTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| postgres::DEFAULT_URL.to_owned());
    // Under target/; as root under the system's temporary directory instead, since the
    // server then runs as `postgres`, who may not reach a checkout under /root.
    let scratch = if postgres::is_root() {
        std::env::temp_dir().join("class-oauth-xtask")
    } else {
        project_root().join("target").join("xtask-postgres")
    };
    let pg = postgres::for_tests(&url, &scratch)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-features", "--locked"])
        .env("CLASS_OAUTH_TEST_POSTGRES_URL", &pg.url);
    let result = run(cmd);
    if pg.is_throwaway() {
        eprintln!("xtask: stopping the throwaway PostgreSQL");
    }
    drop(pg);
    result
}

fn lint() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(cmd)
}

fn fmt() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["fmt", "--all", "--", "--check"]);
    run(cmd)
}

fn doc() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
        "--locked",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run(cmd)
}

/// The deterministic simulation of the refresh procedure (release build): seeds of
/// simulated days under each provider behaviour, every invariant checked, the figures
/// printed; a violating seed prints its replay command.
fn sim(args: &[String]) -> Result<(), String> {
    run_release("class-oauth-sim", args)
}

fn bench(args: &[String]) -> Result<(), String> {
    run_release("class-oauth-bench", args)
}

/// `cargo run --release --locked -p <package> -- <args>`.
fn run_release(package: &str, args: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--locked", "-p", package, "--"])
        .args(args);
    run(cmd)
}

/// The MSRV a crate declares: its own `rust-version`, else the workspace's.
pub(crate) fn rust_version(krate: &str) -> Result<String, String> {
    let field = |rel: &str| -> Result<Option<String>, String> {
        let manifest =
            std::fs::read_to_string(project_root().join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        Ok(manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("rust-version = "))
            .map(|v| v.trim_matches('"').to_owned()))
    };
    match field(&format!("crates/{krate}/Cargo.toml"))? {
        Some(v) => Ok(v),
        None => field("Cargo.toml")?.ok_or_else(|| "no rust-version in Cargo.toml".into()),
    }
}

/// Every published crate's lib and bins, every feature, on the toolchain of the MSRV it
/// declares (the libraries share the workspace's; the CLI has its own).
fn msrv() -> Result<(), String> {
    let mut by_version: Vec<(String, Vec<&str>)> = Vec::new();
    for krate in PUBLISHED {
        let v = rust_version(krate)?;
        match by_version.iter_mut().find(|(x, _)| *x == v) {
            Some((_, crates)) => crates.push(krate),
            None => by_version.push((v, vec![krate])),
        }
    }
    for (version, crates) in by_version {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(project_root())
            .arg(format!("+{version}"))
            .args(["check", "--locked", "--lib", "--bins", "--all-features"]);
        for krate in crates {
            cmd.args(["-p", krate]);
        }
        run(cmd)?;
    }
    Ok(())
}
