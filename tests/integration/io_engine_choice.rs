//! `serve -v` names the engine that serves each stream listener and, when it is not io_uring,
//! why not: an operator whose server runs where io_uring is refused (a container's seccomp
//! profile, `kernel.io_uring_disabled`), or with an option only tokio's engine serves, can
//! see it without reading the code. (Where io_uring is refused: `kernel_fallbacks.rs`.)

use std::time::Duration;

use crate::io_engine::io_uring_available;
use crate::support::process::{Running, socketkit};
use crate::support::wait_until;

/// Starts `serve -v` with `args` and `count` listeners, and waits until its log names the
/// engine of each stream listener among them (`stream` of them): the server and, for each
/// endpoint, what its engine line says after the endpoint.
fn engines(args: &[&str], count: usize, stream: usize) -> (Running, Vec<(String, String)>) {
    let mut cmd = socketkit();
    cmd.args(["serve", "-v"]).args(args);
    let server = Running::start(cmd, count);
    let lines = || -> Vec<(String, String)> {
        let log = server.stderr();
        server
            .endpoints()
            .iter()
            .filter_map(|endpoint| {
                let named = format!("{endpoint}: ");
                let line = log.lines().find(|line| line.contains(&named))?;
                let (_, said) = line.split_once(&named)?;
                Some((endpoint.clone(), said.to_owned()))
            })
            .collect()
    };
    wait_until(
        Duration::from_secs(10),
        || format!("not {stream} engine lines in:\n{}", server.stderr()),
        || lines().len() >= stream,
    );
    let found = lines();
    (server, found)
}

#[test]
fn verbose_serve_names_each_stream_listeners_engine_and_why_not_io_uring() {
    let ring = io_uring_available();
    let unavailable = |said: &str| said.starts_with("epoll engine (io_uring ");

    // auto: the ring where the kernel has it; a datagram listener has no engine line.
    let auto = [
        "--io-engine",
        "auto",
        "-l",
        "127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
    ];
    let (server, found) = engines(&auto, 2, 1);
    assert_eq!(found.len(), 1, "{}", server.stderr());
    assert!(found[0].0.starts_with("tcp:"), "{found:?}");
    if ring {
        assert_eq!(found[0].1, "io_uring engine", "{found:?}");
    } else {
        assert!(unavailable(&found[0].1), "{found:?}");
    }

    // What only tokio's engine serves is named, whatever the kernel has.
    let cases: [(&[&str], &str); 3] = [
        (
            &["--io-engine", "epoll", "-l", "127.0.0.1:0"],
            "epoll engine (the epoll engine was asked for)",
        ),
        (
            &["--max-connections", "5", "-l", "127.0.0.1:0"],
            "epoll engine (a limit on connections at once)",
        ),
        (
            &["-l", "tls:127.0.0.1:0", "--tls-self-signed"],
            "epoll engine (a tls: listener)",
        ),
    ];
    for (args, expected) in cases {
        let (server, found) = engines(args, 1, 1);
        assert_eq!(found[0].1, expected, "{args:?}: {}", server.stderr());
    }

    // A handler the ring does not run: asked for, on a kernel that has it.
    if ring {
        let args = [
            "echo",
            "--io-engine",
            "auto",
            "--idle-timeout",
            "5s",
            "-l",
            "127.0.0.1:0",
        ];
        let (server, found) = engines(&args, 1, 1);
        assert!(
            found[0]
                .1
                .starts_with("epoll engine (a handler the ring does not run"),
            "{}",
            server.stderr()
        );
    }
}
