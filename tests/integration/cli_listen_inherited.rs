//! `socketkit listen fd:N` / `fd:NAME` (SPEC §3 and §3.4: inherited sockets apply to
//! `listen -k` as to `serve`): a socket passed the way systemd's socket activation passes
//! it — descriptor 3, `LISTEN_FDS`, `LISTEN_PID` set to the program's own pid — is listened
//! on, the `listening on` line names its real address, and an `fd:` that names no passed
//! socket, or one of the wrong kind, is exit 2 with one `error:` line, as for `serve`.
//! Found by an outside audit of SPEC §3.

use std::io::Write;
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::support::TestResult;
use crate::support::net::{IO_TIMEOUT, connect, read_to_end};
use crate::support::process::{DEADLINE, Running, command, lines_of, run};

/// `socketkit ARGS` with `socket` as its descriptor 3 and, when `activated`, `LISTEN_FDS=1`
/// and `LISTEN_PID` its own pid: a shell sets the pid (`$$`, which its `exec` keeps) and
/// becomes socketkit. `LISTEN_FDNAMES`, if wanted, the caller sets.
fn passing(socket: &impl AsFd, activated: bool, args: &[&str]) -> Command {
    let mut cmd = command(Path::new("/bin/sh"));
    let script = if activated {
        r#"LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$0" "$@""#
    } else {
        r#"exec "$0" "$@""#
    };
    cmd.args(["-c", script, env!("CARGO_BIN_EXE_socketkit")])
        .args(args);
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: the hook runs in the child between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 gives a copy without close-on-exec; a descriptor already at 3 keeps its
            // own flag, which is cleared instead.
            let done = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// `listen fd:3 -k` on a passed TCP listener: its real address in the readiness line, and
/// one client after another bridged to stdout.
#[test]
fn listen_keep_open_serves_a_passed_tcp_listener() -> TestResult {
    let socket = TcpListener::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?.to_string();
    let mut listener = Running::start(passing(&socket, true, &["listen", "fd:3", "-k"]), 1);
    drop(socket); // socketkit's copy is the one that accepts
    assert_eq!(listener.endpoints(), [format!("tcp:{addr}")]);
    let lines = lines_of(listener.take_stdout());
    for text in ["one\n", "two\n"] {
        let mut client = connect(&addr);
        client.write_all(text.as_bytes())?;
        client.shutdown(Shutdown::Write)?;
        assert_eq!(lines.recv_timeout(IO_TIMEOUT)?, text.as_bytes());
        drop(client);
    }
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    Ok(())
}

/// `listen fd:NAME` (systemd's `LISTEN_FDNAMES`) without `-k`: one peer, bridged both ways,
/// then exit 0.
#[test]
fn listen_takes_a_passed_socket_by_name() -> TestResult {
    let socket = TcpListener::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?.to_string();
    let mut cmd = passing(&socket, true, &["listen", "fd:web"]);
    cmd.env("LISTEN_FDNAMES", "web");
    let mut listener = Running::start_with_stdin(cmd, 1, b"to the client".to_vec());
    drop(socket);
    assert_eq!(listener.endpoints(), [format!("tcp:{addr}")]);
    let mut client = connect(&addr);
    client.write_all(b"to stdout")?;
    client.shutdown(Shutdown::Write)?;
    assert_eq!(read_to_end(&mut client), b"to the client");
    assert_eq!(
        listener.wait(DEADLINE).code(),
        Some(0),
        "{}",
        listener.stderr()
    );
    assert_eq!(listener.stdout_text(), "to stdout");
    Ok(())
}

/// A passed UDP socket is listened on as `listen udp:` is: the first sender's datagram is
/// printed.
#[test]
fn listen_takes_a_passed_udp_socket() -> TestResult {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    let mut listener = Running::start(passing(&socket, true, &["listen", "fd:3"]), 1);
    drop(socket);
    assert_eq!(listener.endpoints(), [format!("udp:{addr}")]);
    let lines = lines_of(listener.take_stdout());
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    sender.send_to(b"datagram\n", addr)?;
    assert_eq!(lines.recv_timeout(IO_TIMEOUT)?, b"datagram\n");
    listener.signal(libc::SIGTERM);
    let _ = listener.wait(DEADLINE);
    Ok(())
}

/// The errors of `serve -l fd:…` for what is not passed or not a listening socket, and
/// `-k`'s own for a datagram socket: exit 2, one `error:` line naming it.
#[test]
fn an_fd_not_passed_or_of_the_wrong_kind_is_exit_2_naming_it() -> TestResult {
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let file = tempfile::tempfile()?;
    let cases: [(Command, &str); 5] = [
        (
            passing(&tcp, false, &["listen", "fd:3", "-k"]),
            "error: cannot listen on fd:3: no socket was passed to this process (LISTEN_FDS and LISTEN_PID name none for it)",
        ),
        (
            passing(&tcp, true, &["listen", "fd:4", "-k"]),
            "error: cannot listen on fd:4: the service manager passed one socket, fd:3",
        ),
        (
            {
                let mut cmd = passing(&tcp, true, &["listen", "fd:admin"]);
                cmd.env("LISTEN_FDNAMES", "web");
                cmd
            },
            "error: cannot listen on fd:admin: no socket has that name (LISTEN_FDNAMES has web)",
        ),
        (
            passing(&file, true, &["listen", "fd:3"]),
            "error: cannot listen on fd:3: not a socket",
        ),
        (
            passing(&udp, true, &["listen", "fd:3", "-k"]),
            "error: -k applies to stream endpoints only",
        ),
    ];
    for (cmd, expected) in cases {
        let out = run(cmd, Vec::new(), IO_TIMEOUT);
        assert_eq!(out.code(), 2, "{expected}: {}", out.stderr);
        assert_eq!(out.stderr.trim_end(), expected);
    }
    Ok(())
}
