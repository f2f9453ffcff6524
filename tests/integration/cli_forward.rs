//! `socketkit forward`: relays over TCP and Unix, half-close through the relay, many relays
//! at once, unreachable targets, limits and shutdown.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use crate::support::TestResult;
use crate::support::net::{
    IO_TIMEOUT, connect, hash, payload, read_once, read_to_end, read_to_reset, reset,
};
use crate::support::process::{DEADLINE, Running, socketkit, socketkit_with_fd_limit};

fn start(args: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(args);
    Running::start(cmd, 1)
}

fn forward(listen: &str, to: &str) -> Running {
    start(&["forward", "-l", listen, "--to", to])
}

/// The two ways a relay moves bytes: splice, and the copy fallback (forced, so that it is
/// tested on machines where splice works).
const MODES: [(&str, bool); 2] = [("splice", false), ("copy", true)];

/// `forward` relaying by one of [`MODES`], with `extra` options.
fn forward_by(mode: &(&str, bool), listen: &str, to: &str, extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    if mode.1 {
        cmd.env("SOCKETKIT_NO_SPLICE", "1");
    }
    cmd.args(["forward", "-l", listen, "--to", to]).args(extra);
    Running::start(cmd, 1)
}

/// Sends `data` through `stream`, half-closes, and returns everything read back.
fn exchange<S>(mut stream: S, writer: S, data: Vec<u8>) -> Vec<u8>
where
    S: Read + Write + Send + Shut + 'static,
{
    let sender = thread::spawn(move || {
        let mut writer = writer;
        writer.write_all(&data).expect("write");
        writer.shut_write();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read");
    sender.join().expect("sender");
    back
}

/// Half-close for either stream type.
trait Shut {
    fn shut_write(&self);
}

impl Shut for std::net::TcpStream {
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
}

impl Shut for UnixStream {
    fn shut_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
}

const BIG: usize = 64 * 1024 * 1024;

#[test]
fn unix_to_tcp_and_tcp_to_unix_64_mib_both_ways() -> TestResult {
    let dir = tempfile::tempdir()?;
    // TCP client → forward → Unix echo.
    let echo_path = dir.path().join("echo.sock");
    let _unix_echo = start(&[
        "serve",
        "echo",
        "-l",
        &format!("unix:{}", echo_path.display()),
    ]);
    let to_unix = forward("127.0.0.1:0", &format!("unix:{}", echo_path.display()));
    let data = payload(BIG);
    let expected = hash(&data);
    let stream = connect(&to_unix.addr());
    let back = exchange(stream.try_clone()?, stream, data.clone());
    assert_eq!((back.len(), hash(&back)), (BIG, expected));

    // Unix client → forward → TCP echo.
    let tcp_echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    let relay_path = dir.path().join("relay.sock");
    let _to_tcp = forward(
        &format!("unix:{}", relay_path.display()),
        &tcp_echo.endpoints()[0],
    );
    let stream = UnixStream::connect(&relay_path)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let back = exchange(stream.try_clone()?, stream, data);
    assert_eq!((back.len(), hash(&back)), (BIG, expected));
    Ok(())
}

#[test]
fn both_relay_modes_are_intact_with_half_close() -> TestResult {
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    for mode in &MODES {
        let relay = forward_by(mode, "127.0.0.1:0", &echo.endpoints()[0], &[]);
        let data = payload(8 * 1024 * 1024);
        let stream = connect(&relay.addr());
        let back = exchange(stream.try_clone()?, stream, data.clone());
        assert!(back == data, "the relay ({}) changed the bytes", mode.0);
    }
    Ok(())
}

#[test]
fn each_request_and_answer_crosses_the_relay_at_once_in_both_modes() -> TestResult {
    // Client and target each wait for the other's line before sending theirs: a relay that
    // held a piece back until more came would stall the first round.
    for mode in &MODES {
        let target = TcpListener::bind("127.0.0.1:0")?;
        let relay = forward_by(mode, "127.0.0.1:0", &target.local_addr()?.to_string(), &[]);
        let mut client = connect(&relay.addr());
        let (mut server, _) = target.accept()?;
        server.set_read_timeout(Some(IO_TIMEOUT))?;
        for round in 0..100 {
            let question = format!("question {round}\n");
            client.write_all(question.as_bytes())?;
            assert_eq!(
                read_exactly(&mut server, question.len()),
                question.as_bytes()
            );
            let answer = format!("answer {round}\n");
            server.write_all(answer.as_bytes())?;
            assert_eq!(
                read_exactly(&mut client, answer.len()),
                answer.as_bytes(),
                "relay ({}), round {round}",
                mode.0
            );
        }
    }
    Ok(())
}

/// Reads exactly `len` bytes, failing the test at the stream's read timeout.
fn read_exactly(stream: &mut impl Read, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .expect("the bytes arrive in time");
    buf
}

#[test]
fn half_close_passes_through_in_both_directions() -> TestResult {
    // The target reads to end of stream before it answers: only a FIN carried through the
    // relay lets it. Its own FIN must then reach the client.
    let target = TcpListener::bind("127.0.0.1:0")?;
    let target_addr = target.local_addr()?.to_string();
    let server = thread::spawn(move || {
        let (mut stream, _) = target.accept().expect("accept");
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .expect("read to the relayed FIN");
        stream
            .write_all(format!("got {} bytes", got.len()).as_bytes())
            .expect("write");
    });
    let relay = forward("127.0.0.1:0", &target_addr);
    let stream = connect(&relay.addr());
    let back = exchange(stream.try_clone()?, stream, payload(300_000));
    server.join().expect("target");
    assert_eq!(back, b"got 300000 bytes");
    Ok(())
}

#[test]
fn two_hundred_concurrent_relays_stay_intact() {
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    let relay = forward("127.0.0.1:0", &echo.endpoints()[0]);
    let addr = relay.addr();
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            thread::spawn(move || {
                let data = payload(64 * 1024 + i);
                let stream = connect(&addr);
                let back = exchange(stream.try_clone().expect("clone"), stream, data.clone());
                back == data
            })
        })
        .collect();
    let intact = clients
        .into_iter()
        .map(|c| c.join())
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(intact, 200);
}

#[test]
fn an_unreachable_target_resets_that_client_and_the_forwarder_goes_on() {
    let dead_port = crate::support::net::free_port();
    let relay = forward("127.0.0.1:0", &format!("127.0.0.1:{dead_port}"));
    let mut client = connect(&relay.addr());
    assert!(read_to_reset(&mut client, "client").is_empty());
    relay.wait_for_stderr(
        &["cannot reach", "connection refused; resetting the client"],
        Duration::from_secs(5),
    );
    // Still accepting.
    let mut again = connect(&relay.addr());
    assert!(read_to_reset(&mut again, "second client").is_empty());
}

/// The warning says what `connect` says of a name that does not resolve, not std's "failed
/// to lookup address information: …". Found by an outside audit.
#[test]
fn an_unresolvable_target_is_warned_of_in_connects_words() {
    let relay = forward("127.0.0.1:0", "no-such-host.invalid:80");
    let mut client = connect(&relay.addr());
    assert!(read_to_reset(&mut client, "client").is_empty());
    let warned = "cannot reach tcp:no-such-host.invalid:80: cannot resolve no-such-host.invalid: ";
    relay.wait_for_stderr(&[warned, "; resetting the client"], Duration::from_secs(10));
    let log = relay.stderr();
    assert!(!log.contains("failed to lookup"), "{log}");
}

#[test]
fn a_reset_on_either_side_reaches_the_other_as_a_reset_in_both_modes() -> TestResult {
    for mode in &MODES {
        let target = TcpListener::bind("127.0.0.1:0")?;
        let to = format!("127.0.0.1:{}", target.local_addr()?.port());
        let relay = forward_by(mode, "127.0.0.1:0", &to, &[]);

        // The target fails mid-answer: the client must not take the part for the whole.
        let mut client = connect(&relay.addr());
        let (mut upstream, _) = target.accept()?;
        upstream.write_all(b"partial")?;
        reset(upstream);
        let got = read_to_reset(&mut client, mode.0);
        assert!(b"partial".starts_with(&got), "{}: {got:?}", mode.0);

        // The client fails mid-request: the target hears it the same way.
        let mut client = connect(&relay.addr());
        let (mut upstream, _) = target.accept()?;
        upstream.set_read_timeout(Some(IO_TIMEOUT))?;
        client.write_all(b"request")?;
        let mut first = [0u8; 7];
        upstream.read_exact(&mut first)?;
        reset(client);
        assert!(
            read_to_reset(&mut upstream, mode.0).is_empty(),
            "{}",
            mode.0
        );
    }
    Ok(())
}

#[test]
fn limits_and_graceful_shutdown_apply_to_relays() {
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    let mut relay = start(&[
        "forward",
        "-l",
        "127.0.0.1:0",
        "--to",
        &echo.endpoints()[0],
        "--max-connections",
        "1",
        "--idle-timeout",
        "2s",
    ]);
    let addr = relay.addr();
    let mut first = connect(&addr);
    first.write_all(b"1").expect("write");
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).expect("relayed");
    let mut second = connect(&addr);
    second.write_all(b"2").expect("write");
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    assert!(
        read_once(&mut second, &mut byte).is_err(),
        "over the limit: not relayed yet"
    );
    relay.signal(libc::SIGTERM);
    // The first relay is in flight: it finishes its exchange, then ends.
    first.write_all(b"3").expect("write during the drain");
    first
        .read_exact(&mut byte)
        .expect("still relayed during the drain");
    first.shutdown(Shutdown::Write).expect("half-close");
    assert!(read_to_end(&mut first).is_empty());
    assert_eq!(relay.wait(DEADLINE).code(), Some(0), "{}", relay.stderr());
}

#[test]
fn datagram_endpoints_are_refused() {
    // (udp: and unixgram: to either is relayed: cli_forward_udp, cli_forward_unixgram.)
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "udp:127.0.0.1:0", "--to", "127.0.0.1:9"]);
    let out = crate::support::process::run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2);
    assert_eq!(
        out.stderr,
        "error: a datagram listener relays to a udp: or unixgram: target, not tcp:127.0.0.1:9\n"
    );
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", "udp:127.0.0.1:9"]);
    let out = crate::support::process::run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2);
    assert_eq!(
        out.stderr,
        "error: cannot forward to udp:127.0.0.1:9: only TCP and Unix stream targets are supported\n"
    );
}

#[test]
fn idle_relays_are_closed_in_both_modes() {
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    for mode in &MODES {
        let relay = forward_by(
            mode,
            "127.0.0.1:0",
            &echo.endpoints()[0],
            &["--idle-timeout", "300ms"],
        );
        let started = std::time::Instant::now();
        let mut silent = connect(&relay.addr());
        assert!(read_to_end(&mut silent).is_empty(), "{}", mode.0);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{}: {waited:?}",
            mode.0
        );
    }
}

/// An idle timeout that comes while bytes are still on their way (a client that stopped
/// reading a download: the relay's buffers full, the target's sends waiting) cuts the
/// stream short: the client reads a reset after what came, not a FIN that would read as the
/// whole download.
#[test]
fn an_idle_timeout_with_bytes_in_flight_resets_rather_than_ends() {
    let chargen = start(&["serve", "chargen", "-l", "127.0.0.1:0"]);
    for mode in &MODES {
        let relay = forward_by(
            mode,
            "127.0.0.1:0",
            &chargen.endpoints()[0],
            &["--idle-timeout", "300ms"],
        );
        crate::server_faults::cut_short_is_reset(&relay.addr(), mode.0);
    }
}

#[test]
fn the_drain_deadline_closes_relays_still_streaming() {
    let chargen = start(&["serve", "chargen", "-l", "127.0.0.1:0"]);
    for mode in &MODES {
        let mut relay = forward_by(
            mode,
            "127.0.0.1:0",
            &chargen.endpoints()[0],
            &["--drain-timeout", "300ms"],
        );
        let mut endless = connect(&relay.addr());
        let mut some = [0u8; 1024];
        endless.read_exact(&mut some).expect("streaming");
        relay.signal(libc::SIGTERM);
        let started = std::time::Instant::now();
        assert_eq!(relay.wait(DEADLINE).code(), Some(0), "{}", mode.0);
        assert!(started.elapsed() < Duration::from_secs(5), "{}", mode.0);
        // Whatever was in flight arrives, then the stream is reset: it was cut short.
        let _ = read_to_reset(&mut endless, mode.0);
    }
}

#[test]
fn near_the_descriptor_limit_relays_copy_instead_of_splicing() -> TestResult {
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    // Pipes may hold a third of the 60 descriptors: ten pipes (two ends each), a pipe for
    // each direction that carries a bulk stream. Ten relays splicing both ways would need
    // 60 descriptors besides the server's own, so some must copy, and every one of them
    // must still get its sockets.
    let mut cmd = socketkit_with_fd_limit(60);
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &echo.endpoints()[0]]);
    let relay = Running::start(cmd, 1);
    let pipe_ends = || -> std::io::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", relay.pid()))?
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("pipe:"))
            .count())
    };
    // Its stdio and signal pipes.
    let before = pipe_ends()?;
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(&relay.addr());
        stream.write_all(b"x")?;
        let mut back = [0u8; 1];
        stream.read_exact(&mut back)?;
        open.push(stream);
    }
    assert_eq!(pipe_ends()? - before, 0, "a byte each way makes no pipe");
    // A bulk stream through each, all ten open at once.
    for (i, stream) in open.iter().enumerate() {
        let data = payload(256 * 1024 + i);
        let mut writer = stream.try_clone()?;
        let sent = data.clone();
        let sender = thread::spawn(move || writer.write_all(&sent));
        let mut back = vec![0u8; data.len()];
        (&*stream).read_exact(&mut back)?;
        sender.join().expect("sender")?;
        assert!(back == data, "relay {i} changed the bytes");
    }
    let spliced = pipe_ends()? - before;
    assert!(spliced > 0 && spliced <= 20, "{spliced} pipe ends");
    Ok(())
}

/// The resident memory of process `pid`, KiB.
fn resident_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            line.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// A relayed connection that has carried a request and its answer and then waits (a
/// keep-alive between requests) holds no copy buffer: they took 13 KiB each when each
/// direction kept its buffer for its life, against 4 now.
#[test]
fn quiet_relayed_connections_hold_no_buffers() -> TestResult {
    const CLIENTS: u64 = 500;
    let echo = start(&["serve", "echo", "-l", "127.0.0.1:0"]);
    let relay = start(&["forward", "-l", "127.0.0.1:0", "--to", &echo.endpoints()[0]]);
    // One relayed connection first, so that the runtime's and the allocator's own start-up
    // is in the baseline.
    let mut open = Vec::new();
    let talk = |open: &mut Vec<std::net::TcpStream>| -> TestResult {
        let mut stream = connect(&relay.addr());
        stream.write_all(&[b'x'; 100])?;
        let mut back = [0u8; 100];
        stream.read_exact(&mut back)?;
        open.push(stream);
        Ok(())
    };
    talk(&mut open)?;
    let before = resident_kib(relay.pid());
    for _ in 0..CLIENTS {
        talk(&mut open)?;
    }
    let per_client = (resident_kib(relay.pid()) - before) / CLIENTS;
    assert!(
        per_client < 8,
        "{per_client} KiB per quiet relayed connection"
    );
    Ok(())
}
