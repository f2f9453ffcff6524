//! Shared pieces of the integration tests, split by what they do.

pub mod certs;
pub mod haproxy;
pub mod net;
pub mod process;
pub mod proxies;
pub mod pty;
pub mod resolver;
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

/// This process's limits on open descriptors (children inherit them): soft, `rlim_cur`,
/// and hard, `rlim_max`.
pub fn descriptor_limits() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

/// Raises this process's descriptor limit (children inherit it) to hold `wanted` sockets.
pub fn allow_descriptors(wanted: u64) {
    let mut limit = descriptor_limits();
    // SAFETY: setrlimit with a valid pointer to a local rlimit.
    unsafe {
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
