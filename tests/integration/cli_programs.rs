//! socketkit between programs people run, used as they use them: Redis (a request/response
//! protocol, pipelined by `redis-benchmark` and by a script writing thousands of commands at
//! once, and one command at a time by a program that waits for each answer) through `forward`
//! and `connect`; DNS (`dig` asking `dnsmasq`) through UDP and TCP relays; git (`git daemon`)
//! cloned through `forward`, and cloned and pushed to with `connect` as its proxy command.
//! Each server runs on a free port (none can be given port 0 and say which it got), its
//! files in a temp dir.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::net::{free_port, payload, wait_until_listening};
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

/// `git` with `args` in `dir`, no configuration of the machine's or the user's, a fixed
/// author; `env` added (a proxy command). Fails the test on a non-zero exit.
fn git(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = command(Path::new("git"));
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=socketkit",
            "-c",
            "user.email=test@socketkit.invalid",
        ])
        .args(["-c", "init.defaultBranch=main"])
        .args(args);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "git {args:?}: {}", out.stderr);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `repo.git` holding one commit (a 3 MB file of test bytes and 100
/// small ones), served with push allowed by `git daemon` on a free port; the temp dir
/// that holds it, and the port.
fn git_daemon() -> Option<(Running, tempfile::TempDir, u16)> {
    if !tools::available("git") {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    std::fs::write(work.join("big.bin"), payload(3 << 20)).expect("big file");
    for n in 0..100 {
        std::fs::write(work.join(format!("f{n}.txt")), format!("{n}\n")).expect("small file");
    }
    git(&work, &["init", "-q"], &[]);
    git(&work, &["add", "-A"], &[]);
    git(&work, &["commit", "-q", "-m", "first"], &[]);
    git(
        dir.path(),
        &["clone", "-q", "--bare", "work", "repo.git"],
        &[],
    );
    // git-daemon itself, not `git daemon`: the `git` wrapper runs it as a child of its own,
    // which killing the wrapper would leave running.
    let exec_path = git(dir.path(), &["--exec-path"], &[]);
    let port = free_port();
    let mut cmd = command(&Path::new(&exec_path).join("git-daemon"));
    cmd.args(["--export-all", "--reuseaddr", "--enable=receive-pack"])
        .arg(format!("--base-path={}", dir.path().display()))
        .args(["--listen=127.0.0.1", &format!("--port={port}")]);
    let daemon = Running::start(cmd, 0);
    wait_until_listening(port);
    Some((daemon, dir, port))
}

#[test]
fn git_clones_through_forward_and_clones_and_pushes_through_connect_as_its_proxy() {
    let Some((_daemon, dir, port)) = git_daemon() else {
        return;
    };
    let root = dir.path();
    let original = std::fs::read(root.join("work/big.bin")).expect("the original");
    // forward: git's protocol is a conversation (refs, wants, then the pack).
    let relay = forward("127.0.0.1:0", &[format!("127.0.0.1:{port}")], &[]);
    let url = format!("git://127.0.0.1:{}/repo.git", relay.port());
    git(root, &["clone", "-q", &url, "relayed"], &[]);
    assert!(std::fs::read(root.join("relayed/big.bin")).expect("cloned") == original);
    assert_eq!(
        std::fs::read_to_string(root.join("relayed/f99.txt")).expect("cloned"),
        "99\n"
    );
    // connect as GIT_PROXY_COMMAND, git's ProxyCommand: git writes to its stdin and reads
    // its stdout, and waits for each answer with the pipe open.
    let proxy = root.join("proxy.sh");
    std::fs::write(
        &proxy,
        format!(
            "#!/bin/sh\nexec '{}' connect \"$1\" \"$2\"\n",
            env!("CARGO_BIN_EXE_socketkit")
        ),
    )
    .expect("proxy script");
    std::fs::set_permissions(&proxy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("executable");
    let env = [("GIT_PROXY_COMMAND", proxy.as_path())];
    let direct = format!("git://127.0.0.1:{port}/repo.git");
    git(root, &["clone", "-q", &direct, "proxied"], &env);
    let proxied = root.join("proxied");
    assert!(std::fs::read(proxied.join("big.bin")).expect("cloned") == original);
    // A push: the pack goes the other way, and git waits for the daemon's report.
    std::fs::write(proxied.join("pushed.bin"), payload(1 << 20)).expect("new file");
    git(&proxied, &["add", "pushed.bin"], &[]);
    git(&proxied, &["commit", "-q", "-m", "second"], &[]);
    git(&proxied, &["push", "-q", "origin", "HEAD:main"], &env);
    let head = git(&proxied, &["rev-parse", "HEAD"], &[]);
    assert_eq!(
        git(&root.join("repo.git"), &["rev-parse", "main"], &[]),
        head
    );
    // And the relayed clone fetches it through forward.
    git(&root.join("relayed"), &["pull", "-q"], &[]);
    assert_eq!(
        git(&root.join("relayed"), &["rev-parse", "HEAD"], &[]),
        head
    );
}
