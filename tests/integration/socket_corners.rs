//! The low-level layer at its edges: a path with a NUL byte, a receive of no bytes, a linger
//! time the kernel cannot hold, a port out of range. Found by an outside audit.

use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use socketkit::socket::{Family, Socket, ToAddress, Type, create_server, socketpair};

use crate::support::TestResult;

/// What the calls below did with `dir`/`nul` + NUL + `suffix`: refused, naming the call and
/// the path, and no file at the path cut at the NUL.
fn assert_refused(err: &socketkit::Error, op: &str, dir: &Path) {
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let text = err.to_string();
    assert!(text.starts_with(op), "{text}");
    assert!(text.contains(&format!("{}/nul", dir.display())), "{text}");
    assert!(
        text.ends_with(": socket path contains a NUL byte"),
        "{text}"
    );
    assert!(!dir.join("nul").exists(), "a socket file at the cut path");
}

#[test]
fn a_unix_path_with_a_nul_byte_is_refused_by_every_call() -> TestResult {
    let dir = tempfile::tempdir()?;
    let base = dir.path().display().to_string();

    let err = create_server(format!("{base}/nul\0suffix.sock"), 5, false).unwrap_err();
    assert_refused(&err, "cannot bind ", dir.path());

    let socket = Socket::new(Family::Unix, Type::Stream)?;
    let err = socket
        .bind(Path::new(&format!("{base}/nul\0x")))
        .unwrap_err();
    assert_refused(&err, "cannot bind ", dir.path());

    // A live socket at the cut path: the connect must not reach it.
    let _live = create_server(format!("{base}/nul"), 5, false)?;
    let client = Socket::new(Family::Unix, Type::Stream)?;
    let err = client
        .connect(format!("{base}/nul\0anything-else").as_str())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().starts_with("cannot connect to "), "{err}");

    let datagram = Socket::new(Family::Unix, Type::Datagram)?;
    let err = datagram
        .sendto(b"x", format!("{base}/nul\0x").as_str())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    Ok(())
}

#[test]
fn an_abstract_name_still_binds_and_connects() -> TestResult {
    let name = format!("@socketkit-corners-{}", std::process::id());
    let server = create_server(name.as_str(), 5, false)?;
    assert_eq!(server.local_addr()?.to_string(), name);
    let client = Socket::new(Family::Unix, Type::Stream)?;
    client.connect(name.as_str())?;
    Ok(())
}

#[test]
fn receiving_no_bytes_returns_at_once_on_a_live_connection() -> TestResult {
    let (a, b) = socketpair()?;
    let b = std::sync::Arc::new(b);
    let receiver = std::sync::Arc::clone(&b);
    // On a thread, so that a receive that waits (with no timeout set, for ever) fails the
    // test in bounded time instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            for timeout in [None, Some(Duration::from_secs(5))] {
                receiver.set_timeout(timeout)?;
                assert_eq!(receiver.recv(0)?, Vec::<u8>::new());
                assert_eq!(receiver.recv_into(&mut [])?, 0);
                assert_eq!(receiver.peek(&mut [])?, 0);
                assert_eq!((&*receiver).read(&mut [])?, 0);
            }
            Ok(())
        })();
        let _ = done.send(result);
    });
    let started = Instant::now();
    match finished.recv_timeout(Duration::from_secs(1)) {
        Ok(result) => result.map_err(|err| err.to_string())?,
        Err(_) => panic!("still waiting after {:?} for no bytes", started.elapsed()),
    }
    // Nothing was taken off the connection, which is still open.
    a.sendall(b"still here")?;
    assert_eq!(b.recv(64)?, b"still here");
    Ok(())
}

#[test]
fn a_linger_time_past_a_c_int_is_refused_not_wrapped() -> TestResult {
    let socket = Socket::new(Family::Inet, Type::Stream)?;
    for secs in [
        3_000_000_000,
        u64::MAX,
        u64::from(i32::MAX.unsigned_abs()) + 1,
    ] {
        let err = socket
            .set_linger(Some(Duration::from_secs(secs)))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{secs}: {err}");
        assert!(err.to_string().starts_with("cannot set SO_LINGER"), "{err}");
    }
    assert_eq!(socket.linger()?, None, "a refused value is not set");
    let most = Duration::from_secs(i32::MAX.unsigned_abs().into());
    socket.set_linger(Some(most))?;
    assert_eq!(socket.linger()?, Some(most));
    Ok(())
}

#[test]
fn a_port_out_of_range_in_text_says_so() {
    let err = "127.0.0.1:99999".to_addresses(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "cannot resolve '127.0.0.1:99999': port must be 0-65535"
    );
}
