//! The argument vectors: every subcommand's options by kind, the values each kind is tried
//! with (accepted ones, and refused ones: 0, max + 1, negative, huge, empty, non-UTF-8), and
//! a seeded generator, so that a failing vector can be replayed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use crate::support::process::Running;

/// What kind of value an option takes, and so which values to try.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A flag without a value.
    Flag,
    /// A whole number from 0 to `max`.
    Whole(u64),
    /// A decimal number (`--rate`).
    Decimal,
    /// A duration; `zero` when 0 is accepted, `long` when 365d is harmless for the run's
    /// length.
    Duration { zero: bool, long: bool },
    /// Octal permission bits.
    Mode,
    /// Free text (`--message`, `--expect`).
    Text,
    /// Hex bytes (`--expect-hex`).
    Hex,
    /// Where to listen (`streams`: TCP and Unix stream only, as forward takes).
    Listen { streams: bool },
    /// Where to connect (`streams`: as forward takes).
    Target { streams: bool },
    /// A file to read (`--quotes`).
    InFile,
    /// A network (`--allow`, `--deny`).
    Cidr,
    /// A file of networks (`--allow-file`).
    RuleFile,
    /// N/DURATION (`--rate-per-source`).
    Rate,
    /// A file to write (`--report`).
    OutFile,
    /// A service or bench mode name, from the list.
    Word(&'static [&'static str]),
}

/// A duration option's kind: `zero` if 0 is accepted, `long` if 365d is harmless.
const fn span(zero: bool, long: bool) -> Kind {
    Kind::Duration { zero, long }
}

/// The options of each subcommand: name and kind. `every_option_of_the_help_is_fuzzed`
/// checks this against `--help`, so a new option cannot be forgotten here.
pub const SERVER: [(&str, Kind); 15] = [
    ("-l", Kind::Listen { streams: false }),
    ("--max-connections", Kind::Whole(1_000_000_000)),
    ("--idle-timeout", span(false, true)),
    ("--backlog", Kind::Whole(65_535)),
    ("--drain-timeout", span(true, true)),
    ("--unix-mode", Kind::Mode),
    ("--workers", Kind::Whole(1024)),
    (
        "--io-engine",
        Kind::Word(&["auto", "epoll", "io_uring", "kqueue", ""]),
    ),
    // With no connection on stdin, --inetd fails at once (exit 1).
    ("--inetd", Kind::Flag),
    ("--pid-file", Kind::OutFile),
    // Zero or short: a server stopped with SIGTERM waits this long before it closes.
    ("--shutdown-delay", span(true, false)),
    ("--proxy-protocol", Kind::Flag),
    ("--trusted-proxy", Kind::Cidr),
    ("--proxy-header-timeout", span(false, true)),
    // HTTP over TCP only: the other schemes of the listen values are refused.
    ("--metrics", Kind::Listen { streams: true }),
];
/// Access options of serve, forward and listen. `--user`/`--group` only ever name root (we
/// run as root in CI, so that is no change) or no one.
pub const ACCESS: [(&str, Kind); 8] = [
    ("--allow", Kind::Cidr),
    ("--deny", Kind::Cidr),
    ("--allow-file", Kind::RuleFile),
    ("--deny-file", Kind::RuleFile),
    ("--max-per-source", Kind::Whole(4_294_967_295)),
    ("--rate-per-source", Kind::Rate),
    ("--user", Kind::Word(&["root", "no-such-user-xq", ""])),
    ("--group", Kind::Word(&["root", "no-such-group-xq", ""])),
];
/// TLS options of the listeners (serve, listen, forward -l); most vectors of accepted
/// values leave TLS out, since these files are refused and a TLS option with no `tls:`
/// endpoint is too. Files are ones that exist but
/// hold no PEM, or none at all; `--tls-self-signed` is the way to a working listener.
pub const TLS_SERVER: [(&str, Kind); 7] = [
    ("--tls-cert", Kind::InFile),
    ("--tls-key", Kind::InFile),
    ("--tls-self-signed", Kind::Flag),
    ("--tls-client-ca", Kind::InFile),
    ("--tls-client-optional", Kind::Flag),
    ("--tls-handshake-timeout", span(false, true)),
    ("--tls-alpn", Kind::Word(&["h2", "http/1.1", "", "x"])),
];
/// TLS options of the clients (connect, bench, forward --to).
pub const TLS_CLIENT: [(&str, Kind); 6] = [
    ("--tls-ca", Kind::InFile),
    (
        "--tls-fingerprint",
        Kind::Word(&[
            "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
            "",
            "12:34",
            "zz",
        ]),
    ),
    (
        "--tls-sni",
        Kind::Word(&["localhost", "example.com", "", "a b"]),
    ),
    ("--tls-insecure", Kind::Flag),
    ("--tls-cert", Kind::InFile),
    ("--tls-key", Kind::InFile),
];
/// forward's client certificate towards a `tls:` target.
pub const TLS_TARGET: [(&str, Kind); 2] = [
    ("--to-tls-cert", Kind::InFile),
    ("--to-tls-key", Kind::InFile),
];
/// Log options: `-v` and `-q` conflict, so a vector of accepted values has one at most.
pub const LOG: [(&str, Kind); 4] = [
    ("-v", Kind::Flag),
    ("-vv", Kind::Flag),
    ("-q", Kind::Flag),
    ("--log-format", Kind::Word(&["text", "json", "xml", ""])),
];
/// The shells of `completions`, the last two unknown.
const SHELLS: [&str; 7] = ["bash", "zsh", "fish", "elvish", "powershell", "tcsh", ""];
pub const SERVE: [(&str, Kind); 3] = [
    ("--message", Kind::Text),
    ("--quotes", Kind::InFile),
    ("--shell", Kind::Flag),
];
pub const CONNECT: [(&str, Kind); 10] = [
    ("--timeout", span(false, true)),
    ("-4", Kind::Flag),
    ("-6", Kind::Flag),
    ("--idle-timeout", span(false, true)),
    ("--wait", span(true, false)),
    ("-w", span(false, true)),
    ("-z", Kind::Flag),
    ("-s", Kind::Word(&["127.0.0.1", "::1", "localhost", ""])),
    ("-p", Kind::Whole(65_535)),
    ("--proxy", Kind::Word(&PROXIES)),
];
/// Proxies where nothing listens; the last two are refused.
const PROXIES: [&str; 4] = [
    "socks5://127.0.0.1:1",
    "http://127.0.0.1:1",
    "socks4://127.0.0.1:1",
    "",
];
/// The netcat options of connect and listen. `-e`/`-c` name harmless programs (the last two
/// words of a `Word` list are the refused ones).
pub const NETCAT: [(&str, Kind); 10] = [
    ("-u", Kind::Flag),
    ("-e", Kind::Word(&["cat", "true", "no-such-program", ""])),
    // The exit status of -e/-c is the program's, so they run only programs exiting 0-2.
    ("-c", Kind::Word(&["cat", "exit 1", "", ""])),
    ("--send-only", Kind::Flag),
    ("--recv-only", Kind::Flag),
    ("--no-shutdown", Kind::Flag),
    ("-C", Kind::Flag),
    ("-n", Kind::Flag),
    ("-o", Kind::OutFile),
    ("-x", Kind::OutFile),
];
pub const LISTEN: [(&str, Kind); 9] = [
    ("-k", Kind::Flag),
    ("--metrics", Kind::Listen { streams: true }),
    ("--proxy-protocol", Kind::Flag),
    ("--trusted-proxy", Kind::Cidr),
    ("--proxy-header-timeout", span(false, true)),
    ("-4", Kind::Flag),
    ("-6", Kind::Flag),
    ("--idle-timeout", span(false, true)),
    ("--wait", span(true, false)),
];
pub const FORWARD: [(&str, Kind); 19] = [
    ("--to", Kind::Target { streams: true }),
    ("--to-file", Kind::InFile),
    (
        "--sni-route",
        Kind::Word(&[
            "shop.example.com=127.0.0.1:9",
            "*.example.com=unix:/tmp/x",
            "*.=127.0.0.1:9",
            "10.0.0.1=127.0.0.1:9",
            "a.test=tls:127.0.0.1:9",
            "a.test=udp:127.0.0.1:9",
            "a.test",
            "=",
            "",
        ]),
    ),
    ("--sni-route-file", Kind::InFile),
    (
        "--balance",
        Kind::Word(&[
            "round-robin",
            "first",
            "least-conn",
            "source",
            "fastest",
            "",
        ]),
    ),
    ("--retry-after", span(true, true)),
    ("--check-interval", span(false, true)),
    (
        "--check-http",
        Kind::Word(&["/health", "/", "health", "/a b", "/\r\nX: y", ""]),
    ),
    ("--check-fall", Kind::Whole(1000)),
    ("--check-rise", Kind::Whole(1000)),
    ("--socks", Kind::Flag),
    ("--socks-users", Kind::InFile),
    ("--socks-allow", Kind::Cidr),
    ("--socks-deny", Kind::Cidr),
    ("--socks-allow-file", Kind::RuleFile),
    ("--socks-deny-file", Kind::RuleFile),
    ("--timeout", span(false, true)),
    ("--send-proxy", Kind::Word(&["v1", "v2", "v3", ""])),
    ("--proxy", Kind::Word(&PROXIES)),
];
pub const BENCH: [(&str, Kind); 18] = [
    // The last two words of a `Word` list are the refused ones.
    (
        "--mode",
        Kind::Word(&["greeting", "echo", "idle", "storm", ""]),
    ),
    ("-c", Kind::Whole(1_000_000)),
    ("-d", span(false, false)),
    ("--warmup", span(true, false)),
    ("--rate", Kind::Decimal),
    ("--count", Kind::Whole(1_000_000_000_000)),
    ("--expect", Kind::Text),
    ("--expect-hex", Kind::Hex),
    ("--size", Kind::Whole(64 << 20)),
    ("--window", Kind::Whole(1 << 30)),
    ("--timeout", span(false, false)),
    ("--threads", Kind::Whole(1024)),
    ("--json", Kind::Flag),
    ("--report", Kind::OutFile),
    ("--connections", Kind::Whole(1_000_000)),
    // Two files; given one here, the next argument (often the endpoint) is the second.
    ("--compare", Kind::InFile),
    // Any pid but an idle run's live one is refused; a live one is only read.
    ("--server-pid", Kind::Whole(4_194_304)),
    ("--send-proxy", Kind::Word(&["v1", "v2", "v3", ""])),
];
/// The services, the last two unknown.
pub const SERVICES: [&str; 10] = [
    "greeting", "echo", "discard", "chargen", "daytime", "qotd", "time", "exec", "nope", "",
];

/// A small deterministic generator (xorshift64*): the same seed, the same vectors.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// The world a vector may name: a live greeting server, a closed port, a scratch directory.
pub struct World {
    pub server: Running,
    pub closed_port: u16,
    pub dir: tempfile::TempDir,
}

pub fn os(text: &str) -> OsString {
    OsString::from(text)
}

fn not_utf8() -> OsString {
    OsString::from_vec(vec![b'a', 0xff, 0xfe, b':', b'1'])
}

impl World {
    /// Values of `kind`: (values it accepts, values it refuses). Numbers come at 0, 1, max,
    /// max + 1, negative and huge.
    fn values(&self, kind: Kind, case: &Path) -> (Vec<OsString>, Vec<OsString>) {
        let path = |name: &str| case.join(name).into_os_string();
        let sock = case.join("l.sock").display().to_string();
        let missing = case.join("missing.sock").display().to_string();
        match kind {
            Kind::Flag => (vec![os("")], vec![]),
            Kind::Whole(max) => (
                vec![os("1"), os("2"), os("64"), os(&max.to_string())],
                vec![
                    os("0"),
                    os(&(u128::from(max) + 1).to_string()),
                    os("-5"),
                    os("99999999999"),
                    os("18446744073709551616"),
                    os("1.5"),
                    os("+7"),
                    os("٣"),
                ],
            ),
            Kind::Decimal => (
                vec![os("0.001"), os("50"), os("1000000")],
                vec![
                    os("0"),
                    os("0.0009"),
                    os("1000001"),
                    os("99999999999"),
                    os("NaN"),
                    os("inf"),
                    os("-1"),
                ],
            ),
            Kind::Duration { zero, long } => {
                let mut valid = vec![os("1ms"), os("100ms"), os("0.05")];
                if long {
                    valid.extend([os("365d"), os("1h 30m")]);
                }
                let mut invalid = vec![];
                if zero { &mut valid } else { &mut invalid }.push(os("0"));
                invalid.extend([
                    os("-1s"),
                    os("366d"),
                    os("1e400"),
                    os("5x"),
                    os("1h 2x"),
                    os("18446744073709551615"),
                ]);
                (valid, invalid)
            }
            Kind::Mode => (
                vec![os("0"), os("660"), os("7777")],
                vec![os("10000"), os("9"), os("0o660")],
            ),
            Kind::Text => (
                vec![
                    os("hello"),
                    os("你好"),
                    os("a\nb\u{1b}[31m"),
                    os(&"x".repeat(5000)),
                ],
                vec![],
            ),
            Kind::Hex => (
                vec![os("e4bda0e5a5bd"), os("00ff")],
                vec![os("zz"), os("abc")],
            ),
            Kind::Listen { .. } => (
                vec![
                    os("127.0.0.1:0"),
                    os("[::1]:0"),
                    os(&format!("unix:{sock}")),
                    os(&format!("unixgram:{sock}")),
                    os("udp:127.0.0.1:0"),
                    os("tls:127.0.0.1:0"),
                ],
                vec![
                    os("localhost:99999"),
                    os("[::1:80"),
                    os("sctp:h:1"),
                    os("unix:"),
                    // Inherited sockets: `serve -l` and `listen` take them, and refuse
                    // them here (no `LISTEN_FDS` is passed to the runs); `--metrics` never.
                    os("fd:3"),
                    os("fd:web"),
                    os("tls:fd:3"),
                ],
            ),
            Kind::Target { .. } => {
                let mut valid = vec![
                    os(&format!("127.0.0.1:{}", self.closed_port)),
                    os(&format!("udp:127.0.0.1:{}", self.closed_port)),
                    os(&format!("unix:{missing}")),
                    os(&format!("unixgram:{missing}")),
                    os(&format!("tls:127.0.0.1:{}", self.closed_port)),
                ];
                valid.extend(self.server.endpoints().iter().map(|e| os(e)));
                (valid, vec![os(":80"), os("127.0.0.1:0"), os("[::1]:99999")])
            }
            Kind::InFile => (
                vec![self.dir.path().join("quotes.txt").into_os_string()],
                vec![os("/dev/null"), os("/"), path("missing.txt")],
            ),
            Kind::Cidr => (
                vec![
                    os("127.0.0.0/8"),
                    os("10.0.0.0/8"),
                    os("::1"),
                    os("0.0.0.0/0"),
                ],
                vec![
                    os("10.0.0.0/33"),
                    os("::1/129"),
                    os("300.1.1.1"),
                    os("10.0.0.0/"),
                ],
            ),
            Kind::RuleFile => (
                vec![self.dir.path().join("rules.txt").into_os_string()],
                vec![
                    self.dir.path().join("bad-rules.txt").into_os_string(),
                    os("/"),
                    path("none.txt"),
                ],
            ),
            Kind::Rate => (
                // A bare number is seconds, as every duration; past 365d or under 1ms is
                // refused, as every duration (an outside audit found `5/30` refused and
                // `1/366d`, `5/1ns` taken).
                vec![
                    os("20/1s"),
                    os("100/m"),
                    os("4294967295/1ms"),
                    os("1/365d"),
                    os("5/30"),
                ],
                vec![
                    os("0/1s"),
                    os("5/0s"),
                    os("1/366d"),
                    os("5/1ns"),
                    os("5/1s/2"),
                    os("4294967296/1s"),
                    os("-1/1s"),
                    os("5/1x"),
                    os("5"),
                ],
            ),
            Kind::OutFile => (
                vec![path("r.svg"), path("r.html")],
                vec![os("r.png"), path("no-such-dir/r.svg")],
            ),
            Kind::Word(words) => {
                let (valid, invalid) = words.split_at(words.len() - 2);
                (
                    valid.iter().map(|w| os(w)).collect(),
                    invalid.iter().map(|w| os(w)).collect(),
                )
            }
        }
    }

    /// A value of `kind`: one it accepts when `valid`, else any, odd ones included.
    fn value(&self, kind: Kind, valid: bool, rng: &mut Rng, case: &Path) -> OsString {
        let (mut good, mut bad) = self.values(kind, case);
        if let Kind::Listen { streams: true } | Kind::Target { streams: true } = kind {
            let datagrams = |v: &OsString| {
                let v = v.to_string_lossy();
                v.starts_with("udp:") || v.starts_with("unixgram:")
            };
            bad.extend(good.iter().filter(|v| datagrams(v)).cloned());
            good.retain(|v| !datagrams(v));
        }
        if valid || (rng.chance(50) && !good.is_empty()) {
            return rng.pick(&good);
        }
        bad.extend([os(""), not_utf8(), os("-1"), os("x"), os(" 5")]);
        rng.pick(&bad)
    }

    /// Options of `table`, each present with some chance, in their table order.
    fn options(
        &self,
        table: &[(&str, Kind)],
        valid: bool,
        rng: &mut Rng,
        case: &Path,
        argv: &mut Vec<OsString>,
    ) {
        for &(name, kind) in table {
            let once = valid && (name.starts_with("-v") || name == "-q");
            if !rng.chance(if valid { 20 } else { 30 })
                || (once && argv.iter().any(|a| a == "-q" || a == "-v" || a == "-vv"))
            {
                continue;
            }
            argv.push(os(name));
            if !matches!(kind, Kind::Flag) {
                argv.push(self.value(kind, valid, rng, case));
            }
        }
    }

    /// One argument vector: half of them with values the options accept (so that runs go
    /// deep), half with any.
    pub fn vector(&self, rng: &mut Rng, case: &Path) -> Vec<OsString> {
        let valid = rng.chance(50);
        let mut argv = Vec::new();
        let command = rng.pick(&[
            "serve",
            "connect",
            "listen",
            "forward",
            "bench",
            "serve",
            "connect",
            "listen",
            "forward",
            "bench",
            "completions",
            "man",
        ]);
        argv.push(os(command));
        match command {
            "serve" => {
                argv.push(self.value(Kind::Word(&SERVICES), valid, rng, case));
                // Always a listener of our choice, never the default :12345.
                argv.push(os("-l"));
                argv.push(self.value(Kind::Listen { streams: false }, valid, rng, case));
                self.options(&SERVER, valid, rng, case, &mut argv);
                self.options(&SERVE, valid, rng, case, &mut argv);
                if !valid || rng.chance(15) {
                    self.options(&TLS_SERVER, valid, rng, case, &mut argv);
                }
                self.options(&ACCESS, valid, rng, case, &mut argv);
                self.options(&LOG, valid, rng, case, &mut argv);
                if argv[1] == "exec" || rng.chance(10) {
                    argv.push(os("--"));
                    argv.push(rng.pick(&[
                        os("cat"),
                        os("/"),
                        os(""),
                        os("no-such-program"),
                        not_utf8(),
                    ]));
                }
            }
            "connect" => {
                self.options(&CONNECT, valid, rng, case, &mut argv);
                self.options(&NETCAT, valid, rng, case, &mut argv);
                if !valid || rng.chance(15) {
                    self.options(&TLS_CLIENT, valid, rng, case, &mut argv);
                }
                if !valid || rng.chance(15) {
                    self.options(&TLS_SERVER[5..], valid, rng, case, &mut argv);
                }
                self.options(&LOG, valid, rng, case, &mut argv);
                let target = self.value(Kind::Target { streams: false }, valid, rng, case);
                bound(&mut argv, &[("--timeout", "1s")]);
                bound_wait(&mut argv, &target, valid);
                argv.push(target);
            }
            "listen" => {
                self.options(&LISTEN, valid, rng, case, &mut argv);
                self.options(&NETCAT, valid, rng, case, &mut argv);
                if !valid || rng.chance(15) {
                    self.options(&TLS_SERVER, valid, rng, case, &mut argv);
                }
                self.options(&ACCESS, valid, rng, case, &mut argv);
                self.options(&LOG, valid, rng, case, &mut argv);
                let endpoint = self.value(Kind::Listen { streams: false }, valid, rng, case);
                bound_wait(&mut argv, &endpoint, valid);
                argv.push(endpoint);
            }
            "forward" => {
                argv.push(os("-l"));
                argv.push(self.value(Kind::Listen { streams: true }, valid, rng, case));
                self.options(&SERVER, valid, rng, case, &mut argv);
                self.options(&FORWARD, valid, rng, case, &mut argv);
                if !valid || rng.chance(15) {
                    self.options(&TLS_SERVER, valid, rng, case, &mut argv);
                }
                if !valid || rng.chance(15) {
                    self.options(&TLS_CLIENT[..3], valid, rng, case, &mut argv);
                }
                if !valid || rng.chance(15) {
                    self.options(&TLS_TARGET, valid, rng, case, &mut argv);
                }
                self.options(&ACCESS, valid, rng, case, &mut argv);
                self.options(&LOG, valid, rng, case, &mut argv);
                if !argv.iter().any(|arg| arg == "--to") {
                    argv.push(os("--to"));
                    argv.push(self.value(Kind::Target { streams: true }, valid, rng, case));
                }
            }
            "completions" => {
                self.options(&LOG, valid, rng, case, &mut argv);
                argv.push(self.value(Kind::Word(&SHELLS), valid, rng, case));
            }
            "man" => self.options(&LOG, valid, rng, case, &mut argv),
            _ => {
                self.options(&BENCH, valid, rng, case, &mut argv);
                if !valid || rng.chance(15) {
                    self.options(&TLS_CLIENT, valid, rng, case, &mut argv);
                }
                if !valid || rng.chance(15) {
                    self.options(&TLS_SERVER[5..], valid, rng, case, &mut argv);
                }
                self.options(&LOG, valid, rng, case, &mut argv);
                bound(
                    &mut argv,
                    &[("-d", "100ms"), ("--warmup", "0"), ("--timeout", "500ms")],
                );
                argv.push(self.value(Kind::Target { streams: false }, valid, rng, case));
            }
        }
        if !valid && rng.chance(5) {
            let at = rng.below(argv.len()) + 1;
            argv.insert(at, rng.pick(&[os("--bogus"), os("-z"), not_utf8()]));
        }
        argv
    }
}

/// Adds each bounding option the vector does not already have.
/// `--wait` bounds a datagram run (udp:, unixgram:, or `-u`) after its stdin ends; on a
/// stream it is a usage error, so a vector of accepted values leaves it out there.
fn bound_wait(argv: &mut Vec<OsString>, endpoint: &OsString, valid: bool) {
    let text = endpoint.to_string_lossy();
    let datagrams = text.starts_with("udp:")
        || text.starts_with("unixgram:")
        || argv.iter().any(|arg| arg == "-u");
    if datagrams {
        bound(argv, &[("--wait", "100ms")]);
    } else if valid && let Some(at) = argv.iter().position(|arg| arg == "--wait") {
        argv.drain(at..(at + 2).min(argv.len()));
    }
}

fn bound(argv: &mut Vec<OsString>, defaults: &[(&str, &str)]) {
    for (name, value) in defaults {
        if !argv.iter().any(|arg| arg == name) {
            argv.push(os(name));
            argv.push(os(value));
        }
    }
}
