//! `socketkit connect` whose input the peer refused with a reset after its own end (a FIN,
//! or TLS's close_notify, came first; the kernel then says `EPIPE`, not `ECONNRESET`): a
//! receiver that half-closed and was then killed mid-transfer, a server that closed at
//! once without reading. The bytes were lost, and the run ended 0 as if delivered (an
//! outside audit; ncat and socat say `Broken pipe`, exit 1). It is the reset it is now.

use std::io::Read;
use std::net::{Shutdown, TcpListener};
use std::thread;

use crate::support::process::{DEADLINE, Running, run, socketkit};

/// Enough input that the peer cannot have taken it all before it goes.
fn input() -> Vec<u8> {
    vec![b'x'; 20 << 20]
}

/// Runs `connect ARGS… ENDPOINT` with the input: its exit code and stderr.
fn send(endpoint: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = socketkit();
    cmd.arg("connect").args(args).arg(endpoint);
    let out = run(cmd, input(), DEADLINE);
    (out.code(), out.stderr)
}

/// A receiver that half-closes as it accepts (`listen </dev/null > file`), takes some of
/// the transfer, then goes with the rest unread (killed; its disk full): a reset.
fn receiver_that_leaves() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut some = vec![0u8; 256 << 10];
        conn.read_exact(&mut some).expect("the first bytes");
        // Dropped with the rest unread: the kernel resets the connection.
    });
    (addr, handle)
}

#[test]
fn a_receiver_that_half_closed_and_left_mid_transfer_is_an_error() {
    for args in [&[][..], &["--send-only"][..]] {
        let (addr, receiver) = receiver_that_leaves();
        let (code, stderr) = send(&addr, args);
        receiver.join().expect("the receiver");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("connection reset by peer"),
            "{args:?}: {stderr}"
        );
    }
}

/// A server that closes at once without reading (a greeting with nothing to say), over
/// TCP and over TLS: nothing of the input arrived.
#[test]
fn a_server_that_closed_without_reading_refuses_the_input_with_an_error() {
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "--message", "", "-l", "127.0.0.1:0"])
        .args(["-l", "tls:127.0.0.1:0", "--tls-self-signed"]);
    let server = Running::start(cmd, 2);
    let [plain, tls] = [0, 1].map(|i| server.endpoints()[i].clone());
    for (endpoint, args) in [
        (plain.as_str(), &[][..]),
        (plain.as_str(), &["--send-only"][..]),
        (tls.as_str(), &["--tls-insecure"][..]),
        (tls.as_str(), &["--tls-insecure", "--send-only"][..]),
    ] {
        let (code, stderr) = send(endpoint, args);
        assert_eq!(code, 1, "{endpoint} {args:?}: {stderr}");
        assert!(
            stderr.contains("connection reset by peer"),
            "{endpoint} {args:?}: {stderr}"
        );
    }
}
