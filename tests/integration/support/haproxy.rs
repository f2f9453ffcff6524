//! A real HAProxy for the tests of a server behind a load balancer: started on a config the
//! test writes (`haproxy -f CFG -db`: foreground, no daemon), killed and reaped on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::net::wait_until_listening;
use super::process::drain;

/// A running HAProxy.
pub struct HaProxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    /// Starts HAProxy on `config` and waits until it listens on every port of `ports`; `None`
    /// (the test is skipped) when HAProxy is not installed outside CI.
    pub fn start(config: &str, ports: &[u16]) -> Option<HaProxy> {
        if !super::tools::available("haproxy") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).expect("write the config");
        let mut child = Command::new("haproxy")
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let stderr = drain(child.stderr.take().expect("stderr is piped"));
        std::thread::sleep(Duration::from_millis(50));
        if let Some(status) = child.try_wait().expect("try_wait") {
            let text = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!("haproxy exited at once ({status}):\n{text}\nconfig:\n{config}");
        }
        for &port in ports {
            wait_until_listening(port);
        }
        Some(HaProxy { child, _dir: dir })
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
