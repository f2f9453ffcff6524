//! `socketkit_config_reloads_total{result}` and `socketkit_config_last_reload_successful`:
//! a SIGHUP reload that fails in part (a rule file, a target list that no longer parses)
//! keeps the old settings and said so on the log only, where no alert could see it.

use std::time::Duration;

use crate::balancer::{sample, start_with_metrics};
use crate::cli_forward_udp::metered_relay;
use crate::support::net::http_get;
use crate::support::process::{Running, socketkit};
use crate::support::wait_until;

/// The value of the metric `name` that has no labels.
fn unlabelled(metrics: &str, name: &str) -> u64 {
    let text = http_get(metrics, "/metrics").1;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// How many series of the metrics at `metrics` are labelled `target="ENDPOINT"`.
fn target_series(metrics: &str, endpoint: &str) -> usize {
    let text = http_get(metrics, "/metrics").1;
    text.lines()
        .filter(|line| line.contains(&format!("target=\"{endpoint}\"")))
        .count()
}

/// Sends SIGHUP and waits until the reload has been counted as `success` and `failure`.
fn reload(server: &Running, metrics: &str, success: u64, failure: u64) {
    server.signal(libc::SIGHUP);
    let count = |result: &str| {
        sample(
            metrics,
            "socketkit_config_reloads_total",
            &format!("result=\"{result}\""),
        )
    };
    wait_until(
        Duration::from_secs(5),
        || format!("reloads not counted as {success} and {failure}"),
        || count("success") == success && count("failure") == failure,
    );
}

/// A server's rule file, and a datagram relay's target list with its rules.
#[test]
fn a_failed_reload_is_counted_and_the_next_good_one_clears_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("allow.txt");
    std::fs::write(&rules, "127.0.0.0/8\n").expect("write");
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .arg("--allow-file")
    .arg(&rules);
    let (server, metrics) = start_with_metrics(cmd);
    let last = "socketkit_config_last_reload_successful";
    assert_eq!(
        unlabelled(&metrics, last),
        1,
        "successful before any reload"
    );
    reload(&server, &metrics, 1, 0);
    std::fs::write(&rules, "not a network\n").expect("write");
    reload(&server, &metrics, 1, 1);
    assert_eq!(unlabelled(&metrics, last), 0);
    std::fs::write(&rules, "127.0.0.1\n").expect("write");
    reload(&server, &metrics, 2, 1);
    assert_eq!(unlabelled(&metrics, last), 1);

    let targets = dir.path().join("targets.txt");
    std::fs::write(&targets, "udp:127.0.0.1:9\n").expect("write");
    let (targets_file, rules_file) = (targets.to_string_lossy(), rules.to_string_lossy());
    let (relay, metrics) =
        metered_relay(&["--to-file", &targets_file, "--allow-file", &rules_file]);
    std::fs::write(&targets, "127.0.0.1:9\n").expect("write");
    reload(&relay, &metrics, 0, 1);
    assert_eq!(unlabelled(&metrics, last), 0);
}

/// `forward --to-file`: a target a SIGHUP removes while a relay to it is open keeps its
/// series until that relay ends, then loses them ("one that left loses its metric series");
/// they stayed, `up 1` included, until some later reload (an outside audit of combined
/// features).
#[test]
fn a_removed_target_leaves_the_metrics_when_its_last_relay_ends() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let echo = Running::start(
        {
            let mut cmd = socketkit();
            cmd.args(["serve", "echo", "-l", "127.0.0.1:0", "-l", "127.0.0.1:0"]);
            cmd
        },
        2,
    );
    let (a, b) = (echo.endpoints()[0].clone(), echo.endpoints()[1].clone());
    let targets = dir.path().join("targets.txt");
    std::fs::write(&targets, format!("{a}\n")).expect("write");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--to-file")
        .arg(&targets);
    let (relay, metrics) = start_with_metrics(cmd);
    let mut client = crate::support::net::connect(&relay.addr());
    client.write_all(b"ping").expect("write");
    let mut echoed = [0u8; 4];
    client.read_exact(&mut echoed).expect("the echo through a");
    let series = |endpoint: &str| target_series(&metrics, endpoint);
    assert!(series(&a) > 0, "a is counted while it is in the list");
    std::fs::write(&targets, format!("{b}\n")).expect("write");
    reload(&relay, &metrics, 1, 0);
    assert!(series(&a) > 0, "kept while its relay is open");
    drop(client);
    wait_until(
        Duration::from_secs(5),
        || {
            format!(
                "a's series stayed after its last relay:\n{}",
                http_get(&metrics, "/metrics").1
            )
        },
        || series(&a) == 0,
    );
    assert!(series(&b) > 0, "b is counted");
}

/// The same for a target a SIGHUP removes while its health check runs (a dead target whose
/// check waits out `--timeout`, the common reason to remove one): its series went only when
/// some relay ended (the review of the fix above).
#[test]
fn a_target_removed_during_its_health_check_leaves_the_metrics_when_the_check_ends() {
    use socketkit::socket::{Family, Socket, Type};
    let dir = tempfile::tempdir().expect("temp dir");
    // A target that drops every SYN: a listener whose accept queue one connection fills.
    let hole = Socket::new(Family::Inet, Type::Stream).expect("socket");
    hole.bind(("127.0.0.1", 0)).expect("bind");
    hole.listen(0).expect("listen");
    let dropped = hole.local_addr().expect("addr").to_string();
    let _filler = std::net::TcpStream::connect(&dropped).expect("the filler");
    let good = Running::start(
        {
            let mut cmd = socketkit();
            cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]);
            cmd
        },
        1,
    );
    let good = good.endpoints()[0].clone();
    let targets = dir.path().join("targets.txt");
    std::fs::write(&targets, format!("{good}\n{dropped}\n")).expect("write");
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--check-interval", "200ms", "--timeout", "1500ms"])
        .arg("--to-file")
        .arg(&targets);
    let (relay, metrics) = start_with_metrics(cmd);
    let series = |endpoint: &str| target_series(&metrics, &format!("tcp:{endpoint}"));
    assert!(series(&dropped) > 0, "counted while in the list");
    // Its first check is under way (it waits out the timeout): removed meanwhile.
    std::fs::write(&targets, format!("{good}\n")).expect("write");
    reload(&relay, &metrics, 1, 0);
    wait_until(
        Duration::from_secs(6),
        || format!("its series stayed:\n{}", http_get(&metrics, "/metrics").1),
        || series(&dropped) == 0,
    );
}
