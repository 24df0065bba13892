//! Fleet mode against a real 3-member etcd cluster (Debian etcd 3.4, started on loopback by
//! the tests): the client fails over between members, `cluster keygen` and `config check`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use evercert::fleet::ClusterSettings;
use evercert::fleet::etcd::{Etcd, EtcdError};

use crate::support::etcd::EtcdCluster;
use crate::support::setup::evercert_in;

fn settings(cluster: &EtcdCluster, prefix: &str) -> ClusterSettings {
    ClusterSettings {
        name: "web-1".into(),
        etcd: cluster.endpoints(),
        prefix: prefix.into(),
        secret_key_file: "/nonexistent".into(),
        tls: None,
        username: None,
        password_file: None,
        // Generous for a loaded 2-core machine; the point is that it is bounded.
        timeout: Duration::from_secs(3),
        lease_ttl: Duration::from_secs(5),
        ack_timeout: Duration::from_secs(10),
        reload_jitter: Duration::ZERO,
        lag_alert: Duration::from_secs(60),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// etcd-client alone fails a third of its requests with one member of three down
/// (TESTBEDS.md); through evercert's wrapper every request succeeds while a quorum is up,
/// and with two members down every request fails within its deadlines, naming each member.
#[test]
fn requests_fail_over_between_members_and_fail_bounded_without_quorum() {
    let mut cluster = EtcdCluster::start();
    let settings = settings(&cluster, "/t");
    let rt = runtime();
    let etcd = Etcd::new(&settings).unwrap();
    rt.block_on(async {
        etcd.put("/t/a", b"1", None).await.unwrap();
        assert_eq!(etcd.get("/t/a").await.unwrap().unwrap().value(), b"1");
    });

    // The member the client used last, then the leader whoever it is now.
    cluster.kill(0);
    rt.block_on(async {
        for round in 0..30 {
            let value = format!("{round}");
            etcd.put("/t/a", value.as_bytes(), None)
                .await
                .unwrap_or_else(|err| panic!("round {round} with one member down: {err}"));
            assert_eq!(
                etcd.get("/t/a").await.unwrap().unwrap().value(),
                value.as_bytes()
            );
        }
    });

    cluster.restart(0);
    let leader = cluster.leader().expect("a leader after the restart");
    cluster.kill(leader);
    rt.block_on(async {
        let started = Instant::now();
        loop {
            match etcd.put("/t/b", b"after the leader died", None).await {
                Ok(()) => break,
                // A new election takes about one election timeout; writes wait for it.
                Err(err) if started.elapsed() < Duration::from_secs(30) => {
                    assert!(err.is_unreachable(), "{err}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("no write within 30 s of killing the leader: {err}"),
            }
        }
        assert!(etcd.get("/t/b").await.unwrap().is_some());
    });

    // Two of three down: no quorum. Every request fails, each member tried once, in bounded
    // time (three deadlines), and the message says what to check.
    let other = (0..3).find(|index| *index != leader).unwrap();
    cluster.kill(other);
    rt.block_on(async {
        let started = Instant::now();
        let err = etcd.put("/t/c", b"x", None).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < settings.timeout * 3 + Duration::from_secs(5),
            "took {elapsed:?}"
        );
        let EtcdError::Unreachable { attempts, .. } = &err else {
            panic!("expected Unreachable, got {err}");
        };
        assert_eq!(attempts.len(), 3, "{err}");
        assert!(err.to_string().contains("etcdctl endpoint health"), "{err}");
    });
}

#[test]
fn keygen_prints_a_fresh_32_byte_key_and_config_check_takes_the_cluster_section() {
    let dir = tempfile::tempdir().unwrap();
    let first = evercert_in(dir.path(), &["cluster", "keygen"]);
    assert_eq!(first.code, 0, "{first}");
    let second = evercert_in(dir.path(), &["cluster", "keygen"]);
    let key = base64::engine::general_purpose::STANDARD
        .decode(first.stdout.trim())
        .unwrap();
    assert_eq!(key.len(), 32);
    assert_ne!(first.stdout, second.stdout);

    let config = dir.path().join("evercert.toml");
    let write = |cluster: &str| {
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\n[acme]\ncontact = [\"mailto:ops@example.test\"]\n{cluster}",
                dir.path().join("state").display()
            ),
        )
        .unwrap();
    };
    write(
        "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nprefix = \"/evercert/shop\"\nsecret_key_file = \"fleet.key\"\n",
    );
    let config_arg = config.to_str().unwrap();
    let run = evercert_in(dir.path(), &["-c", config_arg, "config", "check"]);
    assert_eq!(run.code, 0, "{run}");
    write("[cluster]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"/evercert/shop\"\n");
    let run = evercert_in(dir.path(), &["-c", config_arg, "config", "check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("evercert.toml:5:"), "{run}");
    assert!(run.stderr.contains("not a client URL"), "{run}");
    assert!(run.stderr.contains("needs secret_key_file"), "{run}");
}
