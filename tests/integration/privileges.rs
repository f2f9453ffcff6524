//! A server started as root that drops to `--user`/`--group`, as an operator runs one on a
//! low port: what it leaves open to the user's other processes and to everyone. Found by
//! an outside security review (2026-12-07). Each test needs root (CI runs as root).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::access_control::as_root;
use crate::support::process::{DEADLINE, Running, socketkit};
use crate::support::restart::{
    Descendants, become_subreaper, restarted, send_signal, stopped, wait_for_new_pid,
};

/// How long a restart may take.
const RESTART: Duration = Duration::from_secs(20);

/// A directory anyone may write, for the files a server that becomes nobody writes again.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// `serve --user nobody --pid-file PID_FILE` on a port of its own, ready.
fn serve_as_nobody(pid_file: &std::path::Path) -> Running {
    let mut cmd = socketkit();
    cmd.args([
        "serve",
        "-l",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--pid-file",
    ])
    .arg(pid_file);
    Running::start(cmd, 1)
}

/// The process a SIGUSR2 restart starts runs as the user from its start, so the kernel
/// leaves it dumpable: any process of that user could read its memory (root's
/// environment) and take its listening sockets with `pidfd_getfd`. It must not be.
/// (`/proc/PID/environ` belongs to root for a process that is not dumpable.)
#[test]
fn a_restarted_server_is_not_dumpable_by_its_user() {
    if !as_root() {
        return;
    }
    become_subreaper();
    let dir = shared_dir();
    let pid_file = dir.path().join("s.pid");
    let mut old = serve_as_nobody(&pid_file);
    let pid = old.pid();
    let owner = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/environ"))
            .expect("the process's environ")
            .uid()
    };
    assert_eq!(owner(pid), 0, "the first process");
    let mut adopted = Descendants::default();
    let new = restarted(
        &mut old,
        pid,
        &pid_file,
        &mut adopted,
        Duration::from_secs(20),
    );
    assert_eq!(owner(new), 0, "the restarted process is dumpable by nobody");
    stopped(new, &mut adopted);
}

/// `--user nobody --group nogroup --unix-mode 0660`: the socket file is the user's and the
/// group's, as if they had made it, so that the group may connect as the mode says (root's
/// file kept them out). The pid file is 0644 whatever the umask.
#[test]
fn the_socket_file_is_the_users_and_the_pid_file_is_not_writable_by_others() {
    if !as_root() {
        return;
    }
    let dir = shared_dir();
    let socket = dir.path().join("s.sock");
    let pid_file = dir.path().join("s.pid");
    let mut cmd = socketkit();
    cmd.arg("serve")
        .arg("-l")
        .arg(format!("unix:{}", socket.display()))
        .args([
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--unix-mode",
            "0660",
        ])
        .arg("--pid-file")
        .arg(&pid_file);
    // SAFETY: umask between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0);
            Ok(())
        });
    }
    let mut server = Running::start(cmd, 1);
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "{}",
        server.stderr()
    );
    assert_eq!(meta.mode() & 0o777, 0o660);
    let mode = std::fs::metadata(&pid_file).expect("the pid file").mode() & 0o777;
    assert_eq!(mode, 0o644);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(DEADLINE).code(), Some(0), "{}", server.stderr());
}

/// `listen unix:PATH --user nobody`: the socket file is the user's (it stayed root's, so the
/// user could not remove it at exit), and removed at exit.
#[test]
fn listen_gives_its_socket_file_to_the_user() {
    if !as_root() {
        return;
    }
    let dir = shared_dir();
    let socket = dir.path().join("l.sock");
    let mut cmd = socketkit();
    cmd.arg("listen")
        .arg(format!("unix:{}", socket.display()))
        .args(["--user", "nobody"]);
    let mut listener = Running::start(cmd, 1);
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file");
    assert_eq!(meta.uid(), 65534, "{}", listener.stderr());
    listener.signal(libc::SIGTERM);
    listener.wait(DEADLINE);
    assert!(!socket.exists(), "the socket file was left behind");
}

/// A socket file in a sticky directory anyone may write (`/tmp`): the user may remove the
/// file it was given, so no "will stay after exit" warning (it was said, asked before the
/// file was the user's), and the file goes at exit.
#[test]
fn a_socket_file_in_a_sticky_directory_is_not_said_to_stay() {
    if !as_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let socket = dir.path().join("s.sock");
    let endpoint = format!("unix:{}", socket.display());
    for command in ["serve", "listen"] {
        let mut cmd = socketkit();
        match command {
            "serve" => cmd.args(["serve", "-l", &endpoint]),
            _ => cmd.args(["listen", &endpoint]),
        };
        cmd.args(["--user", "nobody"]);
        let mut running = Running::start(cmd, 1);
        std::thread::sleep(Duration::from_millis(200));
        running.signal(libc::SIGTERM);
        running.wait(DEADLINE);
        let said = running.stderr();
        assert!(!said.contains("will stay after exit"), "{command}: {said}");
        assert!(
            !socket.exists(),
            "{command}: the socket file was left behind"
        );
    }
}

/// A certificate and key only root may read (certbot's keys are 0600): a server that drops
/// to `--user` could never reload them on SIGHUP, and said so only at the first rotation.
/// It says so at start now, after the readiness lines.
#[test]
fn a_key_the_user_cannot_read_is_said_at_start() {
    if !as_root() {
        return;
    }
    let pki = crate::support::certs::Pki::new();
    std::fs::set_permissions(pki.server.key(), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "tls:127.0.0.1:0", "--user", "nobody"])
        .args([
            "--tls-cert",
            pki.server.cert(),
            "--tls-key",
            pki.server.key(),
        ]);
    let server = Running::start(cmd, 1);
    server.wait_for_stderr(
        &["SIGHUP will not reload the TLS certificate, and a SIGUSR2 restart will fail"],
        DEADLINE,
    );
    assert!(
        server.stderr().starts_with("listening on "),
        "{}",
        server.stderr()
    );
}

/// Every file SIGHUP reads again that only root may read, under `--user`: the rule files
/// (`serve`, and a datagram `forward`), `forward`'s `--to-file`: said at start as a key is
/// (the first reload failed with no word before; an outside audit of combined features).
#[test]
fn a_reloaded_file_the_user_cannot_read_is_said_at_start() {
    if !as_root() {
        return;
    }
    let dir = shared_dir();
    let private = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        file.to_string_lossy().into_owned()
    };
    let rules = private("allow.txt", "127.0.0.0/8\n");
    let targets = private("targets.txt", "127.0.0.1:9\n");
    let udp_targets = private("udp-targets.txt", "udp:127.0.0.1:9\n");
    let cases: [(&[&str], &str); 3] = [
        (
            &["serve", "-l", "127.0.0.1:0", "--allow-file", &rules],
            "SIGHUP will not reload the rules, and a SIGUSR2 restart will fail",
        ),
        (
            &["forward", "-l", "127.0.0.1:0", "--to-file", &targets],
            "SIGHUP will not reload the targets, and a SIGUSR2 restart will fail",
        ),
        (
            &[
                "forward",
                "-l",
                "udp:127.0.0.1:0",
                "--to-file",
                &udp_targets,
            ],
            // No SIGUSR2 restart to fail: a datagram relay has none.
            "SIGHUP will not reload the targets: cannot read",
        ),
    ];
    for (args, said) in cases {
        let mut cmd = socketkit();
        cmd.args(args).args(["--user", "nobody"]);
        let server = Running::start(cmd, 1);
        server.wait_for_stderr(&[said], DEADLINE);
    }
}

/// A pid file in a directory only root may write (`/run`), under `--user`: the restart's
/// new process, which starts as the user, cannot replace the file there, so it writes its
/// pid through the file the old process hands over (the file went on naming the old
/// process, gone, and the next `kill $(cat …)` missed or hit another).
#[test]
fn a_restart_under_user_rewrites_a_pid_file_in_roots_directory() {
    if !as_root() {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pid_file = dir.path().join("s.pid");
    let mut old = serve_as_nobody(&pid_file);
    let mut pid = old.pid();
    let mut adopted = Descendants::default();
    // A reader all along, as a script's `kill $(cat …)` reads: the file rewritten in place
    // was empty for a moment (truncated first) in tens of reads per restart.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let (done, pid_file) = (std::sync::Arc::clone(&done), pid_file.clone());
        move || {
            let mut unusable = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
                if text.split_whitespace().count() != 1 {
                    unusable.push(text);
                }
            }
            unusable
        }
    });
    for round in 0..3 {
        let new = if round == 0 {
            restarted(&mut old, pid, &pid_file, &mut adopted, RESTART)
        } else {
            send_signal(pid, libc::SIGUSR2);
            let new = wait_for_new_pid(&pid_file, pid, RESTART);
            adopted.add(new);
            assert_eq!(adopted.reap(pid, RESTART), 0, "{}", old.stderr());
            new
        };
        let named = std::fs::read_to_string(&pid_file).expect("the pid file");
        assert_eq!(named, format!("{new}\n"), "{}", old.stderr());
        pid = new;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let unusable = reader.join().expect("the reader");
    assert!(unusable.is_empty(), "read as no pid or two: {unusable:?}");
    stopped(pid, &mut adopted);
}

/// `serve --user nobody exec`: the program runs as nobody, so its environment says so —
/// `HOME`, `USER`, `LOGNAME` and `SHELL` from the password database, not root's, which
/// sent a program that writes to `~` into root's home (as `login` and systemd's `User=`
/// set them). The rest of the environment is the server's.
#[test]
fn an_exec_program_under_user_is_told_the_users_home_and_name() {
    if !as_root() {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let nobody: Vec<&str> = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"nobody") && fields.len() == 7)
        .expect("nobody in /etc/passwd");
    let mut cmd = socketkit();
    cmd.args(["serve", "-l", "127.0.0.1:0", "--user", "nobody", "exec"])
        .args([
            "--shell",
            "--",
            r#"echo "$HOME|$USER|$LOGNAME|$SHELL|$KEPT""#,
        ])
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("SHELL", "/bin/bash")
        .env("KEPT", "the server's own");
    let mut server = Running::start(cmd, 1);
    let mut client = std::net::TcpStream::connect(server.addr()).expect("connect");
    client.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut said = String::new();
    std::io::Read::read_to_string(&mut client, &mut said).expect("the program's line");
    let shell = if nobody[6].is_empty() {
        "/bin/sh"
    } else {
        nobody[6]
    };
    let wanted = format!("{}|nobody|nobody|{shell}|the server's own\n", nobody[5]);
    assert_eq!(said, wanted, "{}", server.stderr());
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(DEADLINE).code(), Some(0), "{}", server.stderr());
}
