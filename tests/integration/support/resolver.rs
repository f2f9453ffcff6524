//! Name lookups under the tests' control: a command runs in a mount namespace of its own
//! (`unshare --mount`) whose `/etc/resolv.conf` names a nameserver on a loopback address
//! the test chose, and whose `/etc/hosts` knows only `localhost`; the machine's files are
//! never touched. A [`SilentResolver`] there takes every query and answers none, so a
//! lookup lasts the resolver's timeout; with nothing bound at the address, a lookup fails
//! at once.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;

use crate::access_control::as_root;
use crate::support::process::command;

/// A nameserver that never answers: a UDP socket on port 53 of a loopback address, which
/// takes queries and leaves them unread while it lives.
pub struct SilentResolver {
    _socket: UdpSocket,
}

impl SilentResolver {
    /// Binds `address`:53 (the tests run as root where they get this far).
    pub fn bind(address: Ipv4Addr) -> SilentResolver {
        let socket = UdpSocket::bind((address, 53))
            .unwrap_or_else(|err| panic!("bind {address}:53 for a silent resolver: {err}"));
        SilentResolver { _socket: socket }
    }
}

/// `socketkit ARGS` whose name lookups go to `nameserver` only, each query given
/// `timeout_s` seconds and one attempt; `None`, with the reason printed, where a mount
/// namespace needs privileges the tests do not have.
pub fn with_resolver(
    dir: &Path,
    nameserver: Ipv4Addr,
    timeout_s: u32,
    args: &[&str],
) -> Option<Command> {
    let lookups = Lookups {
        nameserver,
        timeout_s,
        hosts: "127.0.0.1 localhost\n",
        order: "files dns",
    };
    in_namespace(dir, &lookups, args)
}

/// `socketkit ARGS` that asks `nameserver` first (each query given `timeout_s` seconds)
/// and its `hosts` file after: with a [`SilentResolver`] there, every name of `hosts`
/// resolves, `timeout_s` late.
pub fn with_slow_hosts(
    dir: &Path,
    nameserver: Ipv4Addr,
    timeout_s: u32,
    hosts: &str,
    args: &[&str],
) -> Option<Command> {
    let lookups = Lookups {
        nameserver,
        timeout_s,
        hosts,
        order: "dns files",
    };
    in_namespace(dir, &lookups, args)
}

/// Where a command's name lookups go.
struct Lookups<'a> {
    nameserver: Ipv4Addr,
    timeout_s: u32,
    /// `/etc/hosts`.
    hosts: &'a str,
    /// nsswitch's sources for hosts, in order.
    order: &'a str,
}

fn in_namespace(dir: &Path, lookups: &Lookups<'_>, args: &[&str]) -> Option<Command> {
    if !as_root() {
        return None;
    }
    let files = [
        ("hosts", lookups.hosts.to_owned()),
        (
            "resolv.conf",
            format!(
                "nameserver {}\noptions timeout:{} attempts:1\n",
                lookups.nameserver, lookups.timeout_s
            ),
        ),
        ("nsswitch.conf", format!("hosts: {}\n", lookups.order)),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).expect("write a resolver file");
    }
    let mut cmd = command(Path::new("unshare"));
    cmd.args([
        "--mount",
        "sh",
        "-c",
        "mount --bind \"$0/hosts\" /etc/hosts && mount --bind \"$0/resolv.conf\" \
         /etc/resolv.conf && mount --bind \"$0/nsswitch.conf\" /etc/nsswitch.conf && \
         exec \"$@\"",
    ])
    .arg(dir)
    .arg(env!("CARGO_BIN_EXE_socketkit"))
    .args(args);
    Some(cmd)
}
