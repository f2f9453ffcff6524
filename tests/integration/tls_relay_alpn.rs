//! A relay between two TLS sessions (`forward -l tls: --to tls:` with `--tls-alpn`) agreed
//! ALPN with its client and with its target apart, so the two could end up on different
//! protocols (the client's HTTP/1.1 sent to a target that chose h2: curl's `Empty reply`).
//! The target is offered the protocol the client agreed on, or none, and one that agrees on
//! none while the client agreed on one is refused. Found by an outside audit with other
//! languages' TLS stacks, and its review.

use crate::support::certs::Pki;
use crate::support::process::{DEADLINE, Output, Running, run, socketkit};

const BOTH: [&str; 4] = ["--tls-alpn", "h2", "--tls-alpn", "http/1.1"];

/// A TLS target taking the protocols `alpn`, whose program says the one agreed on.
fn target(pki: &Pki, alpn: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "exec", "--shell", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(alpn)
        .args(["--", "echo \"[$SOCKETKIT_TLS_ALPN]\""]);
    Running::start(cmd, 1)
}

/// The relay, TLS both ways with [`BOTH`], to `target`.
fn relay(pki: &Pki, target: &Running) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--to", &format!("tls:127.0.0.1:{}", target.port())])
        .args(["--tls-ca", pki.ca(), "--tls-sni", "localhost"])
        .args(BOTH);
    Running::start(cmd, 1)
}

/// `connect` to `relay` offering `offered`.
fn ask(pki: &Pki, relay: &Running, offered: &[&str]) -> Output {
    let mut cmd = socketkit();
    cmd.args(["connect", &format!("tls:127.0.0.1:{}", relay.port())])
        .args(["--tls-ca", pki.ca(), "--tls-sni", "localhost"])
        .args(offered);
    run(cmd, Vec::new(), DEADLINE)
}

#[test]
fn the_target_speaks_the_protocol_the_client_agreed_on() {
    let pki = Pki::new();
    let target = target(&pki, &BOTH);
    let relay = relay(&pki, &target);
    for (offered, agreed) in [
        (&["--tls-alpn", "http/1.1"][..], "[http/1.1]"),
        (&["--tls-alpn", "h2"][..], "[h2]"),
        (&[][..], "[]"),
    ] {
        let out = ask(&pki, &relay, offered);
        assert_eq!(
            out.code(),
            0,
            "{offered:?}: {}\n{}",
            out.stderr,
            relay.stderr()
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.trim(), agreed, "{offered:?}: {}", relay.stderr());
    }
}

/// A target that takes no ALPN at all carries on without one rather than refusing (OpenSSL's
/// servers do; so does a socketkit listener without `--tls-alpn`): a client that agreed on
/// a protocol with the relay would have its bytes sent to a target that speaks another
/// (curl's HTTP/2 preface to an HTTP/1.1 backend). The relay refuses that target.
#[test]
fn a_target_that_agrees_on_no_protocol_is_refused_when_the_client_agreed_on_one() {
    let pki = Pki::new();
    let target = target(&pki, &[]);
    let relay = relay(&pki, &target);
    let out = ask(&pki, &relay, &["--tls-alpn", "h2"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("[]"),
        "relayed to a target that speaks no h2: {}",
        relay.stderr()
    );
    relay.wait_for_stderr(&["agreed on no application protocol (ALPN)"], DEADLINE);
    // A client that asked for no protocol is relayed as before.
    let out = ask(&pki, &relay, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "{}",
        out.stderr
    );
}
