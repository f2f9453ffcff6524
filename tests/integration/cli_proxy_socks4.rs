//! `connect --proxy socks4://` and `socks4a://`, and `forward --proxy` through them, against
//! a SOCKS4/4a proxy written here in Python (no packaged one speaks it without a daemon's
//! setup): it logs each request's user id and destination, so the test sees what was sent.

use std::path::Path;

use crate::support::net::{connect, free_port, read_to_end};
use crate::support::process::{DEADLINE, Running, command, run, socketkit};
use crate::support::tools;

/// A SOCKS4 and SOCKS4a proxy: one thread a client, `request USER HOST:PORT` on stderr for
/// each request, reply 91 when the destination cannot be reached.
const PY_SOCKS4: &str = r#"
import socket, sys, threading
def log(line):
    print(line, file=sys.stderr, flush=True)
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def until_nul(c):
    out = b""
    while True:
        ch = c.recv(1)
        if ch in (b"\0", b""):
            return out
        out += ch
def handle(c):
    head = b""
    while len(head) < 8:
        got = c.recv(8 - len(head))
        if not got:
            return
        head += got
    port, ip = int.from_bytes(head[2:4], "big"), head[4:8]
    user = until_nul(c).decode()
    host = socket.inet_ntoa(ip)
    if ip[:3] == b"\0\0\0" and ip[3] != 0:
        host = until_nul(c).decode()
    log("request %s %s:%d" % (user or "-", host, port))
    try:
        target = socket.create_connection((host, port), timeout=5)
    except OSError:
        c.sendall(bytes([0, 0x5B, 0, 0, 0, 0, 0, 0]))
        c.close()
        return
    c.sendall(bytes([0, 0x5A]) + head[2:8])
    threading.Thread(target=pump, args=(target, c), daemon=True).start()
    pump(c, target)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
log("listening on tcp:127.0.0.1:%d" % s.getsockname()[1])
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

fn socks4_proxy() -> Option<Running> {
    if !tools::available("python3") {
        return None;
    }
    let mut cmd = command(Path::new("python3"));
    cmd.args(["-c", PY_SOCKS4]);
    Some(Running::start(cmd, 1))
}

/// `connect --no-shutdown --proxy URL TARGET` with no input: exit code, stdout, stderr.
fn connect_through(url: &str, target: &str) -> (i32, String, String) {
    let mut cmd = socketkit();
    cmd.args(["connect", "--no-shutdown", "--proxy", url, target]);
    let out = run(cmd, Vec::new(), DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.code(), stdout, out.stderr)
}

#[test]
fn socks4_and_socks4a_carry_connect_and_forward() {
    let Some(proxy) = socks4_proxy() else { return };
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "127.0.0.1:0"]);
    let greeting = Running::start(cmd, 1);
    let port = greeting.port();

    // socks4://: the address, resolved here.
    let url = format!("socks4://{}", proxy.addr());
    let (code, out, err) = connect_through(&url, &format!("127.0.0.1:{port}"));
    assert_eq!((code, out.as_str()), (0, "你好"), "{err}");
    proxy.wait_for_stderr(&[&format!("request - 127.0.0.1:{port}")], DEADLINE);

    // socks4a:// with a user id: the name goes to the proxy as it is.
    let url = format!("socks4a://alice@{}", proxy.addr());
    let (code, out, err) = connect_through(&url, &format!("localhost:{port}"));
    assert_eq!((code, out.as_str()), (0, "你好"), "{err}");
    proxy.wait_for_stderr(&[&format!("request alice localhost:{port}")], DEADLINE);

    // forward --proxy socks4a://: the relay's own path (async).
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--proxy", &url])
        .arg("--to")
        .arg(format!("localhost:{port}"));
    let relay = Running::start(cmd, 1);
    let mut client = connect(&relay.addr());
    assert_eq!(read_to_end(&mut client), "你好".as_bytes());
    proxy.wait_for_stderr(&[&format!("request alice localhost:{port}")], DEADLINE);
}

#[test]
fn a_socks4_refusal_and_an_ipv6_target_are_one_line_errors() {
    let Some(proxy) = socks4_proxy() else { return };
    let closed = free_port();
    let url = format!("socks4://{}", proxy.addr());
    let (code, _, err) = connect_through(&url, &format!("127.0.0.1:{closed}"));
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: cannot connect to tcp:127.0.0.1:{closed} through {url}: the proxy rejected the \
             request or could not connect (SOCKS4 reply 91)"
        )
    );
    let (code, _, err) = connect_through(&url, &format!("[::1]:{closed}"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("SOCKS4 carries IPv4 addresses only"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
