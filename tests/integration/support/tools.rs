//! External tools (nc, socat, python3): one probe each, with the CI policy of the brief —
//! missing under `CI=true` fails the test; otherwise the test is skipped with a reason.

use std::process::{Command, Stdio};

/// Whether `tool` can be run. Under `CI=true` a missing tool fails the calling test.
pub fn available(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tool} is required under CI=true but is not installed (see .ci/run)");
    }
    eprintln!("skipped: {tool} is not installed");
    false
}
