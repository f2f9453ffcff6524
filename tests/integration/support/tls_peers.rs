//! TLS peers that are not socketkit — OpenSSL's `s_server` and `s_client`, socat and
//! Python's `ssl` module — started the way the tests need them, under the tools policy
//! (missing: skipped with a reason, or failed under `CI=true`).

use std::process::Command;

use crate::support::certs::{Pair, Pki};
use crate::support::net::{free_port, wait_until_listening};
use crate::support::process::{Running, command};
use crate::support::tools;

/// A Python TLS peer. Server: `server CERT KEY BEHAVIOUR [ARG]`, which announces
/// `listening on tls:127.0.0.1:PORT` on stderr and serves one connection. Client:
/// `client PORT CA BEHAVIOUR [ARG]`. Ragged EOFs are errors (`suppress_ragged_eofs=False`),
/// so a peer that ends without close_notify makes the script fail.
const PY_PEER: &str = r#"
import fcntl, socket, ssl, struct, sys, termios, time

def read_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        line += chunk
    return line

def read_to_close_notify(conn):
    got = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return got
        got += chunk

def serve(conn, behaviour, arg):
    if behaviour == "clean":
        conn.sendall(arg.encode())
        read_to_close_notify(conn)
        conn.unwrap()
    elif behaviour == "truncate":
        conn.sendall(arg.encode())
        conn.close()  # no close_notify: the TCP connection just ends
    elif behaviour == "truncate_bulk":
        # ARG bytes (the byte values 0..255 over and over), then no close_notify.
        conn.sendall(bytes(i % 256 for i in range(int(arg))))
        conn.close()
    elif behaviour == "echo":
        conn.sendall(read_to_close_notify(conn))
        conn.unwrap()
    elif behaviour == "echo_count":
        # Each chunk back at once (until that fails), and, on stdout, how many bytes came
        # before close_notify (or before the stream broke: then the exit is an error too).
        got, echoing = 0, True
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
                if echoing:
                    try:
                        conn.sendall(chunk)
                    except OSError:
                        echoing = False
        finally:
            print(got, flush=True)
    elif behaviour == "alpn":
        conn.sendall(("alpn=%s\n" % conn.selected_alpn_protocol()).encode())
        read_to_close_notify(conn)
        conn.unwrap()
    elif behaviour == "greet_hold":
        # A greeting peer that never closes first: "up" on stdout once the session is up;
        # a line on stdin has it greet (ARG) and say "greeted" once the client's kernel
        # holds the greeting; then the client's line goes to stdout, and after the
        # client's close_notify the connection stays open until stdin ends.
        print("up", flush=True)
        sys.stdin.readline()
        conn.sendall(arg.encode())
        held = struct.pack("i", 1)
        while struct.unpack("i", held)[0] != 0:
            held = fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            time.sleep(0.001)
        print("greeted", flush=True)
        sys.stdout.buffer.write(read_line(conn))
        sys.stdout.flush()
        read_to_close_notify(conn)
        sys.stdin.read()
    elif behaviour == "reply":
        # A line from the client, ARG back, then close_notify, and the client's awaited.
        read_line(conn)
        conn.sendall(arg.encode())
        conn.unwrap()
    elif behaviour == "ask":
        for i in range(int(arg)):
            conn.sendall(b"question %d\n" % i)
            line = read_line(conn)
            if line != b"answer %d\n" % i:
                sys.exit("round %d: got %r" % (i, line))
        conn.unwrap()
    else:
        sys.exit("unknown behaviour " + behaviour)

def main():
    role = sys.argv[1]
    if role == "server":
        cert, key, behaviour = sys.argv[2:5]
        arg = sys.argv[5] if len(sys.argv) > 5 else ""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["socketkit-test"])
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(20)
        print("listening on tls:127.0.0.1:%d" % listener.getsockname()[1], file=sys.stderr, flush=True)
        raw, _ = listener.accept()
        raw.settimeout(20)
        conn = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        serve(conn, behaviour, arg)
    else:
        port, ca, behaviour = sys.argv[2:5]
        arg = sys.argv[5] if len(sys.argv) > 5 else ""
        ctx = ssl.create_default_context(cafile=ca)
        if behaviour.startswith("alpn:"):
            ctx.set_alpn_protocols([behaviour[5:]])
        raw = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
        conn = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        if behaviour == "echo":
            conn.sendall(arg.encode())
            got = b""
            while len(got) < len(arg.encode()):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
            conn.unwrap()
            sys.stdout.buffer.write(got)
        elif behaviour == "read":
            sys.stdout.buffer.write(read_to_close_notify(conn))
        elif behaviour.startswith("alpn:"):
            sys.stdout.write("alpn=%s\n" % conn.selected_alpn_protocol())
            conn.close()
        sys.stdout.flush()

main()
"#;

/// A Python TLS server with `pair`'s certificate doing `behaviour` (`clean TEXT`,
/// `truncate TEXT`, `truncate_bulk N`, `echo`, `echo_count`, `alpn`, `ask N`,
/// `greet_hold TEXT`, `reply TEXT`) for one
/// connection; `None`
/// without python3.
pub fn python_server(pair: &Pair, behaviour: &str, arg: &str) -> Option<Running> {
    let cmd = python_peer(["server", pair.cert(), pair.key(), behaviour, arg])?;
    Some(Running::start(cmd, 1))
}

/// A Python TLS client of `port` that trusts `pki`'s CA and names `localhost`.
pub fn python_client(pki: &Pki, port: u16, behaviour: &str, arg: &str) -> Option<Command> {
    python_peer(["client", &port.to_string(), pki.ca(), behaviour, arg])
}

fn python_peer(args: [&str; 5]) -> Option<Command> {
    if !tools::available("python3") {
        return None;
    }
    let mut cmd = command(std::path::Path::new("python3"));
    cmd.args(["-c", PY_PEER]).args(args);
    Some(cmd)
}

/// `openssl s_server` on 127.0.0.1 with `pair`'s certificate, for one connection, with
/// `extra` options; its stdin goes to the client and what the client sends comes out of its
/// stdout. `None` without openssl.
pub fn s_server(pair: &Pair, extra: &[&str]) -> Option<(Running, u16)> {
    if !tools::available("openssl") {
        return None;
    }
    let port = free_port();
    let mut cmd = command(std::path::Path::new("openssl"));
    cmd.args(["s_server", "-quiet", "-naccept", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", pair.cert(), "-key", pair.key()])
        .args(extra);
    let running = Running::start(cmd, 0);
    wait_until_listening(port);
    Some((running, port))
}

/// `openssl s_client` to 127.0.0.1:`port` trusting `pki`'s CA, naming `localhost`, with
/// `extra` options; `None` without openssl.
pub fn s_client(pki: &Pki, port: u16, extra: &[&str]) -> Option<Command> {
    if !tools::available("openssl") {
        return None;
    }
    let mut cmd = command(std::path::Path::new("openssl"));
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-CAfile",
            pki.ca(),
            "-servername",
            "localhost",
            "-verify_return_error",
        ])
        .args(extra);
    Some(cmd)
}
