//! Against the tools people use today: OpenBSD netcat and socat.

use std::process::Command;

use crate::support::TestResult;
use crate::support::net::payload;
use crate::support::process::{DEADLINE, Running, command, run, socketkit};
use crate::support::tools;

fn tool(name: &str) -> Command {
    command(std::path::Path::new(name))
}

#[test]
fn nc_receives_exactly_the_six_bytes_of_nihao() {
    if !tools::available("nc") {
        return;
    }
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let mut nc = tool("nc");
    nc.args(["-N", "127.0.0.1", &server.port().to_string()]);
    let out = run(nc, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, [0xe4, 0xbd, 0xa0, 0xe5, 0xa5, 0xbd]);
}

#[test]
fn connect_round_trips_4_mib_through_socat_cat() -> TestResult {
    if !tools::available("socat") {
        return Ok(());
    }
    // socat has no readiness line of its own: bind the port in socat and find it by
    // asking socat to print it (-d -d logs "listening on AF=2 127.0.0.1:PORT").
    let mut cmd = tool("socat");
    cmd.args([
        "-d",
        "-d",
        "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr",
        "EXEC:cat",
    ]);
    let socat = Running::start(cmd, 1);
    let stderr = socat.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .ok_or("no line")?;
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("socat printed no port")?;
    let data = payload(4 * 1024 * 1024);
    let mut connect = socketkit();
    connect.args(["connect", &format!("127.0.0.1:{port}")]);
    let out = run(connect, data.clone(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(
        hash(&out.stdout) == hash(&data),
        "the bytes came back changed"
    );
    Ok(())
}

/// FNV-1a: enough to compare two byte strings by a short digest in the failure message.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
