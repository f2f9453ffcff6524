//! Real proxies for `connect --proxy`: microsocks (SOCKS5) and ncat's HTTP proxy, each on a
//! port found free a moment before (neither can be given port 0 and say which it took),
//! waited for until it listens, killed and reaped on drop.

use std::process::{Child, Command, Stdio};

use super::net::{free_port, wait_until_listening};

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
        let port = free_port();
        let mut cmd = Command::new("microsocks");
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = credentials {
            cmd.args(["-u", user, "-P", password]);
        }
        ProxyProcess::start("microsocks", cmd, port)
    }

    /// ncat's HTTP proxy (`ncat -l --proxy-type http`) on 127.0.0.1, requiring `user:password`
    /// when given; `None` (skipped) when ncat is not installed outside CI.
    pub fn ncat_http(credentials: Option<&str>) -> Option<ProxyProcess> {
        let port = free_port();
        let mut cmd = Command::new("ncat");
        cmd.args(["-l", "--keep-open", "--proxy-type", "http"]);
        if let Some(credentials) = credentials {
            cmd.args(["--proxy-auth", credentials]);
        }
        cmd.args(["127.0.0.1", &port.to_string()]);
        ProxyProcess::start("ncat", cmd, port)
    }

    fn start(tool: &str, mut cmd: Command, port: u16) -> Option<ProxyProcess> {
        if !super::tools::available(tool) {
            return None;
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("{tool} starts: {err}"));
        // Held from here, so that a proxy that never listens is still killed.
        let proxy = ProxyProcess { child, port };
        wait_until_listening(port);
        Some(proxy)
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
