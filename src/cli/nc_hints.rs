//! Hints for the nc and ncat flags that socketkit spells differently (SPEC §3.6): instead of
//! clap's "unexpected argument", one `error:` line naming the socketkit way (exit 2).
//!
//! The command line is read before clap parses it, as clap would read it: short flags may be
//! clustered (`-lvnp 4444`), and the values of options that take one (`-o FILE`,
//! `--output=FILE`, `-oFILE`) are skipped, so that a file named `-d` is no flag. Which
//! options take a value is asked of the parser's own definition, the one that then parses.

use std::ffi::OsString;

/// A hint for an nc flag that socketkit spells differently, when `argv` (after the program
/// name) has one; `None` leaves the line to `cli`, the parser. With several, the most
/// telling (see [`Flag::rank`]), else the first.
pub(crate) fn hint(argv: &[OsString], cli: &clap::Command) -> Option<String> {
    let words: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap_or("")).collect();
    let command = *words.first()?;
    // ncat's server-only long options are hinted on every command that serves; nc's flags
    // on connect and listen alone (serve's -l is its own).
    let netcat = command == "connect" || command == "listen";
    if !netcat && command != "serve" && command != "forward" {
        return None;
    }
    let options = ValueOptions::of(cli, command);
    let mut found: Vec<Flag> = Vec::new();
    let mut words = words[1..]
        .iter()
        .copied()
        .take_while(|w| *w != "--")
        .peekable();
    while let Some(word) = words.next() {
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            if let Some(flag) = Flag::long(name, command) {
                found.push(flag);
            } else if !inline_value && options.long.iter().any(|l| l == name) {
                words.next(); // its value
            }
        } else if let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (at, short) in cluster.char_indices() {
                let rest = &cluster[at + short.len_utf8()..];
                // socketkit's -q is --quiet, a flag: a number after it, in the word (`-q1`,
                // `-vq1`) or as the next word (`-q 1`, `-Cq 1`), is nc's -q SECONDS.
                if netcat
                    && short == 'q'
                    && is_number(if rest.is_empty() {
                        words.peek()
                    } else {
                        Some(&rest)
                    })
                {
                    found.push(Flag::QuitAfterEof);
                    break;
                }
                if options.short.contains(&short) {
                    // The rest of the word is its value, or else the next word is.
                    if rest.is_empty() {
                        words.next();
                    }
                    break;
                }
                found.extend(Flag::short(short, command).filter(|_| netcat));
            }
        }
    }
    let first = found.into_iter().min_by_key(|flag| flag.rank())?;
    Some(first.hint().into())
}

/// Whether `word` is a number of seconds, as nc's `-q` takes.
fn is_number(word: Option<&&str>) -> bool {
    word.is_some_and(|w| w.parse::<f64>().is_ok())
}

/// An nc flag socketkit has another way for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    /// `-q SECONDS`: quit that long after stdin's end.
    QuitAfterEof,
    /// `-N`: shut the socket down at stdin's end.
    Shutdown,
    /// `-l` on `connect`.
    ListenOnConnect,
    /// `-l` on `listen`.
    ListenOnListen,
    /// `-p PORT` on `listen` (on `connect`, `-p` is the source port, as nc's).
    ListenPort,
    /// `-U`: the endpoint is a Unix socket path.
    Unix,
    /// `-d`: do not read stdin.
    NoStdin,
    /// ncat's `--ssl` and `--ssl-*`.
    Ssl,
    /// OpenBSD nc's `-X KIND` (with `-x PROXY`) on `connect`.
    ProxyKind,
    /// ncat's `--proxy-type` and `--proxy-auth` on `connect`.
    ProxyParts,
    /// `-i`: ncat's idle timeout (OpenBSD nc's delay between lines).
    Interval,
    /// ncat's `--max-conns N` on a listener.
    MaxConns,
    /// `-w` on `listen`, where nc and ncat ignore it.
    WaitOnListen,
    /// ncat's `--telnet`: answering Telnet negotiations.
    Telnet,
    /// ncat's `--broker` and `--chat`: clients talking to each other through the listener.
    Broker,
    /// `-k`/`--keep-open` on `connect`.
    KeepOpenOnConnect,
    /// ncat's `--append-output`.
    AppendOutput,
}

impl Flag {
    /// The flag a short option letter of `command` is, if nc's and not socketkit's.
    fn short(letter: char, command: &str) -> Option<Flag> {
        match (letter, command) {
            ('N', _) => Some(Flag::Shutdown),
            ('l', "connect") => Some(Flag::ListenOnConnect),
            ('l', _) => Some(Flag::ListenOnListen),
            ('p', "listen") => Some(Flag::ListenPort),
            ('U', _) => Some(Flag::Unix),
            ('d', _) => Some(Flag::NoStdin),
            ('X', "connect") => Some(Flag::ProxyKind),
            // nc's -P USER: the proxy's user name.
            ('P', "connect") => Some(Flag::ProxyParts),
            // ncat's -m N (--max-conns).
            ('m', "listen") => Some(Flag::MaxConns),
            ('i', _) => Some(Flag::Interval),
            ('w', "listen") => Some(Flag::WaitOnListen),
            _ => None,
        }
    }

    /// The flag a long option name of `command` is, if ncat's and not socketkit's; on
    /// serve and forward, only the server ones.
    fn long(name: &str, command: &str) -> Option<Flag> {
        let netcat = command == "connect" || command == "listen";
        match name {
            "broker" | "chat" => Some(Flag::Broker),
            "max-conns" if command != "connect" => Some(Flag::MaxConns),
            _ if !netcat => None,
            "ssl" => Some(Flag::Ssl),
            _ if name.starts_with("ssl-") => Some(Flag::Ssl),
            "proxy-type" | "proxy-auth" | "proxy-dns" if command == "connect" => {
                Some(Flag::ProxyParts)
            }
            // ncat's --listen: listening is a command of its own.
            "listen" if command == "connect" => Some(Flag::ListenOnConnect),
            "listen" => Some(Flag::ListenOnListen),
            "keep-open" if command == "connect" => Some(Flag::KeepOpenOnConnect),
            "append-output" => Some(Flag::AppendOutput),
            "telnet" => Some(Flag::Telnet),
            _ => None,
        }
    }

    /// Which hint to give when a line has several: nc's `-l -p PORT` (in any spelling) is
    /// the whole of what such a line wants; `-l` on `listen` alone changes nothing else
    /// (`-lU PATH` wants the `-U` hint).
    fn rank(self) -> u8 {
        match self {
            Flag::ListenPort => 0,
            Flag::ListenOnListen => 2,
            _ => 1,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Flag::QuitAfterEof => {
                "nc's -q SECONDS is not needed: socketkit half-closes at stdin EOF and exits \
                 when the peer closes (for UDP, --wait DURATION waits for replies)"
            }
            Flag::Shutdown => "-N is not needed: socketkit always half-closes at stdin EOF",
            Flag::ListenOnConnect => "-l: use socketkit listen ENDPOINT to wait for a peer",
            Flag::ListenOnListen => "-l is not needed: socketkit listen always listens",
            Flag::ListenPort => {
                "nc's -l -p PORT is socketkit listen PORT (or listen HOST PORT): the port is \
                 the endpoint, and -l is not needed"
            }
            Flag::Unix => {
                "nc's -U: name the Unix socket in the endpoint, unix:PATH (unixgram:PATH for \
                 datagrams)"
            }
            Flag::NoStdin => "nc's -d (do not read stdin) is --recv-only in socketkit",
            Flag::Interval => {
                "ncat's -i (idle timeout) is --idle-timeout DURATION in socketkit (exit 1 when \
                 it fires); OpenBSD nc's -i (a delay between lines) has no equivalent"
            }
            Flag::MaxConns => {
                "ncat's --max-conns N: listen takes one peer at a time (-k: one after \
                 another); for N at once, serve exec --max-connections N -- PROG or forward \
                 --max-connections N (past N, clients wait instead of being refused)"
            }
            Flag::WaitOnListen => {
                "-w on listen: nc and ncat ignore it there, and socketkit's -w is connect's \
                 connect timeout; --idle-timeout DURATION ends a connection idle that long"
            }
            Flag::Telnet => "ncat's --telnet (Telnet negotiation) is not supported in socketkit",
            Flag::Broker => {
                "ncat's --broker and --chat (clients talking to each other through the \
                 listener) are not supported: socketkit has no broker mode"
            }
            Flag::ProxyKind => {
                "nc's -X KIND -x PROXY is --proxy socks5://HOST:PORT (or http://HOST:PORT for \
                 CONNECT) in socketkit, whose -x is a hex dump"
            }
            Flag::ProxyParts => {
                "ncat's --proxy-type, --proxy-auth and --proxy-dns and nc's -P USER go in \
                 socketkit's --proxy URL: --proxy socks5://USER:PASSWORD@HOST:PORT \
                 (socks5h:// resolves at the proxy, http:// is CONNECT)"
            }
            Flag::KeepOpenOnConnect => {
                "-k/--keep-open applies to socketkit listen (one peer after another); serve \
                 and forward take many peers at once"
            }
            Flag::AppendOutput => {
                "ncat's --append-output is not supported: -o and -x start their file anew \
                 each run"
            }
            Flag::Ssl => {
                "ncat's --ssl: use a tls:HOST:PORT endpoint (the --tls-* options set \
                 certificates and verification)"
            }
        }
    }
}

/// The options of a subcommand that take a value, by short letter and by long name
/// (aliases included).
struct ValueOptions {
    short: Vec<char>,
    long: Vec<String>,
}

impl ValueOptions {
    fn of(cli: &clap::Command, command: &str) -> ValueOptions {
        let mut options = ValueOptions {
            short: Vec::new(),
            long: Vec::new(),
        };
        let Some(sub) = cli.find_subcommand(command) else {
            return options;
        };
        for arg in sub.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            options
                .short
                .extend(arg.get_short_and_visible_aliases().unwrap_or_default());
            // The long name and every alias, visible or not.
            let aliases = arg.get_all_aliases().unwrap_or_default();
            options
                .long
                .extend(arg.get_long().into_iter().chain(aliases).map(str::to_owned));
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint_of(words: &[&str]) -> Option<String> {
        use clap::CommandFactory;
        let argv: Vec<OsString> = words.iter().map(OsString::from).collect();
        hint(&argv, &super::super::args::Cli::command())
    }

    /// Found by an outside audit of nc habits: each was clap's nearest spelling of
    /// something else (`--listen` → `--tls-insecure`) or no hint at all.
    #[test]
    fn more_nc_and_ncat_spellings_get_their_hints() {
        for (words, wanted) in [
            (&["connect", "--listen", "h", "1"][..], "socketkit listen"),
            (&["listen", "--listen", "1"][..], "always listens"),
            (
                &["connect", "--keep-open", "h", "1"][..],
                "applies to socketkit listen",
            ),
            (&["connect", "-P", "me", "h", "1"][..], "--proxy URL"),
            (
                &["connect", "--proxy-dns", "remote", "h", "1"][..],
                "socks5h://",
            ),
            (&["listen", "-m", "5", "1"][..], "--max-connections"),
            (
                &["connect", "--append-output", "-o", "f", "h", "1"][..],
                "anew",
            ),
        ] {
            let hint = hint_of(words).unwrap_or_default();
            assert!(hint.contains(wanted), "{words:?}: {hint:?}");
        }
    }

    #[test]
    fn nc_flags_get_hints() {
        assert!(hint_of(&["connect", "h", "1", "-q", "1"]).is_some());
        assert!(hint_of(&["connect", "-q1", "h:1"]).is_some());
        assert!(hint_of(&["connect", "-q", "h:1"]).is_none());
        assert!(hint_of(&["connect", "-N", "h:1"]).is_some());
        assert!(hint_of(&["connect", "-nv", "127.0.0.1", "1"]).is_none());
        assert!(hint_of(&["listen", "-lvnp", "4444"]).is_some_and(|h| h.contains("-p PORT")));
        assert!(hint_of(&["connect", "-l", "h:1"]).is_some());
        assert!(hint_of(&["serve", "-l", ":1"]).is_none());
        assert!(hint_of(&["connect", "h:1", "--", "-N"]).is_none());
        let proxy = hint_of(&["connect", "-X", "5", "-x", "127.0.0.1:1080", "h", "80"]);
        assert!(proxy.unwrap_or_default().contains("--proxy socks5://"));
        let ncat = hint_of(&["connect", "--proxy", "p:1", "--proxy-type", "socks5", "h:1"]);
        assert!(ncat.unwrap_or_default().contains("--proxy URL"));
        assert!(hint_of(&["connect", "--proxy", "socks5://p:1", "h:1"]).is_none());
    }

    #[test]
    fn clustered_q_and_ncat_options_get_hints() {
        let has = |words: &[&str], text: &str| {
            let hint = hint_of(words).unwrap_or_default();
            assert!(hint.contains(text), "{words:?}: {hint}");
        };
        has(&["connect", "-vq1", "h", "1"], "-q SECONDS");
        has(&["connect", "-uq1", "h", "1"], "-q SECONDS");
        has(&["connect", "-Cq", "1", "h", "1"], "-q SECONDS");
        has(&["connect", "-i", "2", "h", "1"], "--idle-timeout DURATION");
        has(
            &["listen", "-k", "--max-conns", "5", "0"],
            "--max-connections N",
        );
        has(&["listen", "-w", "3", "0"], "-w on listen");
        has(&["connect", "--telnet", "h:1"], "--telnet");
        has(&["listen", "--broker", "0"], "no broker mode");
        has(&["listen", "-lk", "--chat", "0"], "no broker mode");
        has(&["serve", "--broker"], "no broker mode");
        // Not nc's there: serve's -l, connect's -w, a program's own flags.
        assert!(hint_of(&["serve", "-l", ":1", "--message", "-q"]).is_none());
        assert!(hint_of(&["connect", "-w", "3", "h:1"]).is_none());
        assert!(hint_of(&["serve", "exec", "--", "nc", "-q", "1", "--chat"]).is_none());
    }

    #[test]
    fn listen_port_in_every_spelling_names_listen_port() {
        for words in [
            &["listen", "-p", "1234"][..],
            &["listen", "-lp", "1234"],
            &["listen", "-l", "-p", "1234"],
            &["listen", "-lvnp", "1234"],
            &["listen", "-vp1234"],
        ] {
            let hint = hint_of(words).unwrap_or_default();
            assert!(hint.contains("socketkit listen PORT"), "{words:?}: {hint}");
        }
        // On connect, -p is the source port.
        assert!(hint_of(&["connect", "-p", "1234", "h:1"]).is_none());
        assert!(hint_of(&["connect", "-vp1234", "h:1"]).is_none());
    }

    #[test]
    fn unix_no_stdin_and_ssl_get_hints() {
        let has = |words: &[&str], text: &str| {
            let hint = hint_of(words).unwrap_or_default();
            assert!(hint.contains(text), "{words:?}: {hint}");
        };
        has(&["connect", "-U", "/tmp/s"], "unix:PATH");
        has(&["listen", "-lU", "/tmp/s"], "unix:PATH");
        has(&["connect", "-d", "h:1"], "--recv-only");
        has(&["listen", "-kd", "0"], "--recv-only");
        has(&["connect", "--ssl", "h:1"], "tls:HOST:PORT");
        has(&["connect", "--ssl-verify", "h:1"], "tls:HOST:PORT");
        has(&["listen", "--ssl-cert=c.pem", "0"], "tls:HOST:PORT");
    }

    #[test]
    fn values_of_options_are_not_flags() {
        // A file named -d, a program with its own flags, a cluster ending in a value.
        assert!(hint_of(&["connect", "-o", "-d", "h:1"]).is_none());
        assert!(hint_of(&["connect", "--output", "-U", "h:1"]).is_none());
        assert!(hint_of(&["listen", "-e", "-p", "0"]).is_none());
        assert!(hint_of(&["listen", "-c", "-lp", "0"]).is_none());
        assert!(hint_of(&["listen", "-o/tmp/dump.p", "0"]).is_none());
        assert!(hint_of(&["listen", "-ko", "-N", "0"]).is_none());
        assert!(hint_of(&["listen", "--output=-d", "0"]).is_none());
    }
}
