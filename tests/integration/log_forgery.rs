//! A Unix client names its own socket, and a path may hold a newline: in text logs and in
//! the `listening on` lines every control character is escaped, so that no address can
//! start a line of its own that reads as another event (a forged `WARN`, a second
//! readiness line). JSON logs escape by themselves and keep the path as it is. Found by an
//! outside audit.

use std::io::Read;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use socketkit::socket::{Family, Socket, Type};

use crate::support::TestResult;
use crate::support::net::free_port;
use crate::support::process::{DEADLINE, Running, run, socketkit};

/// The name of the client's socket: a newline, then what would read as a log line.
const FORGED: &str = "c\n WARN forged line peer=1.2.3.4:5.sock";

/// What a text log line may begin with: the readiness line or a level.
const LINE_STARTS: [&str; 6] = [
    "listening on ",
    "TRACE ",
    "DEBUG ",
    " INFO ",
    " WARN ",
    "ERROR ",
];

/// Connects to the Unix stream socket at `server` from a socket bound to `dir`/[`FORGED`],
/// sends `hi`, half-closes and reads until the server closes; returns the client's path.
fn forged_client(dir: &Path, server: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    client_named(dir, FORGED, server)
}

/// As [`forged_client`], from a socket bound to `dir`/`name`.
fn client_named(
    dir: &Path,
    name: &str,
    server: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = dir.join(name);
    let client = Socket::new(Family::Unix, Type::Stream)?;
    client.bind(path.as_path())?;
    client.set_timeout(Some(Duration::from_secs(5)))?;
    client.connect(server)?;
    // A relay with its target down resets the client, maybe before it sends: how it ends
    // does not matter here, only the server's log line.
    let _ = client.sendall(b"hi");
    let _ = client.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = (&client).read_to_end(&mut answer);
    Ok(path)
}

/// Fails unless every line of `log` is one event and the client's path shows escaped.
fn assert_one_line_per_event(log: &str, client: &Path) {
    for line in log.lines() {
        assert!(
            LINE_STARTS.iter().any(|start| line.starts_with(start)),
            "a line that is no event: {line:?} in\n{log}"
        );
    }
    // Quoted, for it holds spaces: escaped as Rust's Debug escapes a string.
    let quoted = format!("{:?}", client.display().to_string());
    assert!(log.contains(&format!("peer={quoted}")), "{log}");
}

/// The `key=value` fields of a text log line as a logfmt reader splits them: a value in
/// quotes runs to the closing quote, past spaces and escaped quotes.
fn logfmt_keys(line: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let word: String = chars
            .by_ref()
            .take_while(|c| *c != '=' && *c != ' ')
            .collect();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
            chars.next(); // the space after the closing quote
            keys.push(word);
        } else {
            let value: String = chars.by_ref().take_while(|c| *c != ' ').collect();
            if !value.is_empty() {
                keys.push(word);
            }
        }
    }
    keys
}

/// A Unix client's name with spaces, quotes and `key=` in it adds no field to its `closed`
/// line: the value is quoted, its quotes escaped (a logfmt reader saw a forged `error` and
/// a second `bytes_in` before).
#[test]
fn a_peers_path_cannot_add_fields_to_its_closed_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = dir.path().join("s.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", &unix_arg(&server)]);
    let running = Running::start(cmd, 1);
    client_named(
        dir.path(),
        "x error=\"connection reset by peer\" bytes_in=999999",
        &server,
    )?;
    running.wait_for_stderr(&["closed peer="], Duration::from_secs(5));
    let log = running.stderr();
    let closed = log
        .lines()
        .find(|line| line.starts_with("DEBUG closed "))
        .ok_or("no closed line")?;
    let keys = logfmt_keys(closed.trim_start_matches("DEBUG closed "));
    assert_eq!(
        keys,
        [
            "peer",
            "local",
            "listener",
            "bytes_in",
            "bytes_out",
            "duration_ms"
        ],
        "{closed}"
    );
    Ok(())
}

fn unix_arg(path: &Path) -> String {
    format!("unix:{}", path.display())
}

#[test]
fn serve_v_text_log_escapes_a_newline_in_the_peers_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = dir.path().join("s.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "-l", &unix_arg(&server)]);
    let running = Running::start(cmd, 1);
    let client = forged_client(dir.path(), &server)?;
    running.wait_for_stderr(&["closed peer="], Duration::from_secs(5));
    assert_one_line_per_event(&running.stderr(), &client);
    Ok(())
}

#[test]
fn forward_warning_at_the_default_level_escapes_a_newline_in_the_peers_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = dir.path().join("f.sock");
    let down = format!("127.0.0.1:{}", free_port());
    let mut cmd = socketkit();
    cmd.args(["forward", "-l", &unix_arg(&server), "--to", &down]);
    let running = Running::start(cmd, 1);
    let client = forged_client(dir.path(), &server)?;
    running.wait_for_stderr(&["resetting the client"], Duration::from_secs(5));
    assert_one_line_per_event(&running.stderr(), &client);
    Ok(())
}

#[test]
fn json_log_keeps_the_peers_path_as_it_is() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = dir.path().join("j.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-v", "--log-format", "json"])
        .args(["-l", &unix_arg(&server)]);
    let running = Running::start(cmd, 1);
    let client = forged_client(dir.path(), &server)?;
    running.wait_for_stderr(&["\"msg\":\"closed\""], Duration::from_secs(5));
    let log = running.stderr();
    let closed: Vec<Value> = log
        .lines()
        .filter(|line| !line.starts_with("listening on"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .filter(|object: &Value| object["msg"] == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{log}");
    assert_eq!(closed[0]["peer"], client.display().to_string(), "{log}");
    Ok(())
}

#[test]
fn a_newline_in_the_listen_path_makes_no_second_readiness_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir
        .path()
        .join("nl\nlistening on tcp:1.2.3.4:80 (fake).sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", &unix_arg(&path)]);
    let running = Running::start(cmd, 1);
    // The socket is at the path as given, newline and all.
    std::os::unix::net::UnixStream::connect(&path)?;
    let log = running.stderr();
    let escaped = path.display().to_string().replace('\n', "\\n");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [format!("listening on unix:{escaped} (echo)")],
        "{log}"
    );
    drop(running);
    // A backslash and an `n` in a path read otherwise than a newline there.
    let literal = dir.path().join("nl\\nx.sock");
    let mut cmd = socketkit();
    cmd.args(["serve", "echo", "-l", &unix_arg(&literal)]);
    let running = Running::start(cmd, 1);
    let shown = literal.display().to_string().replace('\\', "\\\\");
    assert_eq!(
        running.stderr().lines().collect::<Vec<_>>(),
        [format!("listening on unix:{shown} (echo)")]
    );
    drop(running);
    // The error line was escaped already; it stays so.
    let mut cmd = socketkit();
    cmd.args(["connect", &unix_arg(&dir.path().join("gone\n.sock"))]);
    let out = run(cmd, Vec::new(), DEADLINE);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("gone\\n.sock"), "{}", out.stderr);
    Ok(())
}

/// The first value of each `key=value` a plain scanning reader finds in `line` (a word of
/// letters, digits or `_`, `=`, then a quoted value or one up to the next space), as a
/// regular expression `(\w+)=("(?:[^"\\]|\\.)*"|\S+)` scans it: anywhere in the line,
/// the message too.
fn scanned_fields(line: &str) -> std::collections::HashMap<String, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut fields = std::collections::HashMap::new();
    let mut i = 0;
    while i < chars.len() {
        let key_end = (i..chars.len())
            .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
            .unwrap_or(chars.len());
        if key_end == i || chars.get(key_end) != Some(&'=') {
            i += 1;
            continue;
        }
        let mut end = key_end + 1;
        if chars.get(end) == Some(&'"') {
            end += 1;
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            end = (end + 1).min(chars.len());
        } else {
            while end < chars.len() && chars[end] != ' ' {
                end += 1;
            }
        }
        let key: String = chars[i..key_end].iter().collect();
        let value: String = chars[key_end + 1..end].iter().collect();
        fields.entry(key).or_insert(value);
        i = end;
    }
    fields
}

/// A Unix client's name in `listen -v`'s `connection from NAME` message, and a SOCKS user's
/// in `socks: refused user NAME`: quoted, with no `=` of the client's making, so that no
/// logfmt reader takes a field from it (a reader that scans a line for `key=value` read a
/// forged `peer=6.6.6.6` and `error` from both). Found by an outside audit of logs.
#[test]
fn a_peers_text_in_a_message_adds_no_field() -> TestResult {
    let forged = "x peer=6.6.6.6 error=\"forged\" bytes_in=9";
    let dir = tempfile::tempdir()?;
    let server = dir.path().join("l.sock");
    let mut cmd = socketkit();
    cmd.args(["listen", "-k", "-v", &unix_arg(&server)]);
    let listen = Running::start(cmd, 1);
    client_named(dir.path(), forged, &server)?;
    listen.wait_for_stderr(&["connection from "], Duration::from_secs(5));
    let log = listen.stderr();
    let line = log
        .lines()
        .find(|line| line.contains("connection from "))
        .ok_or("no connection line")?;
    let fields = scanned_fields(line);
    let path = format!("{:?}", dir.path().join(forged).display().to_string());
    assert_eq!(fields.get("peer"), Some(&path), "{line}");
    assert!(!fields.contains_key("error"), "{line}");

    let users = dir.path().join("users");
    std::fs::write(&users, "alice:pw\n")?;
    let mut cmd = socketkit();
    cmd.args([
        "forward",
        "-v",
        "-l",
        "127.0.0.1:0",
        "--socks",
        "--socks-users",
    ])
    .arg(&users);
    let socks = Running::start(cmd, 1);
    let mut client = std::net::TcpStream::connect(socks.addr())?;
    client.set_read_timeout(Some(DEADLINE))?;
    std::io::Write::write_all(&mut client, &[5, 1, 2])?;
    let mut method = [0; 2];
    client.read_exact(&mut method)?;
    let mut request = vec![1, u8::try_from(forged.len())?];
    request.extend_from_slice(forged.as_bytes());
    request.extend_from_slice(&[2, b'p', b'w']);
    std::io::Write::write_all(&mut client, &request)?;
    let mut answer = [0; 2];
    client.read_exact(&mut answer)?;
    assert_eq!(answer, [1, 1], "refused");
    socks.wait_for_stderr(&["refused user"], Duration::from_secs(5));
    let log = socks.stderr();
    let line = log
        .lines()
        .find(|line| line.contains("refused user"))
        .ok_or("no refusal line")?;
    let fields = scanned_fields(line);
    assert!(
        fields
            .get("peer")
            .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert!(!fields.contains_key("bytes_in"), "{line}");
    Ok(())
}
