//! `serve` and `forward` with `--idle-timeout` when the server itself stops longer than the
//! limit (^Z, a debugger, a paused VM): a client that kept talking is not idle, and what
//! it sent during the stop is served. Found by an outside audit of the decisions made from
//! timers, with `SIGSTOP` and `SIGCONT`: every connection was cut as idle, its bytes from
//! the stop never echoed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::IO_TIMEOUT;
use crate::support::process::{Running, socketkit};

/// A client that sends a 10-byte line each 200 ms for 3 s through `addr` (an echo), reading
/// what comes back, then half-closes and reads to the end, while `stopped` (the server's
/// pid) is stopped for 1.5 s from the first second: what it sent, and what came back.
fn talk_through_a_stop(addr: &str, stopped: i32) -> Result<(usize, usize), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_secs(1));
        // SAFETY: kill(2) of a child of this test with a signal number; no memory involved.
        unsafe { libc::kill(stopped, libc::SIGSTOP) };
        thread::sleep(Duration::from_millis(1500));
        // SAFETY: as above.
        unsafe { libc::kill(stopped, libc::SIGCONT) };
    });
    let (mut sent, mut got) = (0, 0);
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    let mut result = Ok(());
    while started.elapsed() < Duration::from_secs(3) {
        if let Err(err) = stream.write_all(format!("{sent:09}\n").as_bytes()) {
            result = Err(format!("write at {:?}: {err}", started.elapsed()));
            break;
        }
        sent += 10;
        let pause = Instant::now();
        while pause.elapsed() < Duration::from_millis(200) {
            match stream.read(&mut buf) {
                Ok(0) => {
                    result = Err(format!("the server ended at {:?}", started.elapsed()));
                    break;
                }
                Ok(n) => got += n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) => {
                    result = Err(format!("read at {:?}: {err}", started.elapsed()));
                    break;
                }
            }
        }
        if result.is_err() {
            break;
        }
    }
    let _ = stopper.join();
    result?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) => return Err(format!("after the half-close: {err}")),
        }
    }
    Ok((sent, got))
}

fn serve_echo(extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", "127.0.0.1:0"]).args(extra);
    Running::start(cmd, 1)
}

#[test]
fn serve_echo_stopped_past_its_idle_limit_keeps_a_talking_client() -> TestResult {
    let engines = engines();
    for engine in engines {
        let server = serve_echo(&["--idle-timeout", "1s", "--io-engine", engine]);
        let (sent, got) = talk_through_a_stop(&server.addr(), server.pid())
            .map_err(|err| format!("{engine}: {err}\n{}", server.stderr()))?;
        assert_eq!(got, sent, "{engine}: {}", server.stderr());
    }
    Ok(())
}

#[test]
fn forward_stopped_past_its_idle_limit_keeps_a_talking_client() -> TestResult {
    let target = serve_echo(&[]);
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", "127.0.0.1:0", "--to", &target.addr()])
        .args(["--idle-timeout", "1s"]);
    let relay = Running::start(cmd, 1);
    let (sent, got) = talk_through_a_stop(&relay.addr(), relay.pid())
        .map_err(|err| format!("{err}\n{}", relay.stderr()))?;
    assert_eq!(got, sent, "{}", relay.stderr());
    Ok(())
}

/// The engines this machine has: epoll, and io_uring where the kernel has it.
fn engines() -> Vec<&'static str> {
    let mut engines = vec!["epoll"];
    if crate::io_engine::io_uring_available() {
        engines.push("io_uring");
    }
    engines
}

/// Sends `signal` to `pid`, a child of this test.
fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) of a child of this test with a signal number; no memory involved.
    unsafe { libc::kill(pid, signal) };
}

#[test]
fn a_drain_stopped_past_its_deadline_lets_the_clients_that_finished_meanwhile_end_cleanly()
-> TestResult {
    let engines = engines();
    // Past the deadline by far, and by a little (the runtime still has to run the
    // connections that ended during the stop).
    let stops = [Duration::from_millis(1500), Duration::from_millis(1040)];
    for (engine, stop) in engines
        .into_iter()
        .flat_map(|e| stops.map(|stop| (e, stop)))
    {
        let mut server = serve_echo(&["--drain-timeout", "1s", "--io-engine", engine]);
        let mut clients = Vec::new();
        for _ in 0..8 {
            let mut stream = TcpStream::connect(server.addr())?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.write_all(b"hello\n")?;
            let mut echoed = [0u8; 6];
            stream.read_exact(&mut echoed)?;
            clients.push(stream);
        }
        signal(server.pid(), libc::SIGTERM);
        server.wait_for_stderr(&["draining connections"], IO_TIMEOUT);
        // Stopped with the drain's deadline ahead, for longer than it: every client ends
        // its connection during the stop, which its server sees only once it runs again.
        signal(server.pid(), libc::SIGSTOP);
        for stream in &mut clients {
            stream.write_all(b"bye\n")?;
            stream.shutdown(std::net::Shutdown::Write)?;
        }
        thread::sleep(stop);
        signal(server.pid(), libc::SIGCONT);
        let mut cut = Vec::new();
        for (i, stream) in clients.iter_mut().enumerate() {
            let mut rest = Vec::new();
            match stream.read_to_end(&mut rest) {
                Ok(_) if rest == b"bye\n" => {}
                other => cut.push(format!("client {i}: {other:?}, {rest:?}")),
            }
        }
        let status = server.wait(IO_TIMEOUT);
        let said = server.stderr();
        assert!(cut.is_empty(), "{engine} {stop:?}: {cut:?}\n{said}");
        assert!(status.success(), "{engine} {stop:?}: {status:?}\n{said}");
        assert!(!said.contains("still open"), "{engine} {stop:?}: {said}");
    }
    Ok(())
}

#[test]
fn a_tls_handshake_made_while_the_server_was_stopped_past_its_limit_is_in_time() -> TestResult {
    use socketkit::tls::rustls;
    let pki = crate::support::certs::Pki::new();
    let mut cmd = socketkit();
    cmd.args(["serve", "greeting", "-l", "tls:127.0.0.1:0"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ])
        .args(["--tls-handshake-timeout", "1s"]);
    let server = Running::start(cmd, 1);
    // Accepted, their handshake's clock running, before the stop.
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let tcp = TcpStream::connect(("127.0.0.1", server.port()))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        sockets.push(tcp);
    }
    thread::sleep(Duration::from_millis(300));
    signal(server.pid(), libc::SIGSTOP);
    // Each ClientHello goes during the stop, which outlasts the handshake's limit.
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|mut tcp| {
            let mut conn = pki.client_session();
            thread::spawn(move || -> Result<Vec<u8>, String> {
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut got = Vec::new();
                tls.read_to_end(&mut got).map_err(|e| e.to_string())?;
                Ok(got)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    signal(server.pid(), libc::SIGCONT);
    for (i, client) in clients.into_iter().enumerate() {
        let got = client.join().map_err(|_| "a client panicked")?;
        let got = got.map_err(|err| format!("client {i}: {err}\n{}", server.stderr()))?;
        assert!(!got.is_empty(), "client {i}: no greeting");
    }
    Ok(())
}

#[test]
fn clients_that_connected_while_the_server_was_stopped_in_its_shutdown_delay_are_served()
-> TestResult {
    let engines = engines();
    for engine in engines {
        let mut cmd = socketkit();
        cmd.args([
            "serve",
            "greeting",
            "-l",
            "127.0.0.1:0",
            "--io-engine",
            engine,
        ])
        .args(["--shutdown-delay", "1s"]);
        let mut server = Running::start(cmd, 1);
        signal(server.pid(), libc::SIGTERM);
        server.wait_for_stderr(&["accepting for"], IO_TIMEOUT);
        // Stopped past the delay; the clients' connects complete in the kernel's backlog
        // meanwhile, as they would while the server accepts.
        signal(server.pid(), libc::SIGSTOP);
        let mut clients = Vec::new();
        for _ in 0..8 {
            let stream = TcpStream::connect(server.addr())?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            clients.push(stream);
        }
        thread::sleep(Duration::from_millis(1500));
        signal(server.pid(), libc::SIGCONT);
        let mut cut = Vec::new();
        for (i, stream) in clients.iter_mut().enumerate() {
            let mut got = Vec::new();
            match stream.read_to_end(&mut got) {
                Ok(_) if !got.is_empty() => {}
                other => cut.push(format!("client {i}: {other:?}, {got:?}")),
            }
        }
        server.wait(IO_TIMEOUT);
        assert!(cut.is_empty(), "{engine}: {cut:?}\n{}", server.stderr());
    }
    Ok(())
}
