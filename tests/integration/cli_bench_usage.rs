//! `socketkit bench` refuses up front what it cannot run: a mode on an endpoint it cannot
//! load, an option given to a mode that does not use it. Each is exit 2 with one `error:`
//! line, before any connection or wait; the same options where the mode uses them run.

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

#[test]
fn an_option_the_mode_does_not_use_is_bad_usage() {
    let tcp = "127.0.0.1:9";
    let udp = "udp:127.0.0.1:9";
    let cases = [
        (
            format!("{tcp} --size 10"),
            format!(
                "--size does not apply to --mode greeting on a stream endpoint (tcp:{tcp}): \
                 it is the size of echo's blocks and of the datagram a greeting sends to a \
                 udp: or unixgram: endpoint"
            ),
        ),
        (
            format!("{tcp} --window 10"),
            "--window does not apply to --mode greeting: it is the bytes in flight of an echo \
             stream connection"
                .to_owned(),
        ),
        (
            format!("{udp} --mode echo --window 10"),
            format!(
                "--window does not apply to --mode echo on a datagram endpoint ({udp}): it is \
                 the bytes in flight of an echo stream connection"
            ),
        ),
        (
            format!("{tcp} --mode echo --expect hi"),
            "--expect does not apply to --mode echo: it is what every greeting answer must \
             be (echo checks that its own bytes come back)"
                .to_owned(),
        ),
        (
            format!("{tcp} --mode idle --expect-hex 00"),
            "--expect-hex does not apply to --mode idle: it is what every greeting answer \
             must be (echo checks that its own bytes come back)"
                .to_owned(),
        ),
        (
            format!("{tcp} --mode echo --rate 5"),
            format!(
                "--rate does not apply to --mode echo on a stream endpoint (tcp:{tcp}): it \
                 paces greeting connections and datagram requests; echo keeps its stream \
                 connections busy, idle holds its connections"
            ),
        ),
        (
            format!("{tcp} --mode idle --size 10"),
            "--size does not apply to --mode idle: it is the size of echo's blocks and of the \
             datagram a greeting sends to a udp: or unixgram: endpoint"
                .to_owned(),
        ),
        (
            format!("{tcp} --mode idle --warmup 1s"),
            "--warmup does not apply to --mode idle: idle opens its connections once and \
             counts all of them, with no warm-up"
                .to_owned(),
        ),
        (
            format!("{tcp} --mode echo --server-pid 1"),
            "--server-pid does not apply to --mode echo: it measures the server's memory per \
             held connection"
                .to_owned(),
        ),
    ];
    for (args, why) in cases {
        refused(&format!("{args} -d 5s"), &format!("error: {why}"));
    }
}

/// The defaults are not "given": each mode runs with none of its options, and with the ones
/// it uses (here against a port nothing listens on: exit 1, having run).
#[test]
fn the_options_a_mode_uses_are_taken() {
    let port = crate::support::net::free_port();
    let (tcp, udp) = (format!("127.0.0.1:{port}"), format!("udp:127.0.0.1:{port}"));
    let runs = [
        tcp.clone(),
        format!("{tcp} --mode echo"),
        format!("{tcp} --mode idle"),
        format!("{tcp} --expect hi --rate 50 --warmup 0"),
        format!("{tcp} --mode echo --size 10 --window 20 --warmup 0"),
        format!("{tcp} --mode idle --warmup 0"),
        format!("{udp} --size 10 --expect-hex 00 --rate 50"),
        format!("{udp} --mode echo --size 10 --rate 50"),
    ];
    for args in runs {
        let out = bench(&format!("{args} -c 1 -d 100ms --timeout 100ms"));
        assert_eq!(out.code(), 1, "{args}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: nothing completed against "),
            "{args}: {}",
            out.stderr
        );
    }
}
