//! The low-level layer at its edges: a path with a NUL byte, a receive of no bytes, a linger
//! time the kernel cannot hold, a port out of range. Found by an outside audit.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use socketkit::socket::{Family, Socket, Type, socketpair};

use crate::support::TestResult;

#[test]
fn receiving_no_bytes_returns_at_once_on_a_live_connection() -> TestResult {
    let (a, b) = socketpair()?;
    for timeout in [None, Some(Duration::from_secs(5))] {
        b.set_timeout(timeout)?;
        let started = Instant::now();
        assert_eq!(b.recv(0)?, Vec::<u8>::new());
        assert_eq!(b.recv_into(&mut [])?, 0);
        assert_eq!(b.peek(&mut [])?, 0);
        assert_eq!((&b).read(&mut [])?, 0);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited {:?} for no bytes",
            started.elapsed()
        );
    }
    // Nothing was taken off the connection, which is still open.
    a.sendall(b"still here")?;
    assert_eq!(b.recv(64)?, b"still here");
    Ok(())
}

#[test]
fn a_linger_time_past_a_c_int_is_refused_not_wrapped() -> TestResult {
    let socket = Socket::new(Family::Inet, Type::Stream)?;
    for secs in [3_000_000_000, u64::MAX, u64::from(i32::MAX.unsigned_abs()) + 1] {
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
