//! 64 tasks on one client: requests/s against the floor on the same client.

use super::*;

/// 64 tasks on one client, on the pinned client thread, in 250 ms windows (four per
/// round and variant); requests/s and the paired ratio to the floor on the same client.
pub(super) fn concurrent(
    rt: &tokio::runtime::Runtime,
    base: &str,
    reqwest13: &reqwest::Client,
    reqwest12: &reqwest012::Client,
    rounds: usize,
) -> Vec<(&'static str, f64, (f64, f64, f64))> {
    const TASKS: usize = 64;
    let names = [
        "raw reqwest 0.13 (floor)",
        "class-oauth-reqwest",
        "raw reqwest 0.12 (floor)",
        "oauth2-rs 5 on reqwest 0.12",
    ];
    let transport = our_reqwest();
    let url = format!("{base}/connect/token");
    let auth = basic();
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // As in `measure`: short windows, each variant next to its floor, A B B A.
    let order = |sample: usize| -> [usize; 4] {
        let groups = if sample % 2 == 0 {
            [[0, 1], [2, 3]]
        } else {
            [[2, 3], [0, 1]]
        };
        let [a, b] = if (sample / 2) % 2 == 0 {
            groups
        } else {
            groups.map(|[x, y]| [y, x])
        };
        [a[0], a[1], b[0], b[1]]
    };
    for sample in 0..rounds * 4 {
        for which in order(sample) {
            let done = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let deadline = started + Duration::from_millis(250);
            rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..TASKS {
                    let (done, url, auth) = (done.clone(), url.clone(), auth.clone());
                    let (r13, r12, transport) =
                        (reqwest13.clone(), reqwest12.clone(), transport.clone());
                    let (client, peer) = (our_client(base), oauth2_client(base));
                    tasks.spawn(async move {
                        while Instant::now() < deadline {
                            let d = match which {
                                0 => raw_reqwest_grant!(r13, &url, &auth),
                                1 => ours_digest(
                                    &class_oauth_reqwest::drive(
                                        &transport,
                                        TokenFlow::new(&client, our_request()),
                                    )
                                    .await
                                    .expect("grant"),
                                ),
                                2 => raw_reqwest_grant!(r12, &url, &auth),
                                _ => oauth2_digest(
                                    &peer
                                        .exchange_refresh_token(&oauth2::RefreshToken::new(
                                            RT.into(),
                                        ))
                                        .request_async(&r12)
                                        .await
                                        .expect("grant"),
                                ),
                            };
                            assert_eq!(d, DIGEST);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            });
            rps[which].push(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64());
        }
    }
    let floor_of = |i: usize| if i < 2 { 0 } else { 2 };
    (0..names.len())
        .map(|i| {
            let ratios: Vec<f64> = rps[i]
                .iter()
                .zip(&rps[floor_of(i)])
                .map(|(a, b)| a / b)
                .collect();
            (names[i], median(&rps[i]), spread(&ratios))
        })
        .collect()
}
