//! The grammar of [`Endpoint`] (SPEC §2.1), read by its `FromStr`: a scheme or none, then a
//! host and port or a Unix socket path, each refusal with its reason in words.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use super::{Endpoint, EndpointError, Host, HostPort, MAX_UNIX_PATH, Transport};

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(input: &str) -> Result<Endpoint, EndpointError> {
        parse(input).map_err(|reason| EndpointError {
            input: input.to_owned(),
            reason,
        })
    }
}

const SCHEMES: [Transport; 5] = [
    Transport::Tcp,
    Transport::Tls,
    Transport::Udp,
    Transport::Unix,
    Transport::Unixgram,
];

fn parse(input: &str) -> Result<Endpoint, String> {
    if input.is_empty() {
        return Err(
            "empty endpoint (expected HOST:PORT, tls:HOST:PORT, udp:HOST:PORT or unix:PATH)".into(),
        );
    }
    if let Some(reason) = super::socat::refusal(input) {
        return Err(reason);
    }
    let Some((prefix, rest)) = input.split_once(':') else {
        return Err("missing port (expected HOST:PORT)".into());
    };
    if let Some(transport) = SCHEMES.into_iter().find(|t| t.scheme() == prefix) {
        return parse_with_scheme(transport, rest);
    }
    if prefix == "fd" {
        return Err(
            "fd:N names an inherited listening socket, which only a listener takes \
             (serve -l fd:N, listen fd:N; in the library, InheritedSocket)"
                .into(),
        );
    }
    // "name:port" has one colon after the name; a word followed by something that itself
    // holds a colon ("sctp:host:80", "http://host:80") can only be a scheme.
    let word = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphabetic());
    if word && rest.contains(':') {
        return Err(format!(
            "unknown scheme '{prefix}' (expected tcp, tls, udp, unix or unixgram)"
        ));
    }
    parse_host_port(input).map(Endpoint::Tcp)
}

fn parse_with_scheme(transport: Transport, rest: &str) -> Result<Endpoint, String> {
    // `tls:tcp:HOST:PORT` would otherwise read as an IPv6 address without its brackets.
    // (A Unix path may hold a colon; `tcp:fd:N` is host `fd`, which the CLI's listeners
    // refuse with their own words.)
    if !matches!(transport, Transport::Unix | Transport::Unixgram)
        && let Some((second, _)) = rest.split_once(':')
        && SCHEMES.into_iter().any(|t| t.scheme() == second)
    {
        return Err(format!(
            "'{second}:' after '{}:': an endpoint takes one scheme{}",
            transport.scheme(),
            match transport {
                Transport::Tls => " (tls: is TCP with TLS)",
                _ => "",
            }
        ));
    }
    match transport {
        Transport::Tcp => parse_host_port(rest).map(Endpoint::Tcp),
        Transport::Tls => parse_host_port(rest).map(Endpoint::Tls),
        Transport::Udp => parse_host_port(rest).map(Endpoint::Udp),
        Transport::Unix => parse_path(rest).map(Endpoint::Unix),
        Transport::Unixgram => parse_path(rest).map(Endpoint::Unixgram),
    }
}

fn parse_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("empty socket path".into());
    }
    if path.contains('\0') {
        return Err("socket path contains a NUL byte".into());
    }
    // An abstract name takes the leading NUL's byte of `sun_path` in place of the final
    // NUL a path needs, so its `@` is not counted: `@` and 107 bytes fit, as a path of 107.
    // (The `@` form is `socket::abstract_name`'s, read here without the socket layer,
    // which endpoints stand apart from.)
    let len = path.strip_prefix('@').map_or(path.len(), str::len);
    if len > MAX_UNIX_PATH {
        return Err(format!(
            "socket path is {len} bytes, longer than the {MAX_UNIX_PATH} the system allows"
        ));
    }
    Ok(PathBuf::from(path))
}

fn parse_host_port(text: &str) -> Result<HostPort, String> {
    if text.is_empty() {
        return Err("missing HOST:PORT".into());
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        return parse_bracketed(bracketed);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("missing port (expected HOST:PORT)".into());
    };
    if host.contains(':') {
        return Err(unbracketed(text, host, port));
    }
    Ok(HostPort {
        host: parse_host(host)?,
        port: parse_port(port)?,
    })
}

/// What to say of `text`, an IPv6 address written without brackets: the form it should
/// take, when that can be told (`::1:80` read as `::1` and port 80; `::` as an address
/// still missing its port).
fn unbracketed(text: &str, host: &str, port: &str) -> String {
    if host.parse::<Ipv6Addr>().is_ok() && port.parse::<u16>().is_ok() {
        return format!("an IPv6 address must be in brackets, as [{host}]:{port}");
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return format!("an IPv6 address must be in brackets, with a port: [{text}]:PORT");
    }
    "an IPv6 address must be in brackets, as [::1]:80".to_owned()
}

fn parse_bracketed(text: &str) -> Result<HostPort, String> {
    let Some((inside, after)) = text.split_once(']') else {
        return Err("unclosed '[' (expected [IPv6]:PORT)".into());
    };
    if inside.is_empty() {
        return Err("empty IPv6 address in brackets".into());
    }
    let (address, scope) = match inside.split_once('%') {
        Some((address, scope)) => (address, Some(scope)),
        None => (inside, None),
    };
    let ip: Ipv6Addr = address
        .parse()
        .map_err(|_| format!("invalid IPv6 address '{address}'"))?;
    let host = match scope {
        // A zone (`fe80::1%eth0`, `%2`) is the resolver's to turn into a scope id, so the
        // scoped literal stays a name: getaddrinfo(3) knows interface names and numbers.
        Some(scope) => {
            let valid = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
            if scope.is_empty() || !scope.bytes().all(valid) {
                return Err(format!(
                    "invalid IPv6 zone '{scope}' (expected an interface, as %lo)"
                ));
            }
            Host::Name(inside.to_owned())
        }
        None => Host::Ip(IpAddr::V6(ip)),
    };
    let port = match after.strip_prefix(':') {
        Some(port) => parse_port(port)?,
        None if after.is_empty() => return Err("missing port after ']'".into()),
        None => return Err(format!("expected ':' after ']', found '{after}'")),
    };
    Ok(HostPort { host, port })
}

/// Whether the resolver would read `host` as a numeric IPv4 address in one of the
/// shorthands `inet_aton(3)` takes and a dotted quad does not spell (a hexadecimal part,
/// as `0x7f.1` or `0x7f000001`): no name to look up, so refused as an address as `127.1`
/// is, rather than connected to as the address the resolver makes of it.
fn inet_aton_form(host: &str) -> bool {
    // With a final dot too, as `127.0.0.1.` is refused (the resolver would look it up as
    // a name, and find none).
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    let number = |part: &str| match part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()),
    };
    parts.len() <= 4 && parts.iter().all(|part| number(part))
}

fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Ok(Host::Any);
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || inet_aton_form(host) {
        return Err(format!("invalid IPv4 address '{host}'"));
    }
    if host.len() > 253 {
        return Err("host name is longer than 253 characters".into());
    }
    // A fully qualified name's final dot (`example.com.`) ends it, as the resolver reads it.
    let labels = host
        .strip_suffix('.')
        .filter(|name| !name.is_empty())
        .unwrap_or(host);
    for label in labels.split('.') {
        if label.is_empty() && host != "." {
            return Err(format!("empty label in host name '{host}'"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if let Some(bad) = label.chars().find(|&c| !valid(c)) {
            // A control character is shown escaped (`\n`), anything else as written (`é`).
            let shown = if bad.is_control() {
                bad.escape_default().to_string()
            } else {
                bad.to_string()
            };
            return Err(format!("host name '{host}' contains '{shown}'"));
        }
    }
    Ok(Host::Name(host.to_owned()))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("missing port (expected HOST:PORT)".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{port}' is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| "port must be 0-65535".to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn scoped_ipv6_literals_parse_and_print_back() {
        let ep = ok("[fe80::1%lo]:80");
        assert_eq!(ep.to_string(), "tcp:[fe80::1%lo]:80");
        assert_eq!(ok(&ep.to_string()), ep);
        assert!(ok("udp:[fe80::1%2]:53").host_port().is_some());
        assert!("[fe80::1%]:80".parse::<Endpoint>().is_err());
        assert!("[fe80::1%a b]:80".parse::<Endpoint>().is_err());
        assert!("[zz%lo]:80".parse::<Endpoint>().is_err());
    }

    #[test]
    fn abstract_unix_names_round_trip() {
        let ep = ok("unix:@socketkit-test");
        assert_eq!(ep.to_string(), "unix:@socketkit-test");
        assert_eq!(ep.path().map(|p| p.to_str()), Some(Some("@socketkit-test")));
    }

    fn ok(input: &str) -> Endpoint {
        input.parse().unwrap_or_else(|err| panic!("{input}: {err}"))
    }

    fn reason(input: &str) -> String {
        match input.parse::<Endpoint>() {
            Ok(ep) => panic!("{input} parsed as {ep}"),
            Err(err) => err.reason().to_owned(),
        }
    }

    #[test]
    fn the_grammar_and_its_canonical_form() {
        let cases = [
            ("127.0.0.1:80", "tcp:127.0.0.1:80"),
            ("tcp:127.0.0.1:80", "tcp:127.0.0.1:80"),
            ("localhost:0", "tcp:localhost:0"),
            (":12345", "tcp::12345"),
            ("tcp::12345", "tcp::12345"),
            ("[::1]:65535", "tcp:[::1]:65535"),
            ("udp:[::]:53", "udp:[::]:53"),
            ("udp:example.com:7", "udp:example.com:7"),
            ("udp::7", "udp::7"),
            ("unix:/run/app.sock", "unix:/run/app.sock"),
            ("unix:relative.sock", "unix:relative.sock"),
            ("unixgram:/tmp/d.sock", "unixgram:/tmp/d.sock"),
            ("tls:example.com:443", "tls:example.com:443"),
            ("tls:[::1]:0", "tls:[::1]:0"),
            ("tls::8443", "tls::8443"),
            ("unix:/path:with:colons", "unix:/path:with:colons"),
            ("my-host_1.lan:22", "tcp:my-host_1.lan:22"),
        ];
        for (input, canonical) in cases {
            let ep = ok(input);
            assert_eq!(ep.to_string(), canonical, "{input}");
            assert_eq!(ok(canonical), ep, "{canonical} must parse back");
        }
    }

    #[test]
    fn parts_are_reachable() {
        let ep = ok(":0");
        assert_eq!(ep.transport(), Transport::Tcp);
        assert_eq!(ep.host_port().map(|hp| &hp.host), Some(&Host::Any));
        assert_eq!(ok("unixgram:/x").path(), Some(Path::new("/x")));
        assert!(!Transport::Unixgram.is_stream());
        assert!(Transport::Tls.is_stream());
        assert_eq!(ok("tls:127.0.0.1:443").transport(), Transport::Tls);
        assert_eq!(ok("tls:h:443").host_port().map(|hp| hp.port), Some(443));
    }

    #[test]
    fn bad_ports() {
        assert_eq!(reason("localhost:99999"), "port must be 0-65535");
        assert_eq!(reason("localhost:65536"), "port must be 0-65535");
        assert_eq!(
            reason("udp:h:123456789012345678901"),
            "port must be 0-65535"
        );
        assert_eq!(reason("localhost:http"), "port 'http' is not a number");
        assert_eq!(reason("localhost:-1"), "port '-1' is not a number");
        assert_eq!(reason("localhost:+80"), "port '+80' is not a number");
        assert_eq!(reason("localhost:"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("localhost"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("[::1]"), "missing port after ']'");
        assert_eq!(reason("[::1]80"), "expected ':' after ']', found '80'");
    }

    #[test]
    fn two_schemes() {
        assert_eq!(
            reason("tls:tcp:127.0.0.1:1"),
            "'tcp:' after 'tls:': an endpoint takes one scheme (tls: is TCP with TLS)"
        );
        assert_eq!(
            reason("tcp:udp:h:1"),
            "'udp:' after 'tcp:': an endpoint takes one scheme"
        );
        assert_eq!(
            reason("udp:unix:/x:1"),
            "'unix:' after 'udp:': an endpoint takes one scheme"
        );
        assert_eq!(ok("unix:tcp:x").path(), Some(std::path::Path::new("tcp:x")));
    }

    #[test]
    fn bad_hosts() {
        assert_eq!(reason("[::1:80"), "unclosed '[' (expected [IPv6]:PORT)");
        assert_eq!(reason("[]:80"), "empty IPv6 address in brackets");
        assert_eq!(reason("[zz]:80"), "invalid IPv6 address 'zz'");
        assert_eq!(reason("[127.0.0.1]:80"), "invalid IPv6 address '127.0.0.1'");
        assert_eq!(
            reason("::1:80"),
            "an IPv6 address must be in brackets, as [::1]:80"
        );
        assert_eq!(reason("1.2.3.256:80"), "invalid IPv4 address '1.2.3.256'");
        // inet_aton(3)'s shorthands are addresses, not names, whatever their spelling.
        for shorthand in [
            "127.1",
            "2130706433",
            "0177.0.0.1",
            "0x7f.1",
            "0x7f000001",
            "0X7F.0.0.1",
            "0x7f.0.0.1.",
        ] {
            assert_eq!(
                reason(&format!("{shorthand}:80")),
                format!("invalid IPv4 address '{shorthand}'")
            );
        }
        // Names that only look numeric in part are names.
        for name in ["0x7g.1", "1.0xdead.example", "x0.1"] {
            assert_eq!(
                ok(&format!("{name}:80"))
                    .host_port()
                    .map(|hp| hp.host.clone()),
                Some(Host::Name(name.into()))
            );
        }
        assert_eq!(reason("a..b:80"), "empty label in host name 'a..b'");
        assert_eq!(reason(".a:80"), "empty label in host name '.a'");
        assert_eq!(reason("a..:80"), "empty label in host name 'a..'");
        assert_eq!(ok("localhost.:80").to_string(), "tcp:localhost.:80");
        assert_eq!(reason("a b:80"), "host name 'a b' contains ' '");
        assert_eq!(reason("éé:80"), "host name 'éé' contains 'é'");
        assert_eq!(reason("a\tb:80"), "host name 'a\tb' contains '\\t'");
        assert_eq!(
            reason("::"),
            "an IPv6 address must be in brackets, with a port: [::]:PORT"
        );
        assert_eq!(
            reason(":::"),
            "an IPv6 address must be in brackets, as [::1]:80"
        );
        assert_eq!(reason("tcp:"), "missing HOST:PORT");
        assert_eq!(reason("udp:"), "missing HOST:PORT");
        assert_eq!(reason("tls:"), "missing HOST:PORT");
        assert_eq!(reason("tls:host"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("tls:h:99999"), "port must be 0-65535");
    }

    #[test]
    fn bad_schemes_and_paths() {
        assert_eq!(
            reason("sctp:host:80"),
            "unknown scheme 'sctp' (expected tcp, tls, udp, unix or unixgram)"
        );
        assert_eq!(
            reason("http://host:80"),
            "unknown scheme 'http' (expected tcp, tls, udp, unix or unixgram)"
        );
        assert!(reason("").starts_with("empty endpoint"));
        assert_eq!(reason("unix:"), "empty socket path");
        assert_eq!(reason("unixgram:"), "empty socket path");
        let long = format!("unix:/{}", "x".repeat(107));
        assert_eq!(
            reason(&long),
            "socket path is 108 bytes, longer than the 107 the system allows"
        );
        assert_eq!(reason("unix:/a\0b"), "socket path contains a NUL byte");
        // An abstract name's `@` stands for the leading NUL, which takes no byte of the 107.
        let most = format!("unix:@{}", "a".repeat(107));
        assert_eq!(ok(&most).to_string(), most);
        assert_eq!(
            reason(&format!("unixgram:@{}", "a".repeat(108))),
            "socket path is 108 bytes, longer than the 107 the system allows"
        );
    }

    #[test]
    fn fd_is_left_to_inherited_names() {
        assert!(reason("fd:3").starts_with("fd:N names an inherited listening socket"));
        assert_eq!(ok("tcp:fd:3").to_string(), "tcp:fd:3");
    }

    #[test]
    fn error_names_the_input() {
        let err = "tcp:[::1".parse::<Endpoint>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid endpoint 'tcp:[::1': unclosed '[' (expected [IPv6]:PORT)"
        );
    }
}
