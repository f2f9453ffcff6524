//! An argument that is not UTF-8: one `error:` line that names it and says why, exit 2 (clap
//! alone said "invalid UTF-8 was detected in one or more arguments"). Found by an outside
//! audit.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::support::process::{DEADLINE, run, socketkit};

/// Runs socketkit with `args` (bytes, not all UTF-8) and returns its exit code and stderr.
fn fails(args: &[&[u8]]) -> (i32, String) {
    let mut cmd = socketkit();
    cmd.args(args.iter().map(|arg| OsStr::from_bytes(arg)));
    let out = run(cmd, Vec::new(), DEADLINE);
    (out.code(), out.stderr)
}

#[test]
fn a_non_utf8_endpoint_is_named_with_its_bad_bytes_escaped() {
    for command in [&b"serve"[..], b"connect", b"listen"] {
        let mut args: Vec<&[u8]> = vec![command];
        if command == b"serve" {
            args.extend([&b"echo"[..], b"-l"]);
        }
        args.push(b"unix:/tmp/socketkit-bad\xff.sock");
        let (code, stderr) = fails(&args);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr,
            "error: argument 'unix:/tmp/socketkit-bad\\xff.sock' is not valid UTF-8\n"
        );
    }
}

#[test]
fn the_argument_named_is_the_one_refused_not_a_path_that_may_be_any_bytes() {
    // --pid-file takes any path; the endpoint after it must be text.
    let (code, stderr) = fails(&[
        b"serve",
        b"--pid-file",
        b"/nonexistent/pid\xfe",
        b"-l",
        b"unix:/tmp/bad\xff\n.sock",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: argument 'unix:/tmp/bad\\xff\\n.sock' is not valid UTF-8\n"
    );
}
