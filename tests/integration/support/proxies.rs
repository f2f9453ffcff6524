//! Real proxies for `connect --proxy`: microsocks (SOCKS5) and ncat's HTTP proxy, each on a
//! port found free a moment before (neither can be given port 0 and say which it took),
//! waited for until it listens, killed and reaped on drop.

use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use super::net::{free_port, is_listening};

/// A proxy running as a child process.
pub struct ProxyProcess {
    child: Child,
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
}

impl ProxyProcess {
    /// `microsocks` on 127.0.0.1, with `user` and `password` required when given; `None`
    /// (the test is skipped) when it is not installed outside CI.
    pub fn microsocks(credentials: Option<(&str, &str)>) -> Option<ProxyProcess> {
        ProxyProcess::start("microsocks", |port| {
            let mut cmd = Command::new("microsocks");
            cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
            if let Some((user, password)) = credentials {
                cmd.args(["-u", user, "-P", password]);
            }
            cmd
        })
    }

    /// ncat's HTTP proxy (`ncat -l --proxy-type http`) on 127.0.0.1, requiring `user:password`
    /// when given; `None` (skipped) when ncat is not installed outside CI.
    pub fn ncat_http(credentials: Option<&str>) -> Option<ProxyProcess> {
        ProxyProcess::start("ncat", |port| {
            let mut cmd = Command::new("ncat");
            cmd.args(["-l", "--keep-open", "--proxy-type", "http"]);
            if let Some(credentials) = credentials {
                cmd.args(["--proxy-auth", credentials]);
            }
            cmd.args(["127.0.0.1", &port.to_string()]);
            cmd
        })
    }

    /// Starts `tool` as `command` makes it for a free port, and waits until it listens; a
    /// tool that exits first (another test took the port in between) is started again on
    /// another, three tries in all.
    fn start(tool: &str, command: impl Fn(u16) -> Command) -> Option<ProxyProcess> {
        if !super::tools::available(tool) {
            return None;
        }
        for _ in 0..3 {
            let port = free_port();
            let child = command(port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("{tool} starts: {err}"));
            // Held from here, so that a proxy that never listens is still killed.
            let mut proxy = ProxyProcess { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if is_listening(port) {
                    return Some(proxy);
                }
                if proxy.child.try_wait().is_ok_and(|status| status.is_some()) {
                    break;
                }
                assert!(Instant::now() < deadline, "{tool} never listens on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("{tool} exited before it listened, three times");
    }

    /// The proxy's URL with `scheme`, as `--proxy` takes it.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
