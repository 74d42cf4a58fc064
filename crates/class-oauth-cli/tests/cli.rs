//! The built `class-oauth` binary against the Class emulator: every command and every
//! exit code, including `auth start` / `auth finish` with the callback URL captured from
//! the emulator's redirect, and `login` through its loopback listener.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

use class_oauth_testkit::{ClassEmulator, EmulatorConfig, Fault};
use serde_json::Value;

const KEY: &str = "test:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

struct Rig {
    emulator: ClassEmulator,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(config: EmulatorConfig) -> Self {
        Self {
            emulator: ClassEmulator::start_blocking(config),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_class-oauth"));
        self.environment(c.args(args));
        c
    }

    /// The variables every command of this rig runs with: the emulator, the demo client,
    /// a store and a home of the rig's own.
    fn environment<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("CLASS_OAUTH_ENV", self.emulator.issuer())
            .env("CLASS_CLIENT_ID", "demo-client")
            .env("CLASS_CLIENT_SECRET", "demo-secret")
            .env("CLASS_OAUTH_STORE", self.dir.path().join("grants.sqlite3"))
            .env("CLASS_OAUTH_STORE_KEY", KEY)
            // Never the developer's OS keyring.
            .env("CLASS_OAUTH_KEYRING", "off")
            // A home of its own: the CLI's key file and data directory never touch the
            // real one.
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env_remove("CLASS_OAUTH_PROFILE")
    }

    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        within(child, args)
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        feed(&mut self.cmd(args), input)
    }

    /// `password` as the demo user, the password on stdin: `global` options before the
    /// command, `extra` after it.
    fn password(&self, global: &[&str], extra: &[&str]) -> Output {
        let mut args = global.to_vec();
        args.extend([
            "password",
            "--username",
            "sam@example.com",
            "--password-stdin",
        ]);
        args.extend(extra);
        self.run_stdin(&args, "demo-password\n")
    }

    /// `auth start` for the demo redirect URI; its JSON.
    fn auth_start(&self) -> Value {
        json(
            &self.run(&[
                "--json",
                "auth",
                "start",
                "--redirect-uri",
                "https://partner.example/class-callback",
            ]),
            0,
        )
    }

    /// `auth start`, then the emulator's browser at its URL: the JSON and the callback.
    fn start_and_browse(&self) -> (Value, String) {
        let start = self.auth_start();
        let callback = self
            .emulator
            .browse(start["authorization_url"].as_str().unwrap())
            .unwrap();
        (start, callback)
    }

    /// The demo user's password grant, stored as the default profile.
    fn password_login(&self) -> Value {
        json(&self.password(&["--json"], &[]), 0)
    }

    fn login_via_auth_start_finish(&self) -> Value {
        let (start, callback) = self.start_and_browse();
        assert!(callback.contains(start["state"].as_str().unwrap()));
        json(
            &self.run(&["--json", "auth", "finish", "--callback-url", &callback]),
            0,
        )
    }
}

#[track_caller]
/// Runs `cmd` with `input` on its stdin; its output.
fn feed(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before it reads its input (the point of some tests) closes
    // the pipe first: a broken pipe here is that, not a failure of the test.
    match child.stdin.take().unwrap().write_all(input.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    within(child, &["a command fed on stdin"])
}

/// The command's output, or a failure (never a hang) when it runs past 120 s: the child
/// is killed and the test panics naming it.
fn within(child: std::process::Child, what: &[&str]) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("class-oauth {what:?} ran past 120 s (a hang is a failure)")
        }
    }
}

/// The error message of a `--json` failure.
fn message(err: &Value) -> &str {
    err["error"]["message"].as_str().unwrap()
}

fn json(out: &Output, code: i32) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_whole_command_set() {
    let rig = Rig::new(EmulatorConfig::demo());

    let scopes = json(&rig.run(&["--json", "scopes"]), 0);
    assert!(
        scopes
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["scope"] == "fund.read" && s["consent_text"] == "Read all fund information")
    );
    let found = json(&rig.run(&["--json", "discover"]), 0);
    assert_eq!(found["source"], "discovery");

    let login = rig.login_via_auth_start_finish();
    assert_eq!(login["business_code"], "OAUTH_TEST");
    assert_eq!(login["subject"], "4b3f7c2a-class-user-0001");

    let token = rig.run(&["token"]);
    assert_eq!(token.status.code(), Some(0));
    let bare = String::from_utf8(token.stdout).unwrap();
    let detailed = json(&rig.run(&["--json", "token"]), 0);
    assert_eq!(detailed["access_token"].as_str().unwrap(), bare.trim());
    assert_eq!(detailed["business_code"], "OAUTH_TEST");

    let refreshed = json(&rig.run(&["--json", "refresh"]), 0);
    // Every write moves the version: the in-doubt mark before the request, the rotated
    // refresh token before the key-set fetch (a new process has no keys cached), the
    // validated grant.
    assert!(
        refreshed["version"].as_u64() > login["version"].as_u64(),
        "{refreshed} after {login}"
    );
    let newer = json(&rig.run(&["--json", "token"]), 0);
    assert_ne!(newer["access_token"], detailed["access_token"]);

    let me = json(&rig.run(&["--json", "userinfo"]), 0);
    assert_eq!(me["sub"], "4b3f7c2a-class-user-0001");
    assert_eq!(me["class_role"][0], "Administrator");

    let profiles = rig.run(&["--json", "profiles"]);
    let text = String::from_utf8_lossy(&profiles.stdout).into_owned()
        + &String::from_utf8_lossy(&profiles.stderr);
    assert!(
        !text.contains(newer["access_token"].as_str().unwrap()),
        "profiles never shows a secret"
    );
    let list = json(&profiles, 0);
    assert_eq!(list[0]["profile"], "default");

    // Grant health: the demo client's grant, active, its refresh token seconds old (it
    // was just rotated), lapsing in 30 days, refreshed since the login; no secret.
    let health = rig.run(&["--json", "grants"]);
    let text = String::from_utf8_lossy(&health.stdout).into_owned();
    assert!(
        !text.contains(newer["access_token"].as_str().unwrap()),
        "grants never shows a secret"
    );
    let grants = json(&health, 0);
    let g = &grants[0];
    assert_eq!(g["profile"], "default", "{grants}");
    assert_eq!(g["status"], "active", "{grants}");
    assert_eq!(g["business_code"], "OAUTH_TEST");
    let age = g["refresh_token_age_s"].as_u64().expect("an age");
    assert!(age < 300, "{grants}");
    let received = g["last_refresh_at"]
        .as_u64()
        .expect("refreshed since the login");
    assert!(received >= g["granted_at"].as_u64().unwrap(), "{grants}");
    assert_eq!(g["lapses_at"].as_u64(), Some(received + 30 * 24 * 3600));
    assert!(g["action"].is_null(), "{grants}");
    assert!(
        g["last_error"].is_null() && g["last_error_at"].is_null(),
        "no refresh failed: {grants}"
    );
    assert_eq!(
        json(
            &rig.run(&["--json", "grants", "--status", "needs_reauthorization"]),
            0
        ),
        serde_json::json!([])
    );
    assert_eq!(
        rig.run(&["grants", "--status", "dead"]).status.code(),
        Some(2)
    );

    // A second profile by the password grant (password on stdin).
    let pw = rig.password(
        &["--json", "--profile", "ropc"],
        &[
            "--scope",
            "target:b/SECOND_BIZ",
            "--scope",
            "offline_access",
            "--scope",
            "fund.read",
        ],
    );
    assert_eq!(json(&pw, 0)["business_code"], "SECOND_BIZ");
    assert_eq!(
        json(&rig.run(&["--json", "profiles"]), 0)
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // revoke: at the revocation endpoint, then the profile is gone -> 6.
    let revoked = json(&rig.run(&["--json", "revoke"]), 0);
    assert_eq!(revoked["revoked"], true);
    let gone = json(&rig.run(&["--json", "token"]), 6);
    assert_eq!(gone["error"]["kind"], "reauthorization_required");

    // The user revokes partner access in Class; the expired token cannot be refreshed -> 6.
    rig.emulator.revoke_partner_access("SECOND_BIZ");
    let dead = json(&rig.run(&["--json", "--profile", "ropc", "refresh"]), 6);
    assert_eq!(dead["error"]["kind"], "reauthorization_required");
    let still_dead = json(&rig.run(&["--json", "--profile", "ropc", "token"]), 6);
    assert!(
        still_dead["error"]["message"]
            .as_str()
            .unwrap()
            .contains("re-authorization")
    );
    // The partner sees who must connect again, and why, in words.
    let must = json(
        &rig.run(&["--json", "grants", "--status", "needs_reauthorization"]),
        0,
    );
    let ropc = must
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["profile"] == "ropc")
        .unwrap_or_else(|| panic!("{must}"));
    assert!(
        ropc["reason"]
            .as_str()
            .unwrap()
            .contains("probably revoked this application's access in Class"),
        "{ropc}"
    );
    assert!(
        ropc["action"].as_str().unwrap().contains("connect"),
        "{ropc}"
    );
}

#[test]
fn exit_codes_for_every_failure() {
    let rig = Rig::new(EmulatorConfig::demo());
    // 2: http on a non-loopback host; missing client id; no store key.
    assert_eq!(
        json(
            &rig.run(&["--json", "--env", "http://class.example", "discover"]),
            2
        )["error"]["kind"],
        "configuration"
    );
    let out = rig
        .cmd(&["--json", "token"])
        .env_remove("CLASS_CLIENT_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(json(&out, 2)["error"]["kind"], "configuration");
    // A key that cannot be parsed.
    let out = rig
        .cmd(&[
            "--json",
            "auth",
            "start",
            "--redirect-uri",
            "https://partner.example/class-callback",
        ])
        .env("CLASS_OAUTH_STORE_KEY", "not-a-key")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(json(&out, 2)["error"]["kind"], "configuration");
    assert_eq!(rig.run(&["no-such-command"]).status.code(), Some(2));

    // 3: the server refused (wrong client secret; wrong password; a denied consent).
    let out = feed(
        rig.cmd(&[
            "--json",
            "password",
            "--username",
            "sam@example.com",
            "--password-stdin",
        ])
        .env("CLASS_CLIENT_SECRET", "wrong"),
        "demo-password\n",
    );
    let err = json(&out, 3);
    assert_eq!(err["error"]["code"], "invalid_client");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one pair per environment"),
        "a fix-it hint"
    );
    assert_eq!(
        json(
            &rig.run_stdin(
                &[
                    "--json",
                    "password",
                    "--username",
                    "sam@example.com",
                    "--password-stdin"
                ],
                "wrong\n"
            ),
            3
        )["error"]["code"],
        "invalid_grant"
    );
    rig.emulator.deny_next_authorization("access_denied");
    let (_, callback) = rig.start_and_browse();
    assert_eq!(
        json(
            &rig.run(&["--json", "auth", "finish", "--callback-url", &callback]),
            3
        )["error"]["code"],
        "access_denied"
    );

    // 4: validation: a callback whose state matches no pending authorization; a replayed one.
    let (start, callback) = rig.start_and_browse();
    let forged = callback.replace(start["state"].as_str().unwrap(), "forged-state");
    assert_eq!(
        json(
            &rig.run(&["--json", "auth", "finish", "--callback-url", &forged]),
            4
        )["error"]["kind"],
        "validation"
    );
    json(
        &rig.run(&["--json", "auth", "finish", "--callback-url", &callback]),
        0,
    );
    json(
        &rig.run(&["--json", "auth", "finish", "--callback-url", &callback]),
        4,
    );

    // 5: transport: nothing listening; a 503 from the token endpoint; an HTML 502.
    assert_eq!(
        json(
            &rig.run(&["--json", "--env", "http://127.0.0.1:9", "discover"]),
            5
        )["error"]["kind"],
        "transport"
    );
    rig.emulator.inject("/connect/token", Fault::Status(503), 1);
    json(&rig.password(&["--json"], &[]), 5);
    rig.emulator.inject("/connect/token", Fault::Html502, 1);
    json(&rig.password(&["--json"], &[]), 5);

    // 6: no stored grant.
    assert_eq!(
        json(&rig.run(&["--json", "--profile", "never", "token"]), 6)["error"]["kind"],
        "reauthorization_required"
    );
}

/// Waits for a child process, failing (and killing it) after `secs` seconds.
fn wait_bounded(mut child: std::process::Child, secs: u64) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the CLI did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A browser's GET to the loopback listener; the page it gets back.
fn browser_get(port: u16, target: &str) -> String {
    let mut browser = TcpStream::connect(("127.0.0.1", port)).unwrap();
    browser
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        browser,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    browser.read_to_string(&mut page).unwrap();
    page
}

/// The lines a child writes to a pipe, read on a thread of their own (which keeps
/// draining it), so a test can wait for one with a bound instead of blocking.
fn lines_of(pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            // The receiver may be gone; keep draining anyway.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts `login` on a free loopback port; returns the rig, the child, the port and the
/// authorization URL it printed.
fn start_login(extra: &[&str]) -> (Rig, std::process::Child, u16, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let mut config = EmulatorConfig::demo();
    config.clients[0].redirect_uris.push(redirect.clone());
    let rig = Rig::new(config);
    let mut args = vec![
        "--json",
        "login",
        "--no-browser",
        "--redirect-uri",
        &redirect,
    ];
    args.extend_from_slice(extra);
    let mut child = rig
        .cmd(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stderr.take().unwrap());
    let url = loop {
        match lines.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) if line.starts_with("http") => break line,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("the CLI printed no URL within 60 s");
            }
        }
    };
    (rig, child, port, url.trim().to_owned())
}

#[test]
fn login_through_the_loopback_listener() {
    let (rig, child, port, url) = start_login(&[]);
    let callback = rig.emulator.browse(&url).unwrap();
    let target = callback
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .to_owned();
    // Other requests do not use up the login: a favicon gets a 404, a forged state an
    // error page (never "signed in").
    assert!(browser_get(port, "/favicon.ico").contains("404"));
    let forged = target.replace("state=", "state=forged");
    let page = browser_get(port, &forged);
    assert!(
        page.contains("400") && page.contains("not accepted"),
        "{page}"
    );
    assert!(!page.contains("Signed in"));
    // The real callback: checked, exchanged, and only then the success page.
    let page = browser_get(port, &target);
    assert!(
        page.contains("200 OK") && page.contains("Signed in to Class"),
        "{page}"
    );
    assert!(
        page.to_ascii_lowercase()
            .contains("referrer-policy: no-referrer")
    );
    let out = wait_bounded(child, 60);
    assert_eq!(json(&out, 0)["business_code"], "OAUTH_TEST");
}

/// A callback that fails its checks shows the error in the browser, not "signed in".
#[test]
fn login_shows_a_failed_callback_as_a_failure() {
    let (rig, child, port, url) = start_login(&[]);
    rig.emulator.deny_next_authorization("access_denied");
    let callback = rig.emulator.browse(&url).unwrap();
    let target = callback
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .to_owned();
    let page = browser_get(port, &target);
    assert!(
        page.contains("400") && page.contains("Sign-in failed"),
        "{page}"
    );
    assert!(!page.contains("Signed in to Class"));
    let out = wait_bounded(child, 60);
    assert_eq!(json(&out, 3)["error"]["code"], "access_denied");
}

/// The listener gives up after --timeout with exit 5, instead of waiting for ever.
#[test]
fn login_times_out() {
    let (_rig, child, _port, _url) = start_login(&["--timeout", "1"]);
    let out = wait_bounded(child, 30);
    let err = json(&out, 5);
    assert_eq!(err["error"]["code"], "timeout");
}

#[test]
fn demo_runs_the_tour() {
    let out = Command::new(env!("CARGO_BIN_EXE_class-oauth"))
        .args(["--json", "demo"])
        .output()
        .unwrap();
    let v = json(&out, 0);
    assert_eq!(v["business_code"], "OAUTH_TEST");
    assert_eq!(v["refreshed"], true);
    assert_eq!(v["revoked"], true);
    assert_eq!(v["funds"], 2);
}

/// The demo's human output is for people (dates as dates, no `Some(..)` or Rust Debug
/// text), and it honours `--store`.
#[test]
fn demo_reads_well_and_honours_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo.sqlite3");
    let out = Command::new(env!("CARGO_BIN_EXE_class-oauth"))
        .args(["demo", "--store", store.to_str().unwrap()])
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("CLASS_OAUTH_KEYRING", "off")
        .env_remove("CLASS_OAUTH_STORE_KEY")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for debug in ["Some(", "None", "TenantKey(", " { "] {
        assert!(
            !text.contains(debug),
            "Rust Debug text `{debug}` in the demo:\n{text}"
        );
    }
    assert!(
        text.contains("valid until 20"),
        "an expiry as a date:\n{text}"
    );
    assert!(store.exists(), "the demo used --store");
}

/// `class-oauth refresh` when the refreshed ID token does not validate: exit 4 with the
/// real reason (before: exit 5, "transport failure (other): the refresh did not
/// complete"); the rotated refresh token is kept, so the next refresh works.
#[test]
fn refresh_with_an_invalid_id_token_exits_4_with_the_reason() {
    let rig = Rig::new(EmulatorConfig::demo());
    rig.login_via_auth_start_finish();
    rig.emulator.corrupt_next_id_tokens(1);
    let out = json(&rig.run(&["--json", "refresh"]), 4);
    assert_eq!(out["error"]["kind"], "validation", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains("ID token"), "{message}");
    let again = json(&rig.run(&["--json", "refresh"]), 0);
    assert_eq!(again["business_code"], "OAUTH_TEST");
    let profiles = json(&rig.run(&["--json", "profiles"]), 0);
    assert_eq!(profiles[0]["status"], "active", "{profiles}");
}

/// Zero set-up: with no CLASS_OAUTH_STORE_KEY, the first command that stores a grant
/// creates a private key file, later commands read it, and `key show` says where it is.
#[test]
fn the_store_key_needs_no_set_up() {
    let rig = Rig::new(EmulatorConfig::demo());
    let no_key =
        |args: &[&str], input: &str| feed(rig.cmd(args).env_remove("CLASS_OAUTH_STORE_KEY"), input);
    let key_file = rig.dir.path().join("config/class-oauth/store-key");
    assert!(!key_file.exists());
    let out = no_key(
        &[
            "--json",
            "password",
            "--username",
            "sam@example.com",
            "--password-stdin",
        ],
        "demo-password\n",
    );
    json(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("created the store key"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is the user's alone");
        let dir_mode = std::fs::metadata(key_file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }
    // The next run reads the same key: the stored grant opens.
    let token = json(&no_key(&["--json", "token"], ""), 0);
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let shown = json(&no_key(&["--json", "key", "show"], ""), 0);
    assert_eq!(shown["source"], "file");
    assert_eq!(shown["path"], key_file.display().to_string());
    // The override still wins.
    assert_eq!(
        json(&rig.run(&["--json", "key", "show"]), 0)["source"],
        "environment"
    );
    // `key generate` prints the key alone on stdout, ready for `export ...=$(...)`.
    let generated = rig.run(&["key", "generate"]);
    assert_eq!(generated.status.code(), Some(0));
    let spec = String::from_utf8_lossy(&generated.stdout).trim().to_owned();
    assert!(
        spec.starts_with('k') && spec.contains(':') && !spec.contains(' '),
        "{spec:?}"
    );
    // A key file others can read is refused.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let refused = json(&no_key(&["--json", "token"], ""), 2);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other users")
    );
}

/// The store is opened and its key checked before a password is spent: with a key that
/// cannot open the profile's grant, `password` fails without a token request.
#[test]
fn a_store_that_cannot_keep_the_tokens_fails_before_the_password_is_spent() {
    let rig = Rig::new(EmulatorConfig::demo());
    rig.password_login();
    let before = rig.emulator.count("/connect/token");
    let out = feed(
        rig.cmd(&[
            "--json",
            "password",
            "--username",
            "sam@example.com",
            "--password-stdin",
        ])
        .env(
            "CLASS_OAUTH_STORE_KEY",
            "other:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyE=",
        ),
        "demo-password\n",
    );
    assert_eq!(json(&out, 2)["error"]["kind"], "configuration");
    assert_eq!(
        rig.emulator.count("/connect/token"),
        before,
        "no password was spent"
    );
}

/// `token` with a valid stored token makes no HTTP request at all (the emulator's
/// recording proves it); with no stored grant it exits 6 without touching the network.
#[test]
fn token_with_a_valid_grant_makes_no_request() {
    let rig = Rig::new(EmulatorConfig::demo());
    let out = rig.run(&["--json", "token"]);
    assert_eq!(json(&out, 6)["error"]["kind"], "reauthorization_required");
    assert!(
        rig.emulator.requests().is_empty(),
        "no request without a grant: {:?}",
        rig.emulator
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    rig.password_login();
    let before = rig.emulator.requests().len();
    let token = json(&rig.run(&["--json", "token"]), 0);
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let after = rig.emulator.requests();
    assert_eq!(
        after.len(),
        before,
        "token made requests: {:?}",
        after[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
}

/// The contract's exit codes for two refusals: a refused code exchange is 3 (the server
/// refused), a grant without a refresh token is 6 (re-authorization needed).
#[test]
fn refused_code_exchange_is_3_and_no_refresh_token_is_6() {
    let rig = Rig::new(EmulatorConfig::demo());
    // A first login spends its code.
    let (start, callback) = rig.start_and_browse();
    json(
        &rig.run(&["--json", "auth", "finish", "--callback-url", &callback]),
        0,
    );
    // A second login presents the spent code with its own state: Class refuses it.
    let second = rig.auth_start();
    let old_state = start["state"].as_str().unwrap();
    let replayed = callback.replace(old_state, second["state"].as_str().unwrap());
    let err = json(
        &rig.run(&["--json", "auth", "finish", "--callback-url", &replayed]),
        3,
    );
    assert_eq!(err["error"]["code"], "invalid_grant");
    assert_eq!(err["error"]["kind"], "server_refused");

    // A password grant without offline_access has no refresh token.
    json(
        &rig.password(
            &["--json", "--profile", "no-rt"],
            &["--scope", "target:b", "--scope", "business.fund.list"],
        ),
        0,
    );
    let err = json(&rig.run(&["--json", "--profile", "no-rt", "refresh"]), 6);
    assert_eq!(err["error"]["kind"], "reauthorization_required");
}

/// Primary output goes to stdout (human tables included) and diagnostics to stderr; with
/// `--json`, stdout holds one JSON value and nothing else, usage errors included.
#[test]
fn output_goes_where_tools_look() {
    let rig = Rig::new(EmulatorConfig::demo());
    let out = rig.run(&["scopes"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fund.read"),
        "the table is on stdout: {stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("fund.read"));

    let out = rig.run(&["--json", "scopes"]);
    let value: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert!(value.as_array().is_some_and(|a| !a.is_empty()));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("fund.read"),
        "no human table beside the JSON"
    );

    for args in [
        &["--json", "no-such-command"][..],
        &["--json", "token", "--bogus-flag"][..],
        &["no-such-command", "--json"][..],
    ] {
        let out = rig.run(args);
        let err = json(&out, 2);
        assert_eq!(err["error"]["kind"], "usage", "{args:?}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Without --json a usage error stays clap's text on stderr.
    let out = rig.run(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// `--scope` is checked against the Class grammar with a suggestion; `--help` lists the
/// environment variables and the exit codes; `-vv` shows the library's tracing without
/// a secret.
#[test]
fn scopes_help_and_tracing() {
    let rig = Rig::new(EmulatorConfig::demo());
    let out = rig.password(
        &["--json"],
        &["--scope", "target:b", "--scope", "fund.raed"],
    );
    let err = json(&out, 2);
    assert!(message(&err).contains("fund.raed"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `fund.read`"));
    assert_eq!(
        rig.emulator.count("/connect/token"),
        0,
        "refused before any request"
    );
    let out = rig.password(&["--json"], &["--scope", "bogus.scope"]);
    assert_eq!(json(&out, 2)["error"]["kind"], "usage");

    let help = rig.run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "CLASS_CLIENT_SECRET",
        "CLASS_OAUTH_STORE_KEY",
        "Exit codes",
        "6 re-authorization",
        "7 the local store failed",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }

    rig.password_login();
    let access = json(&rig.run(&["--json", "token"]), 0)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = rig.run(&["-vv", "refresh"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("class_oauth"), "library tracing shown: {log}");
    for secret in [access.as_str(), "demo-secret", "demo-password"] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
    let quiet = rig.run(&["refresh"]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("class_oauth_"),
        "no tracing without -v"
    );
}

/// The store is the user's alone: the default location's directory is 0700 and the file
/// 0600; an explicit `--store` in a missing directory is an error that says so (before
/// any request).
#[test]
fn the_store_is_private_and_an_explicit_path_is_taken_as_given() {
    use std::os::unix::fs::PermissionsExt as _;
    let rig = Rig::new(EmulatorConfig::demo());
    let run_default = |args: &[&str]| {
        feed(
            rig.cmd(args).env_remove("CLASS_OAUTH_STORE"),
            "demo-password\n",
        )
    };
    json(
        &run_default(&[
            "--json",
            "password",
            "--username",
            "sam@example.com",
            "--password-stdin",
        ]),
        0,
    );
    let dir = rig.dir.path().join("data/class-oauth");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("grants.sqlite3")), 0o600);

    let missing = rig.dir.path().join("no-such-dir/grants.sqlite3");
    let out = rig.password(&["--json", "--store", missing.to_str().unwrap()], &[]);
    let err = json(&out, 2);
    assert!(message(&err).contains("does not exist"));
    assert!(!missing.parent().unwrap().exists(), "not created silently");
    assert_eq!(
        rig.emulator.count("/connect/token"),
        1,
        "only the first password grant"
    );
}

/// The password comes from a pipe without `--password-stdin` too (on a terminal it is
/// prompted for without echo); `--password-stdin` keeps working.
#[test]
fn password_from_a_pipe_without_the_flag() {
    let rig = Rig::new(EmulatorConfig::demo());
    let granted = json(
        &rig.run_stdin(
            &["--json", "password", "--username", "sam@example.com"],
            "demo-password\n",
        ),
        0,
    );
    assert_eq!(granted["business_code"], "OAUTH_TEST");
    json(&rig.password(&["--json", "--profile", "p2"], &[]), 0);
}

/// `key rotate` re-encrypts every grant with a new key and retires the old one: the
/// grant still opens with the key file, and no longer with the old key alone.
#[test]
fn key_rotate_reencrypts_every_grant() {
    let rig = Rig::new(EmulatorConfig::demo());
    let no_key =
        |args: &[&str], input: &str| feed(rig.cmd(args).env_remove("CLASS_OAUTH_STORE_KEY"), input);
    for profile in ["a", "b"] {
        json(
            &no_key(
                &[
                    "--json",
                    "--profile",
                    profile,
                    "password",
                    "--username",
                    "sam@example.com",
                ],
                "demo-password\n",
            ),
            0,
        );
    }
    let key_file = rig.dir.path().join("config/class-oauth/store-key");
    let old_spec = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    let rotated = json(&no_key(&["--json", "key", "rotate"], ""), 0);
    assert_eq!(rotated["grants"], 2);
    let new_spec = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new_spec, old_spec);
    assert!(
        !new_spec.contains(','),
        "the old key is retired: {new_spec:?}"
    );
    for profile in ["a", "b"] {
        json(&no_key(&["--json", "--profile", profile, "token"], ""), 0);
    }
    let with_old = rig
        .cmd(&["--json", "--profile", "a", "token"])
        .env("CLASS_OAUTH_STORE_KEY", &old_spec)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(json(&with_old, 2)["error"]["kind"], "configuration");
    // With the key in the environment the command refuses: it cannot rewrite it.
    assert_eq!(
        json(&rig.run(&["--json", "key", "rotate"]), 2)["error"]["kind"],
        "configuration"
    );
}

/// The server process dies with the test, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `class-oauth emulator --port 0` in a process of its own, and the issuer it printed.
fn standalone_emulator() -> (KillOnDrop, String) {
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_class-oauth"))
            .args(["--json", "emulator", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let first = lines_of(server.0.stdout.take().unwrap())
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the emulator printed its issuer within 60 s");
    let info: Value = serde_json::from_str(&first).expect("the emulator prints its issuer");
    let issuer = info["issuer"].as_str().unwrap().to_owned();
    (server, issuer)
}

/// `class-oauth emulator` runs the emulator as a standalone server: another program
/// (here, the CLI itself in another process) signs in against it.
#[test]
fn the_emulator_runs_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = standalone_emulator();
    let mut client = Command::new(env!("CARGO_BIN_EXE_class-oauth"))
        .args([
            "--json",
            "--env",
            &issuer,
            "password",
            "--username",
            "sam@example.com",
        ])
        .env("CLASS_CLIENT_ID", "demo-client")
        .env("CLASS_CLIENT_SECRET", "demo-secret")
        .env("CLASS_OAUTH_STORE", dir.path().join("g.sqlite3"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("CLASS_OAUTH_KEYRING", "off")
        .env_remove("CLASS_OAUTH_STORE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"demo-password\n")
        .unwrap();
    let out = wait_bounded(client, 60);
    drop(server);
    assert_eq!(json(&out, 0)["business_code"], "OAUTH_TEST");
}

/// On a terminal the password is prompted for and not echoed (a pty from util-linux's
/// `script` stands in for the user's terminal).
#[test]
fn password_prompt_on_a_terminal_does_not_echo() {
    let rig = Rig::new(EmulatorConfig::demo());
    let bin = env!("CARGO_BIN_EXE_class-oauth");
    let mut script = Command::new("script");
    script.args([
        "-q",
        "-e",
        "-c",
        &format!("{bin} --json password --username sam@example.com"),
        "/dev/null",
    ]);
    let mut script = rig
        .environment(&mut script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` provides the terminal");
    // Type the password only once the prompt is up (echo is off by then): read the
    // terminal's output as it comes, bounded in time.
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = script.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("Class password for") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => {
                let _ = script.kill();
                panic!("no prompt within 30 s: {}", String::from_utf8_lossy(&seen));
            }
        }
    }
    // The prompt is written just before echo is switched off; type at a person's pace.
    std::thread::sleep(std::time::Duration::from_millis(500));
    stdin.write_all(b"demo-password\n").unwrap();
    let out = wait_bounded(script, 60);
    drop(stdin);
    let _ = reader.join();
    seen.extend(rx.try_iter().flatten());
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Class password for sam@example.com"),
        "prompted: {text}"
    );
    assert!(
        !text.contains("demo-password"),
        "the password was echoed: {text}"
    );
    assert!(text.contains("OAUTH_TEST"), "signed in: {text}");
}

/// A `class-oauth refresh` killed with SIGKILL (30 times, at random points of a slow
/// refresh) never makes the next command wait for its lease: `token`, whose access token
/// has expired, takes over the dead process's lease and answers at once,
/// with a token (the refresh never reached the server, or the in-doubt retry kept the
/// grant) or with exit 6 (the killed refresh had rotated the token: the grant is lost and
/// says why), never exit 7 or a 30 s wait for a holder that is gone.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_refresh_never_makes_the_next_command_wait() {
    // Access tokens that live 1 s: after each kill the next `token` must refresh, so it
    // needs the lease the killed process left behind.
    let mut config = EmulatorConfig::demo();
    config.access_token_lifetime = 1;
    let rig = Rig::new(config);
    rig.password_login();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let (mut kept, mut lost, mut slowest) = (0, 0, std::time::Duration::ZERO);
    for round in 0..30 {
        // xorshift: a random moment to kill at, not a security value
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_millis(1100)); // the token expires
        rig.emulator.inject(
            "/connect/token",
            Fault::Delay(std::time::Duration::from_millis(400)),
            1,
        );
        let mut child = rig
            .cmd(&["--json", "refresh"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(seed % 120));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let started = std::time::Instant::now();
        let out = wait_bounded(
            rig.cmd(&["--json", "token"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            60,
        );
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < std::time::Duration::from_secs(10),
            "round {round}: `token` waited {took:?} after a killed refresh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => kept += 1,
            Some(6) => {
                lost += 1;
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let message = v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    message.contains("outcome was unknown") || message.contains("refused"),
                    "round {round}: a lost grant says why: {message}"
                );
                rig.password_login();
            }
            other => panic!(
                "round {round}: `token` exited {other:?} after a killed refresh: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    eprintln!(
        "30 killed refreshes: `token` kept the grant {kept} times, found it lost {lost} times; slowest `token` {slowest:?}"
    );
}

/// A store that cannot be written exits 7 (the local store failed) and names the file,
/// before anything is spent; once the user restores its mode, it works again, and a
/// side file left behind with the old mode does not keep it read-only.
#[cfg(unix)]
#[test]
fn a_read_only_store_exits_7_and_names_the_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let rig = Rig::new(EmulatorConfig::demo());
    rig.password_login();
    let store = rig.dir.path().join("grants.sqlite3");
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    chmod(&store, 0o400);
    let before = rig.emulator.requests().len();
    let err = json(&rig.run(&["--json", "token"]), 7);
    let message = err["error"]["message"].as_str().unwrap();
    assert_eq!(err["error"]["kind"], "store");
    assert!(
        message.contains(store.to_str().unwrap()) && message.contains("0400"),
        "{message}"
    );
    assert_eq!(rig.emulator.requests().len(), before, "nothing was sent");
    chmod(&store, 0o600);
    let shm = rig.dir.path().join("grants.sqlite3-shm");
    if shm.exists() {
        chmod(&shm, 0o400);
    }
    json(&rig.run(&["--json", "token"]), 0);
}

/// The store cannot take the rotated tokens of a refresh (another writer holds its lock
/// until after the command gave up): the command keeps trying within its bound, then
/// seals them into the recovery file beside the store and exits 7 saying the grant is at
/// risk and where they are; it never exits with them only in memory. The next command
/// writes them first: the grant goes on with no second refresh.
#[cfg(unix)]
#[test]
fn rotated_tokens_the_store_refuses_are_kept_for_the_next_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let rig = Rig::new(EmulatorConfig::demo());
    rig.password_login();
    let store = rig.dir.path().join("grants.sqlite3");
    let recovery = rig.dir.path().join("grants.sqlite3.recovery");
    rig.emulator.inject(
        "/connect/token",
        Fault::Delay(std::time::Duration::from_millis(800)),
        1,
    );
    let child = rig
        .cmd(&["--json", "refresh"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request is on its way (the in-doubt mark written): another writer takes the
    // store's lock and keeps it until the command has given up.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let other = rusqlite::Connection::open(&store).unwrap();
    other
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = wait_bounded(child, 90);
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    let err = json(&out, 7);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("at risk") && message.contains(recovery.to_str().unwrap()),
        "{message}"
    );
    let mode = std::fs::metadata(&recovery).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let refreshes = rig.emulator.count("/connect/token");
    // The next command writes them first, then serves the rotated access token.
    let token = json(&rig.run(&["--json", "token"]), 0);
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(!recovery.exists(), "imported, then removed");
    assert_eq!(
        rig.emulator.count("/connect/token"),
        refreshes,
        "no second refresh: the kept tokens serve"
    );
    json(&rig.run(&["--json", "refresh"]), 0);
}

/// A managed PostgreSQL (TLS only, a private CA) as the store: the connection string
/// carries `sslmode=verify-full` and the CA file, as libpq takes them; the login, the
/// token and the grant health go through it. The wrong CA is the store failing (exit 7)
/// with what to check, and no grant is used.
#[test]
fn a_managed_postgres_is_reached_over_verified_tls() {
    let cluster = class_oauth_fixtures::pg_cluster::TlsCluster::start()
        .unwrap_or_else(|e| panic!("the throwaway cluster: {e}"));
    let rig = Rig::new(EmulatorConfig::demo());
    let store = |ca: &std::path::Path| {
        cluster.url(
            "postgres",
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        )
    };
    let with_store = |ca: &std::path::Path, args: &[&str], input: Option<&str>| {
        let mut cmd = rig.cmd(args);
        cmd.env("CLASS_OAUTH_STORE", store(ca));
        match input {
            Some(i) => feed(&mut cmd, i),
            None => within(
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
                args,
            ),
        }
    };
    json(
        &with_store(
            &cluster.ca,
            &[
                "--json",
                "password",
                "--username",
                "sam@example.com",
                "--password-stdin",
            ],
            Some("demo-password\n"),
        ),
        0,
    );
    let token = json(&with_store(&cluster.ca, &["--json", "token"], None), 0);
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{token}"
    );
    let grants = json(&with_store(&cluster.ca, &["--json", "grants"], None), 0);
    assert_eq!(grants[0]["status"], "active", "{grants}");

    let refused = with_store(&cluster.other_ca, &["--json", "token"], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("certificate was refused") && stderr.contains("sslrootcert"),
        "{stderr}"
    );
}

/// Scripting the API with nothing in the environment: against `class-oauth emulator`,
/// `config set` (env, client-id, the secret from stdin) and a login are enough for
/// `class-oauth api b/OAUTH_TEST/fund/list` to print the funds; flags still override the
/// config; `-i`, `-q`, `-X` and `--data` shape the call; API refusals and bad input get
/// the contract's exit codes.
#[test]
fn config_set_and_a_login_are_enough_to_script_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = standalone_emulator();
    // Only HOME and the config directory: no CLASS_* variable at all.
    let cli = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_class-oauth"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("CLASS_OAUTH_KEYRING", "off");
        c
    };
    let run = |args: &[&str]| {
        within(
            cli(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            args,
        )
    };
    json(&run(&["--json", "config", "set", "env", &issuer]), 0);
    json(
        &run(&["--json", "config", "set", "client-id", "demo-client"]),
        0,
    );
    json(
        &feed(
            &mut cli(&["--json", "config", "set", "client-secret"]),
            "demo-secret\n",
        ),
        0,
    );
    // A secret is never an argument.
    json(
        &run(&["--json", "config", "set", "client-secret", "demo-secret"]),
        2,
    );
    let listed = json(&run(&["--json", "config", "list"]), 0);
    assert_eq!(listed["client_id"], "demo-client", "{listed}");
    assert_eq!(listed["client_secret_kept"], true, "{listed}");
    let text = String::from_utf8_lossy(&run(&["config", "list"]).stdout).into_owned();
    assert!(
        !text.contains("demo-secret"),
        "the secret is never shown: {text}"
    );
    let secret_file = dir.path().join("config/class-oauth/client-secret.default");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&secret_file).unwrap().permissions()
        ) & 0o777,
        0o600
    );

    json(
        &feed(
            &mut cli(&[
                "--json",
                "password",
                "--username",
                "sam@example.com",
                "--password-stdin",
            ]),
            "demo-password\n",
        ),
        0,
    );
    let funds = run(&["api", "b/OAUTH_TEST/fund/list"]);
    let stdout = String::from_utf8_lossy(&funds.stdout).into_owned();
    assert_eq!(
        funds.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&funds.stderr)
    );
    let data: Value = serde_json::from_str(&stdout).expect("the data as JSON");
    assert_eq!(
        data["Funds"][0]["Name"], "Sample Family Super Fund",
        "the envelope's Data: {data}"
    );
    // -i: the status and rate-limit headers first; --json: one object.
    let included =
        String::from_utf8_lossy(&run(&["api", "-i", "b/OAUTH_TEST/fund/list"]).stdout).into_owned();
    assert!(included.starts_with("HTTP 200"), "{included}");
    assert!(
        included.contains("X-RateLimit-1Min-Remaining: "),
        "{included}"
    );
    let whole = json(
        &run(&["--json", "api", "-q", "page=1", "b/OAUTH_TEST/fund/list"]),
        0,
    );
    assert_eq!(whole["status"], 200, "{whole}");
    assert_eq!(whole["data"], data);
    // Another business: Class refuses (3). A bad method, a bad query, a body that is not
    // JSON: usage (2).
    assert_eq!(
        run(&["--json", "api", "b/NOT_MINE/fund/list"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        run(&["--json", "api", "-X", "G E T", "b/OAUTH_TEST/fund/list"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["--json", "api", "-q", "page", "b/OAUTH_TEST/fund/list"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[
            "--json",
            "api",
            "-X",
            "POST",
            "--data",
            "{not json",
            "b/OAUTH_TEST/fund/list"
        ])
        .status
        .code(),
        Some(2)
    );
    // A flag overrides the config: another client id has no grant here (6).
    let other = run(&[
        "--json",
        "--client-id",
        "someone-else",
        "api",
        "b/OAUTH_TEST/fund/list",
    ]);
    assert_eq!(
        other.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&other.stdout)
    );
    json(&run(&["--json", "config", "unset", "client-id"]), 0);
    assert_eq!(
        json(&run(&["--json", "config", "get", "client-id"]), 0)["value"],
        Value::Null
    );
    assert_eq!(run(&["config", "get", "client-id"]).status.code(), Some(2));
    assert_eq!(
        run(&["config", "get", "env"]).stdout,
        format!("{issuer}\n").into_bytes()
    );
    drop(server);
}

/// Shell completions and the manual page come from the command's own definition, so
/// they name every command (the newest included) without a profile or a store.
#[test]
fn completions_and_the_manual_page_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        within(
            Command::new(env!("CARGO_BIN_EXE_class-oauth"))
                .args(args)
                .env_clear()
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            args,
        )
    };
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["api", "config", "grants", "token", "completions"] {
            assert!(
                script.contains(command),
                "{shell} completions lack {command}"
            );
        }
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
    let page = run(&["man"]);
    assert_eq!(page.status.code(), Some(0));
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH class-oauth 1"), "{page}");
    for command in ["api", "config", "grants", "Exit codes"] {
        assert!(page.contains(command), "the manual page lacks {command}");
    }
}
