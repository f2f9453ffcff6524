//! Endpoint forms beyond paths and plain addresses, through the real binary: Linux's abstract
//! Unix namespace (`unix:@NAME`: no file created, none removed) and IPv6 zones
//! (`[::1%lo]:PORT`).

use std::io::Read;
use std::time::Duration;

use crate::support::process::{DEADLINE, Running, run, socketkit};

/// A name no other test (or run) uses at the same time.
fn unique_name(what: &str) -> String {
    format!("socketkit-test-{what}-{}", std::process::id())
}

#[test]
fn abstract_unix_sockets_make_and_remove_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = unique_name("abstract");
    // A file really called @NAME in the working directory must be left alone.
    let decoy = dir.path().join(format!("@{name}"));
    std::fs::write(&decoy, "not a socket").expect("decoy");
    let mut serve = socketkit();
    serve
        .args(["serve", "echo", "-l", &format!("unix:@{name}")])
        .current_dir(dir.path());
    let mut server = Running::start(serve, 1);
    assert_eq!(server.endpoints()[0], format!("unix:@{name}"));
    let mut connect = socketkit();
    connect
        .args(["connect", &format!("unix:@{name}")])
        .current_dir(dir.path());
    let out = run(
        connect,
        b"through the abstract namespace".to_vec(),
        DEADLINE,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"through the abstract namespace");
    server.signal(libc::SIGTERM);
    assert!(server.wait(DEADLINE).success());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![decoy.file_name().expect("name").to_owned()]);
    assert_eq!(std::fs::read(&decoy).expect("decoy"), b"not a socket");
}

#[test]
fn an_ipv6_zone_is_resolved_to_its_interface() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let listener = std::net::TcpListener::bind("[::1]:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // `connect ARGS` with `input` on stdin: the listener gets it all, and the run ends well.
    let delivers = |args: &[&str], input: &[u8]| {
        let mut cmd = socketkit();
        cmd.arg("connect").args(args);
        let mut child = Running::start_with_stdin(cmd, 0, input.to_vec());
        let (mut peer, _) = listener.accept().expect("accept");
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read");
        assert_eq!(got, input, "{args:?}");
        drop(peer);
        assert!(child.wait(DEADLINE).success(), "{}", child.stderr());
    };
    delivers(&[&format!("[::1%lo]:{port}")], b"zoned");
    // nc's form, a separate port after the zoned address, as nc takes it.
    delivers(&["::1%lo", &port.to_string()], b"zoned too");

    let mut cmd = socketkit();
    cmd.args(["connect", "[::1%no-such-if0]:80"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("no network interface"),
        "{}",
        out.stderr
    );
    let mut cmd = socketkit();
    cmd.args(["connect", "[fe80::1%]:80"]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
}

/// An abstract name holds as many bytes as a path (107): its `@` is the leading NUL, which
/// takes the place of a path's final one. Found by an outside audit (107 was refused as 108).
#[test]
fn an_abstract_name_of_107_bytes_is_taken_and_108_refused() {
    let name = format!("{:a<107}", unique_name("abstract107"));
    assert_eq!(name.len(), 107);
    let mut serve = socketkit();
    serve.args(["serve", "echo", "-l", &format!("unix:@{name}")]);
    let server = Running::start(serve, 1);
    assert_eq!(server.endpoints()[0], format!("unix:@{name}"));
    let mut connect = socketkit();
    connect.args(["connect", &format!("unix:@{name}")]);
    let out = run(connect, b"107".to_vec(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"107");
    drop(server);

    let longer = format!("unix:@{name}b");
    let mut serve = socketkit();
    serve.args(["serve", "echo", "-l", &longer]);
    let out = run(serve, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: invalid endpoint '{longer}': socket path is 108 bytes, longer than the 107 the system allows"
        )
    );
}
