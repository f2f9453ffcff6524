//! Shared pieces of the integration tests, split by what they do.

pub mod certs;
pub mod haproxy;
pub mod net;
pub mod process;
pub mod proxies;
pub mod pty;
pub mod restart;
pub mod seccomp;
pub mod tls_peers;
pub mod tools;

/// The result type tests return, so that `?` works on any error.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Waits until `done` holds, looking every 20 ms; past `limit`, fails with `what`.
pub fn wait_until(limit: std::time::Duration, what: impl Fn() -> String, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{}", what());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Raises this process's descriptor limit (children inherit it) to hold `wanted` sockets.
pub fn allow_descriptors(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert!(
            limit.rlim_cur >= wanted,
            "the hard descriptor limit {} is below {wanted}",
            limit.rlim_max
        );
    }
}
