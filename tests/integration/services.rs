//! RFC conformance of every built-in service over TCP, UDP and Unix sockets, with Python
//! clients, nc and socat as the peers users would use.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, payload, read_to_end};
use crate::support::process::{DEADLINE, Running, command, run, socketkit};
use crate::support::tools;

fn serve(service: &str, listen: &[&str], extra: &[&str]) -> Running {
    let mut cmd = socketkit();
    cmd.args(["serve", service]);
    for endpoint in listen {
        cmd.args(["-l", endpoint]);
    }
    cmd.args(extra);
    Running::start(cmd, listen.len())
}

/// One UDP request and its answer.
fn udp_ask(endpoint: &str, request: &[u8]) -> Vec<u8> {
    let addr = endpoint.trim_start_matches("udp:");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket.send_to(request, addr).expect("send");
    let mut buf = [0u8; 65_536];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

fn tcp_read(endpoint: &str) -> Vec<u8> {
    read_to_end(&mut connect(endpoint.trim_start_matches("tcp:")))
}

fn unix_read(path: &std::path::Path) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read");
    all
}

#[test]
fn greeting_over_udp_answers_each_datagram() {
    let server = serve("greeting", &["udp:127.0.0.1:0"], &["--message", "hi"]);
    for _ in 0..3 {
        assert_eq!(udp_ask(&server.endpoints()[0], b"anything"), b"hi");
    }
}

#[test]
fn echo_over_tcp_honours_half_close() {
    let server = serve("echo", &["127.0.0.1:0"], &[]);
    let mut stream = connect(&server.addr());
    let data = payload(256 * 1024);
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let data = data.clone();
        std::thread::spawn(move || {
            stream.write_all(&data).expect("write");
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
        })
    };
    let echoed = read_to_end(&mut stream);
    writer.join().expect("writer");
    assert!(echoed == data, "every byte comes back, then end of stream");
}

#[test]
fn echo_over_udp_unix_and_unixgram() -> TestResult {
    let dir = tempfile::tempdir()?;
    let stream_path = dir.path().join("echo.sock");
    let dgram_path = dir.path().join("echo.dgram");
    let server = serve(
        "echo",
        &[
            "udp:[::1]:0",
            &format!("unix:{}", stream_path.display()),
            &format!("unixgram:{}", dgram_path.display()),
        ],
        &[],
    );
    let v6 = server.endpoints()[0].trim_start_matches("udp:").to_owned();
    let socket = UdpSocket::bind("[::1]:0")?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    socket.send_to(b"datagram", &v6)?;
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"datagram");

    let mut stream = UnixStream::connect(&stream_path)?;
    stream.write_all(b"over unix")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    assert_eq!(got, b"over unix");

    let client = UnixDatagram::bind(dir.path().join("client.dgram"))?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.send_to(b"unixgram", &dgram_path)?;
    let n = client.recv(&mut buf)?;
    assert_eq!(&buf[..n], b"unixgram");
    Ok(())
}

#[test]
fn discard_reads_everything_and_answers_nothing() {
    let server = serve("discard", &["127.0.0.1:0", "udp:127.0.0.1:0"], &[]);
    let mut stream = connect(&server.addr());
    stream
        .write_all(&payload(1024 * 1024))
        .expect("the server keeps reading");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert!(read_to_end(&mut stream).is_empty());
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    socket
        .send_to(b"x", server.endpoints()[1].trim_start_matches("udp:"))
        .expect("send");
    assert!(
        socket.recv(&mut [0u8; 16]).is_err(),
        "discard never answers"
    );
}

#[test]
fn chargen_streams_the_rfc_pattern_until_the_client_closes() {
    let server = serve("chargen", &["127.0.0.1:0", "udp:127.0.0.1:0"], &[]);
    let mut stream = connect(&server.addr());
    let mut got = vec![0u8; 74 * 200];
    stream.read_exact(&mut got).expect("200 lines");
    for (n, line) in got.chunks(74).enumerate() {
        let expected: Vec<u8> = (0..72).map(|i| b' ' + ((n + i) % 95) as u8).collect();
        assert_eq!(&line[..72], &expected[..], "line {n}");
        assert_eq!(&line[72..], b"\r\n");
    }
    drop(stream);
    for _ in 0..20 {
        let datagram = udp_ask(&server.endpoints()[1], b"");
        assert!(datagram.len() <= 512);
        assert!(
            datagram
                .iter()
                .all(|b| (b' '..=b'~').contains(b) || *b == b'\r' || *b == b'\n')
        );
    }
    // The server is still well after a client went away mid-stream.
    let mut again = connect(&server.addr());
    let mut first = [0u8; 74];
    again.read_exact(&mut first).expect("a new session");
    assert_eq!(first[0], b' ');
}

#[test]
fn daytime_is_one_line_of_now() {
    let server = serve("daytime", &["127.0.0.1:0", "udp:127.0.0.1:0"], &[]);
    let line = String::from_utf8(tcp_read(&server.endpoints()[0])).expect("text");
    assert!(
        line.ends_with("-UTC\r\n") && line.matches('\n').count() == 1,
        "{line:?}"
    );
    let year = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 31_556_952
        + 1970;
    assert!(
        line.contains(&year.to_string()) || line.contains(&(year - 1).to_string()),
        "{line}"
    );
    let udp = String::from_utf8(udp_ask(&server.endpoints()[1], b"")).expect("text");
    assert!(udp.ends_with("-UTC\r\n"), "{udp:?}");
}

#[test]
fn time_is_seconds_since_1900_big_endian() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("time.sock");
    let unix = format!("unix:{}", path.display());
    let server = serve("time", &["127.0.0.1:0", "udp:127.0.0.1:0", &unix], &[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 2_208_988_800;
    for answer in [
        tcp_read(&server.endpoints()[0]),
        udp_ask(&server.endpoints()[1], b""),
        unix_read(&path),
    ] {
        let bytes: [u8; 4] = answer.as_slice().try_into().expect("exactly 4 bytes");
        let told = u64::from(u32::from_be_bytes(bytes));
        assert!(told.abs_diff(now % (1 << 32)) <= 5, "{told} vs {now}");
    }
    Ok(())
}

/// A quotes file holding `text` in a directory of its own (kept while the guard lives),
/// and its path as an argument.
fn quotes_file(text: &str) -> std::io::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("quotes.txt");
    std::fs::write(&file, text)?;
    let arg = file.display().to_string();
    Ok((dir, arg))
}

#[test]
fn qotd_serves_quotes_in_turn_from_a_file() -> TestResult {
    let (_dir, file_arg) = quotes_file("first quote\n%\nsecond\nquote\n")?;
    let server = serve(
        "qotd",
        &["127.0.0.1:0", "udp:127.0.0.1:0"],
        &["--quotes", &file_arg],
    );
    assert_eq!(tcp_read(&server.endpoints()[0]), b"first quote\r\n");
    assert_eq!(udp_ask(&server.endpoints()[1], b""), b"second\r\nquote\r\n");
    assert_eq!(tcp_read(&server.endpoints()[0]), b"first quote\r\n");
    Ok(())
}

/// Starting the server asks no quote of its own (deciding how to serve one must not take
/// the first client's turn): on each engine, the first client gets the first quote.
#[test]
fn qotd_gives_the_first_client_the_first_quote() -> TestResult {
    let (_dir, file_arg) = quotes_file("one\n%\ntwo\n%\nthree\n")?;
    let mut engines = vec!["epoll"];
    if crate::io_engine::io_uring_available() {
        engines.push("io_uring");
    }
    for engine in engines {
        let server = serve(
            "qotd",
            &["127.0.0.1:0"],
            &["--quotes", &file_arg, "--io-engine", engine],
        );
        assert_eq!(tcp_read(&server.endpoints()[0]), b"one\r\n", "{engine}");
        assert_eq!(tcp_read(&server.endpoints()[0]), b"two\r\n", "{engine}");
    }
    Ok(())
}

#[test]
fn qotd_built_in_quotes_are_under_512_bytes() {
    let server = serve("qotd", &["127.0.0.1:0"], &[]);
    for _ in 0..8 {
        let quote = tcp_read(&server.endpoints()[0]);
        assert!(!quote.is_empty() && quote.len() < 512);
    }
}

#[test]
fn python_nc_and_socat_clients() -> TestResult {
    let server = serve("echo", &["127.0.0.1:0", "udp:127.0.0.1:0"], &[]);
    let port = server.port().to_string();
    let udp_port = server.endpoints()[1]
        .rsplit(':')
        .next()
        .ok_or("port")?
        .to_owned();
    if tools::available("python3") {
        let script = "import socket,sys\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\ns.sendall(b'py');s.shutdown(socket.SHUT_WR)\nprint(s.recv(64).decode())";
        let mut py = command(std::path::Path::new("python3"));
        py.args(["-c", script, &port]);
        let out = run(py, Vec::new(), DEADLINE);
        assert_eq!(String::from_utf8(out.stdout)?, "py\n", "{}", out.stderr);
    }
    if tools::available("nc") {
        let mut nc = command(std::path::Path::new("nc"));
        nc.args(["-N", "127.0.0.1", &port]);
        assert_eq!(
            run(nc, b"nc says hi".to_vec(), DEADLINE).stdout,
            b"nc says hi"
        );
    }
    if tools::available("socat") {
        let mut socat = command(std::path::Path::new("socat"));
        socat.args(["-t", "1", "-", &format!("UDP:127.0.0.1:{udp_port}")]);
        assert_eq!(
            run(socat, b"socat udp".to_vec(), DEADLINE).stdout,
            b"socat udp"
        );
    }
    Ok(())
}

/// Python's socket module, nc and socat as clients of every service that answers at once
/// (greeting, daytime, qotd, time over TCP and UDP; chargen's first bytes).
#[test]
fn every_answering_service_to_python_nc_and_socat() -> TestResult {
    const PY: &str = "import socket,sys\nkind,port=sys.argv[1],int(sys.argv[2])\nif kind=='tcp':\n    s=socket.create_connection(('127.0.0.1',port),timeout=10)\n    data=b''\n    while len(data)<512:\n        chunk=s.recv(4096)\n        if not chunk: break\n        data+=chunk\nelse:\n    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(10)\n    s.sendto(b'?',('127.0.0.1',port));data=s.recv(65536)\nsys.stdout.buffer.write(data[:512])\n";
    let python = tools::available("python3");
    let nc = tools::available("nc");
    let socat = tools::available("socat");
    for service in ["greeting", "daytime", "qotd", "time", "chargen"] {
        let server = serve(service, &["127.0.0.1:0", "udp:127.0.0.1:0"], &[]);
        let tcp_port = server.port().to_string();
        let udp_port = server.endpoints()[1]
            .rsplit(':')
            .next()
            .ok_or("port")?
            .to_owned();
        let mut answers = Vec::new();
        if python {
            for (kind, port) in [("tcp", &tcp_port), ("udp", &udp_port)] {
                let mut py = command(std::path::Path::new("python3"));
                py.args(["-c", PY, kind, port]);
                answers.push((
                    format!("python {kind}"),
                    run(py, Vec::new(), DEADLINE).stdout,
                ));
            }
        }
        if nc && service != "chargen" {
            let mut cmd = command(std::path::Path::new("nc"));
            cmd.args(["-N", "127.0.0.1", &tcp_port]);
            answers.push(("nc tcp".into(), run(cmd, Vec::new(), DEADLINE).stdout));
        }
        if socat {
            let mut cmd = command(std::path::Path::new("socat"));
            cmd.args(["-t", "1", "-", &format!("UDP:127.0.0.1:{udp_port}")]);
            answers.push(("socat udp".into(), run(cmd, b"?".to_vec(), DEADLINE).stdout));
        }
        for (client, answer) in answers {
            let ok = match service {
                "greeting" => answer == "你好".as_bytes(),
                "daytime" => answer.ends_with(b"-UTC\r\n"),
                "qotd" => answer.len() < 512 && answer.ends_with(b"\r\n"),
                "time" => answer.len() == 4,
                _ => answer
                    .iter()
                    .all(|b| (b' '..=b'~').contains(b) || b"\r\n".contains(b)),
            };
            assert!(
                ok,
                "{service} to {client}: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    Ok(())
}
