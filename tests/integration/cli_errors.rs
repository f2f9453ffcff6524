//! SPEC §2.3: exit codes and the one `error:` line, for every error we can cause.

use crate::support::process::{DEADLINE, Running, run, socketkit};

/// Runs `socketkit ARGS` and returns (exit code, stderr), checking that stderr is exactly one
/// `error:` line and stdout is empty.
fn fails(args: &[&str]) -> (i32, String) {
    let mut cmd = socketkit();
    cmd.args(args);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert!(out.stdout.is_empty(), "no partial output: {:?}", out.stdout);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{:?}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    (out.code(), out.stderr.trim_end().to_owned())
}

#[test]
fn port_in_use_is_exit_1() {
    let mut serve = socketkit();
    serve.args(["serve", "-l", "127.0.0.1:0"]);
    let server = Running::start(serve, 1);
    let addr = server.addr();
    let (code, line) = fails(&["serve", "-l", &addr]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        format!("error: cannot listen on tcp:{addr}: address already in use")
    );
}

/// The same place given twice to one command is bad usage (exit 2) naming it: it was
/// `address already in use` (exit 1), which sent the user looking for another process (an
/// outside audit following the docs). Port 0 twice is two ports.
#[test]
fn a_listener_given_twice_is_bad_usage() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let tls = format!("tls:{tcp}");
    let dir = tempfile::tempdir().expect("temp dir");
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    let cases: [(&[&str], String); 3] = [
        (
            &["serve", "-l", &tcp, "-l", &tcp],
            format!("error: cannot listen on tcp:{tcp}: it is given twice"),
        ),
        (
            &["serve", "-l", &tcp, "-l", &tls, "--tls-self-signed"],
            format!("error: cannot listen on {tls}: it is given twice (as tcp:{tcp})"),
        ),
        (
            &["forward", "-l", &unix, "-l", &unix, "--to", "127.0.0.1:9"],
            format!("error: cannot listen on {unix}: it is given twice"),
        ),
    ];
    for (args, said) in cases {
        let (code, line) = fails(args);
        assert_eq!((code, line), (2, said));
    }
    // One place in two spellings (the review of the first version).
    let every = format!(":{port}");
    let every_v6 = format!("[::]:{port}");
    let every_v4 = format!("0.0.0.0:{port}");
    for other in [&every_v6, &every_v4] {
        let (code, line) = fails(&["serve", "-l", &every, "-l", other]);
        assert_eq!(code, 2, "{line}");
        assert!(
            line.ends_with(&format!("it is given twice (as tcp::{port})")),
            "{line}"
        );
    }
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).expect("symlink");
    for other in ["unix:s.sock", "unix:sub/../s.sock", "unix:link/s.sock"] {
        let mut relative = socketkit();
        relative
            .current_dir(dir.path())
            .args(["serve", "-l", &unix, "-l", other]);
        let out = run(relative, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{other}: {}", out.stderr);
        assert!(
            out.stderr.contains("it is given twice"),
            "{other}: {}",
            out.stderr
        );
    }
    let mut twice_zero = socketkit();
    twice_zero.args(["serve", "-l", "127.0.0.1:0", "-l", "127.0.0.1:0"]);
    let server = Running::start(twice_zero, 2);
    assert_ne!(server.endpoints()[0], server.endpoints()[1]);
}

#[test]
fn a_udp_port_in_use_is_exit_1_too() {
    // A second datagram socket on the port would take every datagram from the first.
    for command in [
        &["serve", "echo"][..],
        &["forward", "--to", "udp:127.0.0.1:9"],
    ] {
        let mut serve = socketkit();
        serve.args(["serve", "echo", "-l", "udp:127.0.0.1:0"]);
        let server = Running::start(serve, 1);
        let endpoint = server.endpoints()[0].clone();
        let mut args = command.to_vec();
        args.extend(["-l", &endpoint]);
        let (code, line) = fails(&args);
        assert_eq!(code, 1, "{command:?}");
        assert_eq!(
            line,
            format!("error: cannot listen on {endpoint}: address already in use")
        );
    }
}

#[test]
fn refused_is_exit_1() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let (code, line) = fails(&["connect", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        format!("error: cannot connect to tcp:127.0.0.1:{port}: connection refused")
    );
}

#[test]
fn malformed_endpoints_are_exit_2() {
    let cases = [
        (
            "localhost:99999",
            "error: invalid endpoint 'localhost:99999': port must be 0-65535",
        ),
        (
            "[::1:80",
            "error: invalid endpoint '[::1:80': unclosed '[' (expected [IPv6]:PORT)",
        ),
        (
            "sctp:h:1",
            "error: invalid endpoint 'sctp:h:1': unknown scheme 'sctp' (expected tcp, tls, udp, unix or unixgram)",
        ),
        (
            "tls:tcp:127.0.0.1:1",
            "error: invalid endpoint 'tls:tcp:127.0.0.1:1': 'tcp:' after 'tls:': an endpoint takes one scheme (tls: is TCP with TLS)",
        ),
        (
            "",
            "error: invalid endpoint '': empty endpoint (expected HOST:PORT, tls:HOST:PORT, udp:HOST:PORT or unix:PATH)",
        ),
        (
            "a\nb:1",
            "error: invalid endpoint 'a\\nb:1': host name 'a\\nb' contains '\\n'",
        ),
    ];
    for (endpoint, expected) in cases {
        for command in ["serve", "connect"] {
            let args: Vec<&str> = match command {
                "serve" => vec!["serve", "-l", endpoint],
                _ => vec!["connect", endpoint],
            };
            let (code, line) = fails(&args);
            assert_eq!(code, 2, "{command} {endpoint:?}");
            assert_eq!(line, expected, "{command} {endpoint:?}");
        }
    }
}

/// `udp:fd:3` reads as host `fd`, port 3; a listener says how an inherited socket is
/// written instead of "cannot resolve fd" (exit 1).
#[test]
fn an_inherited_socket_with_a_transport_says_how_it_is_written() {
    for (args, rest) in [
        (vec!["serve", "-l", "udp:fd:3"], "fd:3"),
        (
            vec!["forward", "-l", "tcp:fd:3", "--to", "127.0.0.1:9"],
            "fd:3",
        ),
        (vec!["listen", "udp:fd:web"], "fd:web"),
    ] {
        let (code, line) = fails(&args);
        assert_eq!(code, 2, "{args:?}: {line}");
        assert!(
            line.ends_with(&format!(
                "an inherited socket is written {rest} whatever its kind (tls:{rest} for TLS)"
            )),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn bad_durations_are_exit_2() {
    let (code, line) = fails(&["connect", "--timeout", "5x", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(
        line.starts_with("error: invalid duration '5x' for --timeout: expected a duration"),
        "{line}"
    );
    let (code, line) = fails(&["serve", "--idle-timeout", "soon", "-l", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(
        line.starts_with("error: invalid duration 'soon' for --idle-timeout: expected a duration"),
        "{line}"
    );
    // --rate-per-source's DURATION is read as every duration (an outside audit: `5/1ns`
    // and `1/366d` were taken, `5/30` refused in humantime's words).
    for (rate, words) in [
        ("1/366d", "'366d': must be from 1ms to 365d"),
        ("5/1ns", "'1ns': must be from 1ms to 365d"),
        // A unit alone is letters alone: `e3` is not 1e3 seconds.
        (
            "5/e3",
            "'e3': expected a duration such as 500ms, 30s or 2m, from 1ms to 365d",
        ),
    ] {
        let (code, line) = fails(&["serve", "--rate-per-source", rate, "-l", "127.0.0.1:0"]);
        assert_eq!(code, 2, "{line}");
        assert_eq!(
            line,
            format!("error: invalid rate '{rate}' for --rate-per-source: {words}")
        );
    }
}

#[test]
fn unknown_options_services_and_values_are_exit_2() {
    assert_eq!(
        fails(&["serve", "--bogus"]),
        (2, "error: unexpected argument '--bogus' found".into())
    );
    let (code, line) = fails(&["serve", "nope"]);
    assert_eq!(code, 2);
    assert!(
        line.starts_with("error: unknown service 'nope' (expected one of: greeting"),
        "{line}"
    );
    let (code, _) = fails(&["serve", "--max-connections", "lots"]);
    assert_eq!(code, 2);
    let (code, _) = fails(&["frobnicate"]);
    assert_eq!(code, 2);
    // exec's program without the `--` before it: the line says where it goes.
    assert_eq!(
        fails(&["serve", "exec", "-l", "127.0.0.1:0", "cat"]),
        (
            2,
            "error: unexpected argument 'cat' found (exec's program goes after --: socketkit \
             serve exec -l … -- PROGRAM ARGS)"
                .into()
        )
    );
}

#[test]
fn a_mistyped_option_command_or_value_names_the_one_meant() {
    let cases = [
        (
            vec!["serve", "--worker", "2"],
            "error: unexpected argument '--worker' found (did you mean '--workers'?)",
        ),
        (
            vec!["conect", "127.0.0.1:1"],
            "error: unrecognized subcommand 'conect' (did you mean 'connect'?)",
        ),
        (
            vec!["serve", "--io-engine", "uring"],
            "error: invalid value 'uring' for '--io-engine <ENGINE>' [possible values: auto, \
             epoll, io_uring] (did you mean 'io_uring'?)",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(fails(&args), (2, expected.to_owned()), "{args:?}");
    }
}

#[test]
fn unresolvable_host_is_exit_1_in_words() {
    let (code, line) = fails(&["connect", "no-such-host.invalid:80"]);
    assert_eq!(code, 1);
    assert!(
        line.starts_with("error: cannot resolve no-such-host.invalid: "),
        "{line}"
    );
}

/// A bare `socketkit`: the help on stdout (as a bare `git`), one `error:` line, exit 2.
#[test]
fn no_command_is_one_error_line_with_the_help_on_stdout() {
    let out = run(socketkit(), Vec::new(), DEADLINE);
    assert_eq!(out.code(), 2);
    assert_eq!(
        out.stderr.trim_end(),
        "error: no command given (one of serve, connect, listen, forward, bench, completions or man)"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: socketkit"));
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let mut cmd = socketkit();
        cmd.arg(flag);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 0);
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn serve_options_are_checked_against_the_service() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["serve", "exec"],
            "error: exec needs a program: socketkit serve exec -- PROGRAM [ARGS...]",
        ),
        (
            &["serve", "exec", "--", "no-such-program-here"],
            "error: program 'no-such-program-here' not found",
        ),
        (
            &["serve", "exec", "-l", "udp:127.0.0.1:0", "--", "cat"],
            "error: exec serves streams only; udp:127.0.0.1:0 is a datagram endpoint",
        ),
        (
            &["serve", "exec", "--", "/"],
            "error: program '/' is not an executable file (chmod +x?)",
        ),
        (
            &["serve", "echo", "--message", "x"],
            "error: --message applies to the greeting service only",
        ),
        (
            &["serve", "echo", "--", "cat"],
            "error: a program after -- applies to the exec service only",
        ),
        (
            &["serve", "--max-connections", "0"],
            "error: invalid value '0' for --max-connections: must be a whole number from 1 to 1000000000",
        ),
        (
            &["serve", "--unix-mode", "9"],
            "error: invalid mode '9' for --unix-mode: expected octal permission bits from 0 to 7777, such as 660",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(fails(args), (2, expected.to_owned()), "{args:?}");
    }
}

/// A file an option names that cannot be read is an I/O error, exit 1 (SPEC §2.3), as for
/// `--to-file`; one whose content is wrong is bad usage, exit 2.
#[test]
fn unusable_quote_and_rule_files_are_exit_2_and_unreadable_ones_exit_1()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let long = dir.path().join("long.txt");
    std::fs::write(&long, "x".repeat(600))?;
    let (code, line) = fails(&["serve", "qotd", "--quotes", long.to_str().ok_or("path")?]);
    assert_eq!(code, 2);
    assert!(
        line.ends_with("is 602 bytes with its CR LF line ends; RFC 865 wants fewer than 512"),
        "{line}"
    );
    let bad = dir.path().join("bad.rules");
    std::fs::write(&bad, "10.0.0.0/33\n")?;
    let bad = bad.to_str().ok_or("path")?;
    let (code, line) = fails(&["serve", "-l", "127.0.0.1:0", "--allow-file", bad]);
    assert_eq!(code, 2, "{line}");
    assert!(line.ends_with("prefix length must be 0-32"), "{line}");
    // A file that opens but is not text is wrong content too.
    let binary = dir.path().join("binary.txt");
    // Its first line is text; the second is not, and the line says so.
    std::fs::write(&binary, b"# rules\n\xff\xfe\n")?;
    let binary = binary.to_str().ok_or("path")?;
    for args in [
        &["serve", "qotd", "--quotes", binary][..],
        &["serve", "-l", "127.0.0.1:0", "--allow-file", binary],
        &["forward", "-l", "127.0.0.1:0", "--to-file", binary],
    ] {
        let (code, line) = fails(args);
        assert_eq!(code, 2, "{args:?}: {line}");
        assert!(
            line.contains(&format!("{binary}:2: not UTF-8 text"))
                || line.ends_with(&format!("{binary}: line 2 is not UTF-8 text")),
            "{args:?}: {line}"
        );
    }
    let missing = dir.path().join("missing.txt");
    let missing = missing.to_str().ok_or("path")?;
    for args in [
        &["serve", "qotd", "--quotes", missing][..],
        &["serve", "-l", "127.0.0.1:0", "--allow-file", missing],
        &["serve", "-l", "127.0.0.1:0", "--deny-file", missing],
        &[
            "forward",
            "-l",
            "127.0.0.1:0",
            "--socks",
            "--socks-allow-file",
            missing,
        ],
    ] {
        let (code, line) = fails(args);
        assert_eq!(code, 1, "{args:?}: {line}");
        assert!(
            line.ends_with("no such file or directory"),
            "{args:?}: {line}"
        );
    }
    Ok(())
}

#[test]
fn zero_workers_is_exit_2() {
    assert_eq!(
        fails(&["serve", "--workers", "0"]),
        (
            2,
            "error: invalid value '0' for --workers: must be a whole number from 1 to 1024"
                .to_owned()
        )
    );
}

#[test]
fn a_missing_required_option_is_named_on_the_one_line() {
    let (code, line) = fails(&["forward", "-l", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert_eq!(
        line,
        "error: the following required arguments were not provided: --to <ENDPOINT>"
    );
}

/// Issue 9: the `error:` line written to a closed stderr (`2>&1 | true`) panicked, exit 101.
/// The exit code must still say what happened.
#[test]
fn a_closed_stderr_keeps_the_exit_code() -> Result<(), Box<dyn std::error::Error>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let cases: [(&[&str], i32); 3] = [
        (&["connect", "127.0.0.1:1"], 1),
        (&["connect", ":80"], 2),
        (&["serve", "--bogus"], 2),
    ];
    for (args, expected) in cases {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into the array we pass.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are new and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read); // nobody will read stderr: writing to it fails with EPIPE
        let mut cmd = socketkit();
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(write));
        let mut child = cmd.spawn()?;
        let status = crate::support::process::wait_bounded(&mut child, DEADLINE);
        assert_eq!(status.code(), Some(expected), "{args:?}");
    }
    Ok(())
}

/// A child killed and reaped when the test ends, early (a failed `?`) or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server whose log reader went away (`serve -v 2>&1 | head -1`, a supervisor that closed
/// the pipe): the first log line written to the closed pipe panicked the task that wrote it,
/// the shutdown's own among them, and SIGTERM no longer stopped the server. It must go on
/// serving, and stop on SIGTERM with exit 0.
#[test]
fn a_server_whose_log_reader_left_serves_on_and_stops_on_sigterm()
-> Result<(), Box<dyn std::error::Error>> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    // What each client sends, and what it must get back: nothing to the greeting, whose
    // close with unread bytes would reset the connection.
    let cases: [(&[&str], &[u8], &[u8]); 2] = [
        (&["serve", "echo", "-v"], b"hello\n", b"hello\n"),
        (&["serve", "-v"], b"", "你好".as_bytes()),
    ];
    for (args, sent, expected) in cases {
        let mut cmd = socketkit();
        cmd.args(args)
            .args(["-l", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Reaped(cmd.spawn()?);
        let mut stderr = BufReader::new(child.0.stderr.take().ok_or("stderr is piped")?);
        let mut line = String::new();
        stderr.read_line(&mut line)?;
        drop(stderr); // the reader goes: every later write to stderr fails with EPIPE
        let endpoint = line
            .split_whitespace()
            .nth(2)
            .ok_or("a `listening on` line")?;
        let port: u16 = endpoint.rsplit(':').next().unwrap_or_default().parse()?;
        for _ in 0..2 {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(DEADLINE))?;
            if !sent.is_empty() {
                stream.write_all(sent)?;
                stream.shutdown(std::net::Shutdown::Write)?;
            }
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            assert_eq!(got, expected, "{args:?}");
        }
        // SAFETY: kill(2) on the child we spawned and have not reaped.
        unsafe { libc::kill(i32::try_from(child.0.id())?, libc::SIGTERM) };
        let status = crate::support::process::wait_bounded(&mut child.0, DEADLINE);
        assert_eq!(status.code(), Some(0), "{args:?}: {status:?}");
    }
    Ok(())
}

/// Issue 9: usage errors of `connect` are exit 2 with the option and its range: a missing
/// host was exit 1, `--timeout 0` timed out at once, `--timeout -1s` got clap's words
/// about an unknown `-1`.
#[test]
fn connect_usage_errors_are_exit_2_in_words() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["connect", ":80"],
            "error: invalid endpoint ':80': connect needs a host (as in 127.0.0.1:80)",
        ),
        (
            &["connect", "127.0.0.1:0"],
            "error: invalid endpoint '127.0.0.1:0': connect needs a port from 1 to 65535",
        ),
        (
            &["connect", "--timeout", "0", "127.0.0.1:1"],
            "error: invalid duration '0' for --timeout: must be from 1ms to 365d",
        ),
        (
            &["connect", "--timeout", "-1s", "127.0.0.1:1"],
            "error: invalid duration '-1s' for --timeout: must be from 1ms to 365d",
        ),
        (
            &["connect", "--wait", "-1", "127.0.0.1:1"],
            "error: invalid duration '-1' for --wait: must be from 0 to 365d",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(fails(args), (2, expected.to_owned()), "{args:?}");
    }
}

/// Issue 9: server options out of range (`--workers 100000` panicked inside tokio) and
/// `--unix-mode` with no Unix listener (silently ignored) are exit 2.
#[test]
fn server_options_out_of_range_are_exit_2() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["serve", "--workers", "100000", "-l", "127.0.0.1:0"],
            "error: invalid value '100000' for --workers: must be a whole number from 1 to 1024",
        ),
        (
            &["serve", "--backlog", "-1", "-l", "127.0.0.1:0"],
            "error: invalid value '-1' for --backlog: must be a whole number from 0 to 65535",
        ),
        (
            &["serve", "--drain-timeout", "400d", "-l", "127.0.0.1:0"],
            "error: invalid duration '400d' for --drain-timeout: must be from 0 to 365d",
        ),
        (
            &["serve", "--unix-mode", "660", "-l", "127.0.0.1:0"],
            "error: --unix-mode applies to Unix socket files, and no -l is a unix: or unixgram: endpoint",
        ),
        (
            &["forward", "-l", "127.0.0.1:0", "--to", ":80"],
            "error: invalid endpoint ':80': forward --to needs a host (as in 127.0.0.1:80)",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(fails(args), (2, expected.to_owned()), "{args:?}");
    }
}
