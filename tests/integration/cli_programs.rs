//! socketkit between programs people run, used as they use them: Redis (a request/response
//! protocol, pipelined by `redis-benchmark` and by a script writing thousands of commands at
//! once, and one command at a time by a program that waits for each answer) through `forward`
//! and `connect`; DNS (`dig` asking `dnsmasq`) through UDP and TCP relays. Each server runs
//! on a free port (neither can be given port 0 and say which it got), its files in a temp
//! dir.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::net::{free_port, wait_until_listening};
use crate::support::process::{DEADLINE, Running, command, lines_of, run, socketkit, wait_bounded};
use crate::support::tools;

/// `redis-server` on a free loopback port, keeping nothing on disk; and its port.
fn redis() -> Option<(Running, u16)> {
    for tool in ["redis-server", "redis-cli", "redis-benchmark"] {
        if !tools::available(tool) {
            return None;
        }
    }
    let port = free_port();
    let mut cmd = command(Path::new("redis-server"));
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
    let server = Running::start(cmd, 0);
    wait_until_listening(port);
    Some((server, port))
}

/// `socketkit forward -l 127.0.0.1:0` to each of `targets`, with `options`.
fn forward(listen: &str, targets: &[String], options: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", listen]).args(options);
    for target in targets {
        cmd.args(["--to", target]);
    }
    Running::start(cmd, 1)
}

#[test]
fn redis_benchmark_through_forward_gets_every_answer() {
    let Some((_redis, port)) = redis() else {
        return;
    };
    let relay = forward("127.0.0.1:0", &[format!("127.0.0.1:{port}")], &[]);
    let mut cmd = command(Path::new("redis-benchmark"));
    cmd.args(["-h", "127.0.0.1", "-p", &relay.port().to_string()])
        .args([
            "-n",
            "20000",
            "-c",
            "8",
            "-P",
            "16",
            "-t",
            "set,get,incr",
            "-q",
        ]);
    let out = run(cmd, Vec::new(), DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.code(), 0, "{text}{}", out.stderr);
    // -q prints one summary per test, and nothing else unless something failed.
    for test in ["SET", "GET", "INCR"] {
        assert!(
            text.contains(&format!("{test}: ")) && text.contains("requests per second"),
            "{text}"
        );
    }
    assert!(!text.to_lowercase().contains("error"), "{text}");
    // Every INCR of the benchmark reached the server once.
    let mut cmd = command(Path::new("redis-cli"));
    cmd.args(["-p", &port.to_string(), "GET", "counter:__rand_int__"]);
    let counted = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "20000");
}

#[test]
fn redis_pipelined_through_connect_and_forward_answers_every_command() {
    let Some((_redis, port)) = redis() else {
        return;
    };
    let relay = forward("127.0.0.1:0", &[format!("127.0.0.1:{port}")], &[]);
    // 20,000 commands written at once, then the end of input (nc -N's use): every answer
    // comes back before connect exits, in order.
    let commands = "INCR piped\r\n".repeat(20_000).into_bytes();
    let mut cmd = socketkit();
    cmd.args(["connect", "127.0.0.1", &relay.port().to_string()]);
    let out = run(cmd, commands, DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let answers: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').collect();
    assert_eq!(answers.len(), 20_001, "20,000 lines and the empty tail");
    assert_eq!(answers[0], b":1\r");
    assert_eq!(answers[19_999], b":20000\r");
}

#[test]
fn redis_one_command_at_a_time_through_connect_answers_each_at_once() {
    let Some((_redis, port)) = redis() else {
        return;
    };
    let mut cmd = socketkit();
    cmd.args(["connect", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("connect runs");
    let mut stdin = child.stdin.take().expect("piped");
    let lines = lines_of(child.stdout.take().expect("piped"));
    for turn in 1..=3 {
        stdin.write_all(b"INCR asked\r\n").expect("written");
        stdin.flush().expect("flushed");
        // The answer arrives while stdin stays open: nothing waits for more input.
        let answer = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no answer to command {turn}"));
        assert_eq!(answer, format!(":{turn}\r\n").into_bytes());
    }
    drop(stdin);
    let status = wait_bounded(&mut child, DEADLINE);
    assert!(status.success(), "connect: {status:?}");
}

/// `dnsmasq` on a free loopback port answering for two names from a hosts file, and
/// nothing else; the temp dir it reads, and its port.
fn dnsmasq() -> Option<(Running, tempfile::TempDir, u16)> {
    for tool in ["dnsmasq", "dig"] {
        if !tools::available(tool) {
            return None;
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.7 alpha.test\n::7 beta.test\n").expect("hosts file");
    let port = free_port();
    let mut cmd = command(Path::new("dnsmasq"));
    cmd.args([
        "--keep-in-foreground",
        "--log-facility=-",
        "--conf-file=/dev/null",
    ])
    .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
    .args(["--no-resolv", "--no-hosts", "--user=root", "--pid-file="])
    .arg(format!("--port={port}"))
    .arg(format!("--addn-hosts={}", hosts.display()));
    let server = Running::start(cmd, 0);
    wait_until_listening(port);
    Some((server, dir, port))
}

/// `dig @127.0.0.1 -p PORT` with `args`, `+short`: the answer lines.
fn dig(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("dig");
    cmd.args([
        "@127.0.0.1",
        "-p",
        &port.to_string(),
        "+short",
        "+tries=1",
        "+time=5",
    ])
    .args(args);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "dig {args:?}: {}", out.stderr);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn dig_through_udp_and_tcp_relays_gets_dnsmasqs_answers() {
    let Some((_dnsmasq, _dir, port)) = dnsmasq() else {
        return;
    };
    let udp = forward("udp:127.0.0.1:0", &[format!("udp:127.0.0.1:{port}")], &[]);
    let tcp = forward("127.0.0.1:0", &[format!("127.0.0.1:{port}")], &[]);
    assert_eq!(dig(udp.port(), &["alpha.test"]), "127.0.0.7");
    assert_eq!(dig(udp.port(), &["beta.test", "AAAA"]), "::7");
    assert_eq!(dig(tcp.port(), &["+tcp", "alpha.test"]), "127.0.0.7");
    // Two questions on one kept-open TCP connection, as resolvers do.
    assert_eq!(
        dig(
            tcp.port(),
            &["+tcp", "+keepopen", "alpha.test", "beta.test", "AAAA"]
        ),
        "127.0.0.7\n::7"
    );
    // One question as a client library sends it: a raw query through connect -u.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x05alpha\x04test\x00\x00\x01\x00\x01");
    let mut cmd = socketkit();
    cmd.args(["connect", "-u", "127.0.0.1", &udp.port().to_string()]);
    let out = run(cmd, query, DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(&out.stdout[..2], [0x12, 0x34], "the answer to our query");
    assert!(out.stdout.ends_with(&[127, 0, 0, 7]), "{:02x?}", out.stdout);
}
