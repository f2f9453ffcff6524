//! `socketkit bench` refuses up front what it cannot run: a mode on an endpoint it cannot
//! load. Each is exit 2 with one `error:` line, before any connection or wait.

use std::time::{Duration, Instant};

use crate::support::process::{DEADLINE, Output, run, socketkit};

/// `socketkit bench ARGS…` (no value has a space in these tests).
fn bench(args: &str) -> Output {
    let mut cmd = socketkit();
    cmd.arg("bench").args(args.split_whitespace());
    run(cmd, Vec::new(), DEADLINE)
}

/// Runs `args`, which must be refused at once with the one line `want`.
fn refused(args: &str, want: &str) {
    let started = Instant::now();
    let out = bench(args);
    assert_eq!(out.code(), 2, "{args}: {}", out.stderr);
    assert_eq!(out.stderr.trim_end(), want, "{args}");
    assert!(out.stdout.is_empty(), "{args}: {:?}", out.stdout);
    // The runs ask for 5 s: refused means nothing ran.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{args} took {took:?}");
}

#[test]
fn idle_on_a_datagram_endpoint_is_bad_usage() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let unixgram = format!("unixgram:{}", dir.path().join("d.sock").display());
    for endpoint in ["udp:127.0.0.1:9", unixgram.as_str()] {
        refused(
            &format!("{endpoint} --mode idle -d 5s"),
            &format!(
                "error: --mode idle holds stream connections (tcp:, tls:, unix:), and \
                 {endpoint} is a datagram endpoint"
            ),
        );
    }
}
