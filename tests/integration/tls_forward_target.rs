//! `forward --to tls:` against TLS servers that are not socketkit (Python's `ssl` module,
//! OpenSSL's s_server): the relay's half-close as close_notify, a target that truncates
//! its stream, and a client certificate presented to the target.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use crate::support::certs::Pki;
use crate::support::net::connect;
use crate::support::process::{DEADLINE, Running, lines_of, socketkit};
use crate::support::tls_peers::{python_server, s_server};

/// How long an answer may take through the relay on a loaded machine.
const ANSWER: Duration = Duration::from_secs(5);

/// `forward` from a port of its own to `tls:localhost:PORT`, trusting `pki`'s CA.
fn relay_to(pki: &Pki, port: u16) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to"])
        .arg(format!("tls:localhost:{port}"))
        .args(["--tls-ca", pki.ca()]);
    Running::start(cmd, 1)
}

#[test]
fn forward_originates_tls_and_maps_half_close_to_close_notify() {
    let pki = Pki::new();
    let Some(mut server) = python_server(&pki.server, "echo", "") else {
        return;
    };
    let relay = relay_to(&pki, server.port());
    let mut client = connect(&relay.addr());
    let data = crate::support::net::payload(300_000);
    client.write_all(&data).expect("send");
    // Our FIN becomes the relay's close_notify; the echo server answers only after it.
    client.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    client
        .read_to_end(&mut back)
        .expect("read until the relay closes");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo came back intact");
    // The Python server fails on a ragged EOF, so its success means close_notify came.
    assert_eq!(server.wait(DEADLINE).code(), Some(0), "{}", server.stderr());
}

/// A TLS target that ends without close_notify (nginx's stream `ssl` does, every time)
/// fails the relay after its last bytes: the client is reset, but only after it has had
/// every byte the relay took from the target, even a client slow to read them.
#[test]
fn forward_delivers_a_truncating_tls_targets_bytes_before_the_reset() {
    const SIZE: usize = 8 * 1024 * 1024;
    let pki = Pki::new();
    for round in 0..3 {
        let Some(server) = python_server(&pki.server, "truncate_bulk", &SIZE.to_string()) else {
            return;
        };
        let relay = relay_to(&pki, server.port());
        let mut client = connect(&relay.addr());
        client
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        // Late and slow, so the relay's last bytes wait in its socket when the target's
        // stream breaks.
        std::thread::sleep(Duration::from_millis(300));
        let mut got = 0;
        let mut buf = vec![0; 16 * 1024];
        let end = loop {
            match client.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    assert!(
                        buf[..n]
                            .iter()
                            .enumerate()
                            .all(|(i, &b)| usize::from(b) == (got + i) % 256),
                        "round {round}: wrong bytes after {got}"
                    );
                    got += n;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(err) => break Some(err.kind()),
            }
        };
        assert_eq!(got, SIZE, "round {round}: bytes the client got");
        assert_eq!(
            end,
            Some(std::io::ErrorKind::ConnectionReset),
            "round {round}: a cut stream ends in a reset"
        );
    }
}

#[test]
fn forward_presents_a_client_certificate_to_the_target() {
    let pki = Pki::new();
    let require = ["-Verify", "1", "-verify_return_error", "-CAfile", pki.ca()];
    let Some((mut server, port)) = s_server(&pki.server, &require) else {
        return;
    };
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to"])
        .arg(format!("tls:127.0.0.1:{port}"))
        .args(["--tls-ca", pki.ca()])
        .args([
            "--to-tls-cert",
            pki.client.cert(),
            "--to-tls-key",
            pki.client.key(),
        ]);
    let relay = Running::start(cmd, 1);
    let mut client = connect(&relay.addr());
    client
        .write_all(b"hello through the relay\n")
        .expect("send");
    let lines = lines_of(server.take_stdout());
    let got = lines.recv_timeout(ANSWER).unwrap_or_else(|_| {
        panic!(
            "nothing reached the server; relay stderr:\n{}\nserver stderr:\n{}",
            relay.stderr(),
            server.stderr()
        )
    });
    assert_eq!(got, b"hello through the relay\n");
}
