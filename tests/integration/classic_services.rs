//! The classic services against their RFCs where an outside audit found them wanting: TCP
//! chargen throws away what the client sends (RFC 864) instead of leaving it unread until
//! the client's writes stall, and a qotd connection refused by the access rules takes no
//! quote from the clients that are let in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, connect_from, read_to_end, try_connect_from};
use crate::support::process::{Running, socketkit};

#[test]
fn chargen_throws_away_what_the_client_sends() -> TestResult {
    let mut cmd = socketkit();
    cmd.args(["serve", "chargen", "-l", "127.0.0.1:0"]);
    let server = Running::start(cmd, 1);
    let stream = connect(&server.addr());
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = stream.try_clone()?;
    // Reads (and drops) the lines while the main thread writes 8 MB: the client reads as
    // it writes, so only a server that does not read can stall it.
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && reader.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let mut writer = stream;
    let block = [b'x'; 65536];
    for sent in 0..128 {
        writer
            .write_all(&block)
            .map_err(|err| format!("after {sent} × 64 KiB: {err} (the server does not read)"))?;
    }
    writer.shutdown(std::net::Shutdown::Both)?;
    let _ = reading.join();
    Ok(())
}

#[test]
fn a_refused_qotd_connection_takes_no_quote() -> TestResult {
    let dir = tempfile::tempdir()?;
    let quotes = dir.path().join("quotes");
    std::fs::write(&quotes, "one\n%\ntwo\n%\nthree\n%\nfour\n")?;
    for engine in ["epoll", "auto"] {
        let mut cmd = socketkit();
        cmd.args(["serve", "qotd", "-l", "127.0.0.1:0", "--deny", "127.0.0.2"])
            .args(["--io-engine", engine, "--quotes"])
            .arg(&quotes);
        let server = Running::start(cmd, 1);
        let to: SocketAddr = server.addr().parse()?;
        let mut got = Vec::new();
        for _ in 0..3 {
            // Refused (reset at once, even before the connect returns: no quote either way).
            if let Ok(mut refused) = try_connect_from("127.0.0.2", to) {
                let _ = refused.set_read_timeout(Some(IO_TIMEOUT));
                let mut nothing = Vec::new();
                let _ = refused.read_to_end(&mut nothing);
                assert!(
                    nothing.is_empty(),
                    "{engine}: a refused client got {nothing:?}"
                );
            }
            let answer = read_to_end(&mut connect_from("127.0.0.1", to));
            let mut line = String::new();
            BufReader::new(&answer[..]).read_line(&mut line)?;
            got.push(line.trim_end().to_owned());
        }
        assert_eq!(got, ["one", "two", "three"], "{engine}");
    }
    Ok(())
}
