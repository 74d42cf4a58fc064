use super::*;
use class_oauth_client::blocking::block_on;
use class_oauth_core::flow::drive_blocking;
use class_oauth_core::scope::Scopes;
use class_oauth_core::{ClientId, ClientSecret, Environment, Password, Username};
use class_oauth_store::MemoryStore;

const T0: u64 = 1_780_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn endpoints() -> Arc<Endpoints> {
    Arc::new(Environment::parse("https://class.test").unwrap().preset())
}

fn config() -> ClientConfig {
    ClientConfig::new(ClientId::new("c"), Some(ClientSecret::new("s")))
}

fn token_body(n: u32, id_token: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "access_token": format!("at-{n}"), "token_type": "bearer", "expires_in": 899,
        "refresh_token": format!("rt-{n}"), "scope": "offline_access target:b/BIZ fund.read",
    });
    if let Some(t) = id_token {
        v["id_token"] = serde_json::json!(t);
    }
    serde_json::to_vec(&v).unwrap()
}

fn ok(body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// A logged-in grant, as a password grant's response parses, stored at `now`.
fn login(store: &MemoryStore, key: &TenantKey, now: SystemTime) {
    let flow = config()
        .password_flow(
            &endpoints(),
            None,
            Username::new("u"),
            Password::new("p"),
            Scopes::parse("offline_access target:b fund.read").unwrap(),
        )
        .unwrap();
    let v = drive_blocking(flow, || now, |_| Ok(ok(token_body(0, None))), |_| {}).unwrap();
    block_on(store.save(key, &v.tokens, None, None)).unwrap();
}

#[derive(Default)]
struct Counts {
    store: u32,
    http: u32,
}

/// The whole driver: the machine's actions on a memory store and an HTTP closure,
/// no runtime, no thread.
fn drive(
    m: RefreshMachine,
    store: &MemoryStore,
    now: SystemTime,
    http: impl FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>,
    counts: &mut Counts,
) -> Finished {
    drive_with(m, store, now, http, counts, |_, _| None)
}

/// [`drive`], where `intercept` may answer a store operation itself (a fault).
fn drive_with(
    mut m: RefreshMachine,
    store: &MemoryStore,
    now: SystemTime,
    mut http: impl FnMut(Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>,
    counts: &mut Counts,
    mut intercept: impl FnMut(&StoreOp, &MemoryStore) -> Option<StoreAnswer>,
) -> Finished {
    let key = m.key().clone();
    for _ in 0..100 {
        match m.poll(now) {
            Action::Done(f) => return *f,
            Action::Wait(_) => {}
            Action::Endpoints => m.handle_endpoints(now, Ok(endpoints())),
            Action::Send(r) => {
                counts.http += 1;
                match http(r) {
                    Ok(resp) => m.handle_response(now, resp),
                    Err(e) => m.handle_transport_failure(now, e),
                }
            }
            Action::Store(op) => {
                counts.store += 1;
                if let Some(answer) = intercept(&op, store) {
                    m.handle_store(now, answer);
                    continue;
                }
                m.handle_store(now, block_on(op.perform(store, &key)));
            }
        }
    }
    panic!("the machine did not finish within 100 steps");
}

fn machine(key: &TenantKey, n: u32) -> RefreshMachine {
    RefreshMachine::new(
        key.clone(),
        Lease::new(format!("test-{n}"), Duration::from_secs(120)),
        None,
        Arc::new(Settings::default()),
        config(),
        None,
        None,
    )
}

/// A due refresh without an ID token: load; the lease with the in-doubt mark in one
/// conditional write; the rotated tokens written with the lease released in the same
/// write: 3 store operations and one request (4 before the mark went with the lease).
#[test]
fn a_refresh_costs_three_store_operations_and_one_request() {
    let store = MemoryStore::new();
    let key = TenantKey::new(&ClientId::new("c"), "BIZ");
    login(&store, &key, at(0));
    let mut counts = Counts::default();
    let f = drive(
        machine(&key, 1),
        &store,
        at(850),
        |_| Ok(ok(token_body(1, None))),
        &mut counts,
    );
    assert!(f.error.is_none(), "{:?}", f.error);
    assert_eq!(f.grant.unwrap().tokens.access_token.secret(), "at-1");
    assert_eq!((counts.store, counts.http), (3, 1));
    // The lease went with the write: another holder takes it at once.
    let other = Lease::new("other", Duration::from_secs(1));
    assert!(matches!(
        block_on(store.acquire_lease(&key, &other)).unwrap(),
        LeaseOutcome::Acquired {
            took_over_expired: false,
            ..
        }
    ));
}

/// Found by the simulator (seed 1, `--rule retry`): an access token withheld because
/// its ID token failed validation was served once a later refresh of that unverified
/// grant was left in doubt. Failed before withheld tokens were stored expired.
#[test]
fn a_withheld_access_token_is_never_served_after_an_in_doubt_refresh() {
    let store = MemoryStore::new();
    let key = TenantKey::new(&ClientId::new("c"), "BIZ");
    login(&store, &key, at(0));
    let mut counts = Counts::default();
    // The refresh response's ID token does not validate: withheld, kept unverified.
    let f = drive(
        machine(&key, 1),
        &store,
        at(850),
        |_| Ok(ok(token_body(1, Some("not.a.jwt")))),
        &mut counts,
    );
    assert!(
        matches!(f.error, Some(ManagerError::Validation(_))),
        "{:?}",
        f.error
    );
    let row = block_on(store.load(&key)).unwrap().unwrap();
    assert!(matches!(row.status, GrantStatus::Unverified { .. }));
    assert_eq!(row.tokens.refresh_token.as_ref().unwrap().secret(), "rt-1");
    // The next refresh gets no answer: in doubt, and nothing may be served.
    let f = drive(
        machine(&key, 2),
        &store,
        at(851),
        |_| {
            Err(TransportError::new(
                TransportErrorKind::Timeout,
                "timed out",
            ))
        },
        &mut counts,
    );
    assert!(
        matches!(f.error, Some(ManagerError::Transport(_))),
        "{:?}",
        f.error
    );
    assert!(
        f.grant.is_none(),
        "served the withheld access token {:?}",
        f.grant.map(|g| g.tokens.access_token.secret().to_owned())
    );
    assert!(matches!(
        block_on(store.load(&key)).unwrap().unwrap().status,
        GrantStatus::InDoubt { .. }
    ));
}

/// The write of the rotated tokens commits but its answer is lost (a failure), and
/// before the retry a newer holder takes the lease and marks the grant in doubt (its
/// request in flight). The retry must see its own write landed and leave the newer
/// mark alone. Found by the simulator (seed 2101, grace window); failed before: the
/// retry wrote again and erased the mark (status active).
#[test]
fn a_landed_write_retried_leaves_a_newer_holders_mark() {
    let store = MemoryStore::new();
    let key = TenantKey::new(&ClientId::new("c"), "BIZ");
    login(&store, &key, at(0));
    let newer = GrantStatus::InDoubt {
        reason: "a newer holder's refresh is in flight".into(),
    };
    let mut faulted = false;
    let f = drive_with(
        machine(&key, 1),
        &store,
        at(850),
        |_| Ok(ok(token_body(1, None))),
        &mut Counts::default(),
        |op, store| {
            let StoreOp::Update(u) = op else { return None };
            if u.tokens.is_none() || faulted {
                return None;
            }
            faulted = true;
            block_on(store.update(&key, &u.as_grant_update())).unwrap();
            let v = block_on(store.load(&key)).unwrap().unwrap().version;
            let lease = Lease::new("newer", Duration::from_secs(120)).marking(v, newer.clone());
            assert!(matches!(
                block_on(store.acquire_lease(&key, &lease)).unwrap(),
                LeaseOutcome::Acquired { marked: true, .. }
            ));
            Some(StoreAnswer::Updated(Err(StoreError::Backend(
                "the connection dropped after the commit".into(),
            ))))
        },
    );
    assert!(faulted);
    assert!(f.error.is_none() && f.held.is_none(), "{:?}", f.error);
    assert_eq!(f.grant.unwrap().tokens.access_token.secret(), "at-1");
    let row = block_on(store.load(&key)).unwrap().unwrap();
    assert_eq!(row.tokens.refresh_token.as_ref().unwrap().secret(), "rt-1");
    assert_eq!(row.status, newer, "the newer holder's mark stands");
}

/// Polled out of turn (an answer it did not ask for): a typed error, not a panic.
#[test]
fn an_answer_out_of_turn_ends_with_an_error() {
    let key = TenantKey::new(&ClientId::new("c"), "BIZ");
    let mut m = machine(&key, 1);
    m.handle_response(at(0), ok(Vec::new()));
    let Action::Done(f) = m.poll(at(0)) else {
        panic!("expected the end");
    };
    assert!(matches!(f.error, Some(ManagerError::Config(_))));
}
