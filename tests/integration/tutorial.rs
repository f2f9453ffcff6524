//! The tutorial's programs against each other's Python originals (ported to Python 3).

use std::process::Command;

use crate::support::TestResult;
use crate::support::process::{DEADLINE, Running, example, run, socketkit};
use crate::support::tools;

/// The tutorial's client.py in Python 3, with host and port from argv.
const PY_CLIENT: &str = r#"
import socket, sys
s = socket.socket()
s.connect((sys.argv[1], int(sys.argv[2])))
sys.stdout.buffer.write(s.recv(1024))
s.close()
"#;

/// The tutorial's server.py in Python 3, on port 0, serving one client then exiting.
const PY_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(5)
print('listening on tcp:127.0.0.1:%d' % s.getsockname()[1], file=sys.stderr, flush=True)
c, addr = s.accept()
print('连接地址：', addr, flush=True)
c.send('你好'.encode('utf-8'))
c.close()
"#;

fn python(script: &str) -> Command {
    let mut cmd = crate::support::process::command(std::path::Path::new("python3"));
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn python_client_against_socketkit_serve() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let mut client = python(PY_CLIENT);
    client.args(["127.0.0.1", &server.port().to_string()]);
    let out = run(client, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8(out.stdout)?, "你好");
    Ok(())
}

#[test]
fn example_client_against_python_server() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    let server = Running::start(python(PY_SERVER), 1);
    let mut client = example("client");
    client.args(["127.0.0.1", &server.port().to_string()]);
    let out = run(client, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(String::from_utf8(out.stdout)?, "你好\n");
    Ok(())
}

#[test]
fn example_server_against_python_client() -> TestResult {
    if !tools::available("python3") {
        return Ok(());
    }
    let mut cmd = example("server");
    cmd.args(["127.0.0.1", "0"]);
    let mut server = Running::start(cmd, 1);
    let mut stdout = server.take_stdout();
    for _ in 0..2 {
        let mut client = python(PY_CLIENT);
        client.args(["127.0.0.1", &server.port().to_string()]);
        let out = run(client, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(String::from_utf8(out.stdout)?, "你好");
    }
    drop(server);
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed)?;
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for line in lines {
        let peer = line
            .strip_prefix("连接地址： ")
            .ok_or(format!("odd line {line:?}"))?;
        assert!(peer.starts_with("127.0.0.1:"), "{line}");
        peer.parse::<std::net::SocketAddr>()?;
    }
    Ok(())
}

/// Issue 9: the example server closes each connection first, so its port sits in TIME_WAIT;
/// started again at once on the same port it must still bind (SO_REUSEADDR).
#[test]
fn example_server_can_be_run_again_at_once_on_the_same_port() -> TestResult {
    let mut cmd = example("server");
    cmd.args(["127.0.0.1", "0"]);
    let server = Running::start(cmd, 1);
    let port = server.port().to_string();
    let mut stream = crate::support::net::connect(&server.addr());
    assert_eq!(
        crate::support::net::read_to_end(&mut stream),
        "你好".as_bytes()
    );
    drop(stream);
    drop(server);
    let mut again = example("server");
    again.args(["127.0.0.1", &port]);
    let again = Running::start(again, 1);
    assert_eq!(again.port().to_string(), port);
    Ok(())
}

#[test]
fn example_client_says_when_the_host_does_not_resolve() {
    let mut client = example("client");
    client.args(["no-such-host.invalid", "12345"]);
    let out = run(client, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr
            .starts_with("error: cannot resolve no-such-host.invalid: "),
        "{}",
        out.stderr
    );
}
