//! `socketkit connect -z HOST LOW-HIGH`, nc's port scan: the ports that take a connection
//! are printed in port order as they are found (read here from a pipe, line by line), the
//! others said at `-v`; exit 0 when any took it, 1 with one `error:` line when none did.

use std::net::TcpListener;

use crate::support::net::{IO_TIMEOUT, free_port};
use crate::support::process::{DEADLINE, Running, lines_of, run, socketkit};

/// Listeners on eight consecutive ports of 127.0.0.1 (tried from a free port up; another
/// base when one of them is taken): the first port and the listeners.
fn eight_in_a_row() -> (u16, Vec<TcpListener>) {
    for _ in 0..50 {
        let base = free_port();
        let Some(last) = base.checked_add(7) else {
            continue;
        };
        let bound: Result<Vec<TcpListener>, _> = (base..=last)
            .map(|port| TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if let Ok(listeners) = bound {
            return (base, listeners);
        }
    }
    panic!("no eight free ports in a row on 127.0.0.1");
}

#[test]
fn a_range_prints_the_ports_that_take_a_connection_in_port_order() {
    let (base, mut listeners) = eight_in_a_row();
    // Ports base+1, base+4 and base+5 closed; the others open.
    for offset in [5, 4, 1] {
        drop(listeners.remove(offset));
    }
    let range = format!("{base}-{}", base + 7);
    let mut cmd = socketkit();
    cmd.args(["connect", "-z", "-v", "127.0.0.1", &range]);
    let mut scan = Running::start(cmd, 0);
    let lines = lines_of(scan.take_stdout());
    for offset in [0u16, 2, 3, 6, 7] {
        let line = lines.recv_timeout(IO_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "no line for port {}; stderr:\n{}",
                base + offset,
                scan.stderr()
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&line),
            format!("tcp:127.0.0.1:{}\n", base + offset)
        );
    }
    assert_eq!(scan.wait(DEADLINE).code(), Some(0), "{}", scan.stderr());
    assert!(
        lines.recv_timeout(IO_TIMEOUT).is_err(),
        "nothing more on stdout"
    );
    for offset in [1, 4, 5] {
        let said = format!(
            "cannot connect to tcp:127.0.0.1:{}: connection refused",
            base + offset
        );
        assert!(
            scan.stderr().contains(&said),
            "-v says {said:?}:\n{}",
            scan.stderr()
        );
    }
}

#[test]
fn a_range_where_nothing_listens_is_one_error_line_and_exit_1() {
    let (base, listeners) = eight_in_a_row();
    drop(listeners);
    let range = format!("{base}-{}", base + 7);
    let mut cmd = socketkit();
    cmd.args(["connect", "-z", "127.0.0.1", &range]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        format!(
            "error: cannot connect to tcp:127.0.0.1:{range}: no port took a connection (8 \
             connection refused)\n"
        )
    );
}

#[test]
fn ranges_are_for_tcp_probes_only() {
    for (args, said) in [
        (
            &["connect", "127.0.0.1", "20-30"][..],
            "a port range (LOW-HIGH) is for -z",
        ),
        (
            &["connect", "-z", "127.0.0.1", "30-20"],
            "invalid value '30-20' for port: the range 30-20 is reversed",
        ),
        (
            &["connect", "-z", "127.0.0.1", "0-20"],
            "invalid value '0-20' for port",
        ),
        (
            &["connect", "-z", "-u", "127.0.0.1", "20-30"],
            "-z probes stream endpoints only",
        ),
        (
            &[
                "connect",
                "-z",
                "--proxy",
                "socks5://127.0.0.1:1",
                "127.0.0.1",
                "20-30",
            ],
            "not through --proxy",
        ),
    ] {
        let mut cmd = socketkit();
        cmd.args(args);
        let out = run(cmd, Vec::new(), DEADLINE);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(said), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}
