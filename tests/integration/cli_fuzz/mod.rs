//! Issue 9: the real binary, run with generated argument vectors for every subcommand (numbers
//! at 0, 1, max, max+1, negative, huge; empty, odd and non-UTF-8 strings; every flag). Whatever
//! the vector: the exit code is 0, 1 or 2, stderr has at most one `error:` line, and nothing
//! panics. Bounded: every run has a hard deadline, targets are 127.0.0.1 ports nothing listens
//! on, missing Unix paths or a greeting server this test started, options that bound a run
//! (`bench -d`, `--warmup`, `--wait`) only take short or invalid values, and servers are
//! stopped once they are ready. The vectors come from a seed printed on failure
//! (`SOCKETKIT_FUZZ_SEED=N` replays it; `SOCKETKIT_FUZZ_CASES=N` runs more of them).

mod vectors;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::net::free_port;
use crate::support::process::{Running, socketkit};
use vectors::{
    ACCESS, BENCH, CONNECT, FORWARD, Kind, LISTEN, LOG, NETCAT, Rng, SERVE, SERVER, TLS_CLIENT,
    TLS_SERVER, TLS_TARGET, World,
};

/// How long a `connect` may run before it is stopped with SIGTERM.
const CONNECT_GRACE: Duration = Duration::from_secs(3);

/// How long one generated run may take, servers included, before the test fails.
const CASE_DEADLINE: Duration = Duration::from_secs(10);

/// Runs at once (the machine has two cores; most runs wait on a process starting).
const PARALLEL: usize = 3;

/// How a run ended.
struct Ended {
    status: std::process::ExitStatus,
    stderr: String,
    /// Whether we stopped it with SIGTERM once it was ready (a server, or `listen -k`).
    stopped: bool,
}

/// Runs one vector in `case` (its own scratch directory), stopping servers once ready.
fn run_case(argv: &[OsString], case: &Path) -> Result<Ended, String> {
    let mut cmd = socketkit();
    cmd.args(argv)
        .current_dir(case)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A group of its own: a program `-e`/`-c` started (sh forking cat) outlives a stopped
    // socketkit, and holds the pipes below open until the whole group is gone.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|err| err.to_string())?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let stderr = child.stderr.take().ok_or("stderr")?;
    let drained = thread::spawn(move || {
        let _ = std::io::copy(&mut { stdout }, &mut std::io::sink());
    });
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut all = String::new();
        let mut lines = BufReader::new(stderr);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(rest) = text.strip_prefix("listening on ") {
                let endpoint = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(endpoint);
            }
            all.push_str(&text);
            line.clear();
        }
        all
    });
    let outcome = supervise(&mut child, argv, &rx);
    // SAFETY: kill(2) on the process group this case started (its leader is our child);
    // ESRCH when nothing of it is left, which is fine.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = drained.join();
    let stderr = reader.join().unwrap_or_default();
    let (status, stopped) = outcome.map_err(|why| format!("{why}; stderr:\n{stderr}"))?;
    Ok(Ended {
        status,
        stderr,
        stopped,
    })
}

/// Waits for `child` within [`CASE_DEADLINE`]; once it says it is listening, a `listen`
/// gets a peer, and a server is stopped with SIGTERM — a `listen` too if it is still there a
/// second later (`-k` keeps it open; access rules may have refused our peer).
fn supervise(
    child: &mut Child,
    argv: &[OsString],
    ready: &mpsc::Receiver<String>,
) -> Result<(std::process::ExitStatus, bool), String> {
    let started = Instant::now();
    let listen = argv[0] == "listen";
    let mut stop_at = None;
    let mut stopped = false;
    loop {
        if let Some(status) = child.try_wait().map_err(|err| err.to_string())? {
            return Ok((status, stopped));
        }
        if started.elapsed() > CASE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("ran past {CASE_DEADLINE:?}"));
        }
        if let Ok(endpoint) = ready.recv_timeout(Duration::from_millis(10)) {
            if listen {
                poke(&endpoint);
            }
            let grace = if listen { 1000 } else { 50 };
            stop_at = Some(Instant::now() + Duration::from_millis(grace));
        }
        // A connect that only receives (--recv-only, -u -e cat) waits for a peer that
        // never speaks, as nc does: stopped like a server.
        if argv[0] == "connect" && stop_at.is_none() && started.elapsed() > CONNECT_GRACE {
            stop_at = Some(Instant::now());
        }
        if !stopped && stop_at.is_some_and(|at| Instant::now() >= at) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            stopped = true;
        }
    }
}

/// Be the peer a `listen` waits for: connect and close, or send one datagram.
fn poke(endpoint: &str) {
    let (scheme, rest) = endpoint.split_once(':').unwrap_or(("tcp", endpoint));
    let _ = match scheme {
        "tcp" => std::net::TcpStream::connect(rest).map(drop),
        "unix" => std::os::unix::net::UnixStream::connect(rest).map(drop),
        "udp" => std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.send_to(b"x", rest))
            .map(drop),
        _ => std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.send_to(b"x", rest))
            .map(drop),
    };
}

/// The command and how it ended, for the tally: `bench 1`, `serve stopped`.
fn outcome(argv: &[OsString], ended: &Ended) -> String {
    let how = match (ended.stopped, ended.status.code()) {
        (true, _) => "stopped".to_owned(),
        (false, Some(code)) => code.to_string(),
        (false, None) => "signal".to_owned(),
    };
    format!("{} {how}", argv[0].to_string_lossy())
}

/// What a run must never do, whatever its arguments.
fn check(argv: &[OsString], ended: &Ended) -> Result<(), String> {
    let code = ended.status.code();
    let by_us = ended.stopped
        && ended.status.signal() == Some(libc::SIGTERM)
        && (argv[0] == "listen" || argv[0] == "connect");
    // With -e/-c the process becomes the program, as nc's does: its status is the
    // program's, and `cat` writing back to a peer that has closed dies of SIGPIPE.
    let program = (argv[0] == "listen" || argv[0] == "connect")
        && argv
            .iter()
            .any(|arg| ["-e", "-c", "--exec", "--sh-exec"].contains(&arg.to_str().unwrap_or("")));
    // Through `-c` the program is `sh -c CMD`, and a shell that ran CMD as its child (no
    // exec of the last command) reports that death as 128 + SIGPIPE.
    let sh_exec = argv
        .iter()
        .any(|arg| ["-c", "--sh-exec"].contains(&arg.to_str().unwrap_or("")));
    let by_program = program
        && (ended.status.signal() == Some(libc::SIGPIPE)
            || (sh_exec && code == Some(128 + libc::SIGPIPE)));
    if !(matches!(code, Some(0..=2)) || by_us || by_program) {
        return Err(format!("exit status {:?}", ended.status));
    }
    let errors = ended
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    if errors > 1 {
        return Err(format!("{errors} error lines"));
    }
    if ended.stderr.contains("panicked") || ended.stderr.contains("RUST_BACKTRACE") {
        return Err("a panic".into());
    }
    Ok(())
}

#[test]
fn generated_argument_vectors_never_crash() {
    let seed: u64 = std::env::var("SOCKETKIT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1;
    let cases: usize = std::env::var("SOCKETKIT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("quotes.txt"), "one\n%\ntwo\n").expect("quotes");
    std::fs::write(dir.path().join("rules.txt"), "127.0.0.0/8 # here\n::1\n").expect("rules");
    std::fs::write(
        dir.path().join("bad-rules.txt"),
        "10.0.0.0/8\nnot a network\n",
    )
    .expect("rules");
    let mut serve = socketkit();
    let greeting = dir.path().join("g.sock");
    serve.args(["serve", "-l", "127.0.0.1:0", "-l", "udp:127.0.0.1:0", "-l"]);
    serve.arg(format!("unix:{}", greeting.display()));
    let world = World {
        server: Running::start(serve, 3),
        closed_port: free_port(),
        dir,
    };
    let mut rng = Rng(seed);
    let vectors: Vec<Vec<OsString>> = (0..cases)
        .map(|n| world.vector(&mut rng, &world.dir.path().join(format!("case-{n}"))))
        .collect();
    let started = Instant::now();
    let outcomes: Vec<Result<String, String>> = thread::scope(|scope| {
        let chunks: Vec<_> = (0..PARALLEL)
            .map(|lane| {
                let (world, vectors) = (&world, &vectors);
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    for n in (lane..vectors.len()).step_by(PARALLEL) {
                        let case = world.dir.path().join(format!("case-{n}"));
                        std::fs::create_dir_all(&case).expect("case dir");
                        let argv = &vectors[n];
                        let verdict = run_case(argv, &case).and_then(|ended| {
                            check(argv, &ended)
                                .map_err(|why| format!("{why}; stderr:\n{}", ended.stderr))?;
                            Ok(outcome(argv, &ended))
                        });
                        outcomes.push(verdict.map_err(|why| format!("socketkit {argv:?}: {why}")));
                    }
                    outcomes
                })
            })
            .collect();
        chunks
            .into_iter()
            .flat_map(|c| c.join().unwrap_or_default())
            .collect()
    });
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let mut tally = std::collections::BTreeMap::new();
    for outcome in outcomes.iter().flatten() {
        *tally.entry(outcome.as_str()).or_insert(0) += 1;
    }
    eprintln!("outcomes: {tally:?}");
    assert!(
        failures.is_empty(),
        "seed {seed} (SOCKETKIT_FUZZ_SEED={seed} replays it), {} of {cases} failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{cases} vectors (seed {seed}) in {:?}", started.elapsed());
}

/// A subcommand's options: name and kind.
type Table = [(&'static str, Kind)];

/// The option tables of [`vectors`] cover every option `--help` lists, so that a new option is
/// fuzzed too.
#[test]
fn every_option_of_the_help_is_fuzzed() {
    let tables: [(&str, Vec<&Table>); 7] = [
        ("serve", vec![&SERVER, &SERVE, &ACCESS, &TLS_SERVER, &LOG]),
        (
            "connect",
            vec![&CONNECT, &NETCAT, &TLS_CLIENT, &TLS_SERVER, &LOG],
        ),
        ("listen", vec![&LISTEN, &NETCAT, &ACCESS, &TLS_SERVER, &LOG]),
        (
            "forward",
            vec![
                &SERVER,
                &FORWARD,
                &ACCESS,
                &TLS_SERVER,
                &TLS_CLIENT,
                &TLS_TARGET,
                &LOG,
            ],
        ),
        ("bench", vec![&BENCH, &TLS_CLIENT, &TLS_SERVER, &LOG]),
        ("completions", vec![&LOG]),
        ("man", vec![&LOG]),
    ];
    for (command, tables) in tables {
        let mut cmd = socketkit();
        cmd.args([command, "--help"]);
        let out = crate::support::process::run(cmd, Vec::new(), Duration::from_secs(10));
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let known: Vec<&str> = tables
            .iter()
            .flat_map(|t| t.iter().map(|(name, _)| *name))
            .collect();
        for line in help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
        {
            // "-c, --connections <N>  What it does": the names come first.
            let names: Vec<&str> = line
                .split_whitespace()
                .take_while(|word| word.starts_with('-') && word.len() > 1)
                .map(|word| word.trim_end_matches(','))
                .collect();
            if names.is_empty() {
                continue; // "- json: one object per line": a possible value, not an option
            }
            let covered = names
                .iter()
                .any(|name| known.contains(name) || ["-h", "--help"].contains(name));
            assert!(covered, "{command}: {line:?} is not in the fuzz tables");
        }
    }
}
