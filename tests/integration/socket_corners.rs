//! The low-level layer at its edges: a path with a NUL byte, a receive of no bytes, a linger
//! time the kernel cannot hold, a port out of range. Found by an outside audit.

use std::io::Read;
use std::time::{Duration, Instant};

use socketkit::socket::socketpair;

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
