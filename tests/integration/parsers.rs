//! Property tests of the library's parsers (endpoints, quote files, CIDR networks, rates,
//! PROXY headers, proxy URLs): they never panic on any input, and what they print parses back to the
//! same value. 4096 cases a test by default;
//! `PROPTEST_CASES=1000000 cargo test --test integration prop_` for a long hunt (see
//! docs/testing.md). The CLI's number and duration parsers have theirs in src/cli/values.rs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use socketkit::access::{Rate, parse_network};
use socketkit::client::proxy::Proxy;
use socketkit::endpoint::{Endpoint, Host, HostPort};
use socketkit::proxy_protocol::{Parsed, ProxyHeader, encode_v1, encode_v2, parse};
use socketkit::services::qotd::{MAX_QUOTE, Qotd};

/// 4096 cases a run unless `PROPTEST_CASES` says otherwise.
fn cases() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 4096;
    }
    config
}

/// Text shaped like endpoints (schemes, brackets, colons, digits, names), where the
/// parser's branches are, rather than mostly-random characters.
fn endpoint_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("tcp:"),
        Just("udp:"),
        Just("unix:"),
        Just("unixgram:"),
        Just("sctp:"),
        Just("TCP:"),
    ];
    let host = prop_oneof![
        Just(String::new()),
        "[a-z0-9.-]{1,20}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "\\[[0-9a-f:.%]{0,40}\\]?",
        "[ -~]{0,12}",
    ];
    let port = prop_oneof!["[0-9]{0,7}", "-?[0-9]{1,3}", "[ -~]{0,4}"];
    (scheme, host, prop::option::of(port)).prop_map(|(scheme, host, port)| match port {
        Some(port) => format!("{scheme}{host}:{port}"),
        None => format!("{scheme}{host}"),
    })
}

/// Any endpoint, built from its parts.
fn endpoint() -> impl Strategy<Value = Endpoint> {
    let host = prop_oneof![
        Just(Host::Any),
        any::<std::net::IpAddr>().prop_map(Host::Ip),
        "[a-z][a-z0-9-]{0,15}(\\.[a-z][a-z0-9-]{0,15}){0,3}".prop_map(Host::Name),
    ];
    let host_port = (host, any::<u16>()).prop_map(|(host, port)| HostPort { host, port });
    let path = "/?[a-zA-Z0-9_./ -]{1,40}".prop_map(std::path::PathBuf::from);
    prop_oneof![
        host_port.clone().prop_map(Endpoint::Tcp),
        host_port.prop_map(Endpoint::Udp),
        path.clone().prop_map(Endpoint::Unix),
        path.prop_map(Endpoint::Unixgram),
    ]
}

/// One quote as a file holds it: lines that are neither blank nor a lone `%`.
fn quote() -> impl Strategy<Value = Vec<String>> {
    let line = "[^\\n\\r]{0,40}".prop_filter("a quote line is not blank and not %", |line| {
        // Nor a byte order mark first: one at the start of the file is dropped.
        !line.trim().is_empty() && line.trim() != "%" && !line.starts_with('\u{feff}')
    });
    prop::collection::vec(line, 1..5)
}

/// Text shaped like proxy URLs: schemes, credentials with '@', ':' and escapes, hosts and
/// ports, a trailing path.
fn proxy_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("http://"),
        Just("socks5://"),
        Just("SOCKS5H://"),
        Just("socks4://"),
        Just("x://"),
    ];
    let credentials = prop_oneof![Just(String::new()), "[a-z%0-9:@]{0,12}@"];
    let host = prop_oneof!["[a-z0-9.-]{0,20}", "\\[[0-9a-f:]{0,20}\\]", "[ -~]{0,10}"];
    let port = prop_oneof![Just(String::new()), ":[0-9]{0,6}"];
    let path = prop_oneof![Just(""), Just("/"), Just("/x")];
    (scheme, credentials, host, port, path).prop_map(|(scheme, credentials, host, port, path)| {
        format!("{scheme}{credentials}{host}{port}{path}")
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn prop_endpoints_never_panic_on_any_text(text in any::<String>()) {
        let _ = text.parse::<Endpoint>();
    }

    #[test]
    fn prop_endpoints_never_panic_on_any_bytes(bytes in any::<Vec<u8>>()) {
        let _ = String::from_utf8_lossy(&bytes).parse::<Endpoint>();
    }

    #[test]
    fn prop_endpoint_like_text_parses_to_what_it_prints(text in endpoint_like()) {
        if let Ok(endpoint) = text.parse::<Endpoint>() {
            let printed = endpoint.to_string();
            prop_assert_eq!(printed.parse::<Endpoint>(), Ok(endpoint), "{} printed as {}", text, printed);
        }
    }

    #[test]
    fn prop_every_endpoint_round_trips(endpoint in endpoint()) {
        let printed = endpoint.to_string();
        prop_assert_eq!(printed.parse::<Endpoint>(), Ok(endpoint), "{}", printed);
    }

    #[test]
    fn prop_proxy_urls_never_panic(text in any::<String>()) {
        let _ = text.parse::<Proxy>();
    }

    #[test]
    fn prop_proxy_urls_print_what_parses_back(text in proxy_like()) {
        if let Ok(proxy) = text.parse::<Proxy>() {
            // The printed form leaves the credentials out; the rest is the same.
            let printed = proxy.to_string();
            let again: Proxy = printed.parse().map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
            prop_assert_eq!((again.kind(), again.server()), (proxy.kind(), proxy.server()), "{}", text);
            prop_assert!(!printed.contains('@'), "{}", printed);
        }
    }

    #[test]
    fn prop_quote_files_never_panic(text in any::<String>()) {
        let _ = Qotd::from_text(&text, "fuzz");
    }

    #[test]
    fn prop_quote_files_round_trip(
        quotes in prop::collection::vec(quote(), 1..8),
        fortune in any::<bool>(),
    ) {
        let separator = if fortune { "\n%\n" } else { "\n\n" };
        let file: Vec<String> = quotes.iter().map(|lines| lines.join("\n")).collect();
        let text = file.join(separator);
        let served: Vec<Vec<u8>> = quotes
            .iter()
            .map(|lines| format!("{}\r\n", lines.join("\r\n")).into_bytes())
            .collect();
        match Qotd::from_text(&text, "fuzz") {
            Ok(qotd) => {
                prop_assert_eq!(qotd.len(), served.len());
                for quote in &served {
                    prop_assert_eq!(qotd.next_quote(), quote.as_slice());
                }
            }
            Err(_) => prop_assert!(served.iter().any(|q| q.len() >= MAX_QUOTE)),
        }
    }

    #[test]
    fn prop_networks_never_panic(text in any::<String>()) {
        let _ = parse_network(&text);
    }

    #[test]
    fn prop_networks_round_trip(ip in any::<IpAddr>(), length in 0u8..=128, bare in any::<bool>()) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let text = if bare { ip.to_string() } else { format!("{ip}/{length}") };
        match parse_network(&text) {
            Ok(net) => {
                prop_assert!(bare || length <= max, "{} accepted", text);
                let printed = net.to_string();
                prop_assert_eq!(parse_network(&printed), Ok(net), "{} printed as {}", text, printed);
            }
            Err(_) => prop_assert!(!bare && length > max, "{} refused", text),
        }
    }

    #[test]
    fn prop_rates_never_panic(text in any::<String>()) {
        let _ = text.parse::<Rate>();
    }

    #[test]
    fn prop_rates_round_trip(count in 1u32.., secs in 0u64..=10 * 365 * 86_400, nanos in 0u32..1_000_000_000) {
        let per = Duration::new(secs, nanos);
        prop_assume!(!per.is_zero());
        let rate = Rate { count, per };
        let printed = rate.to_string();
        prop_assert_eq!(printed.parse::<Rate>(), Ok(rate), "{}", printed);
    }

    #[test]
    fn prop_proxy_headers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2100)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn prop_proxy_header_like_bytes_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..300),
        v2 in any::<bool>(),
    ) {
        let mut bytes = if v2 {
            b"\r\n\r\n\0\r\nQUIT\n".to_vec()
        } else {
            b"PROXY ".to_vec()
        };
        bytes.extend(tail);
        let _ = parse(&bytes);
    }

    #[test]
    fn prop_proxy_headers_round_trip(
        (source, destination) in prop_oneof![
            (any::<std::net::Ipv4Addr>(), any::<std::net::Ipv4Addr>())
                .prop_map(|(a, b)| (IpAddr::V4(a), IpAddr::V4(b))),
            (any::<std::net::Ipv6Addr>(), any::<std::net::Ipv6Addr>())
                .prop_map(|(a, b)| (IpAddr::V6(a), IpAddr::V6(b))),
        ],
        ports in any::<(u16, u16)>(),
        v2 in any::<bool>(),
        after in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let source = SocketAddr::new(source, ports.0);
        let destination = SocketAddr::new(destination, ports.1);
        let header = if v2 { encode_v2(source, destination) } else { encode_v1(source, destination) };
        let mut bytes = header.clone();
        bytes.extend(&after);
        // Two IPv4-mapped addresses are an IPv4 connection, written and read back as one.
        let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let (source, destination) = match (canonical(source), canonical(destination)) {
            (s, d) if s.is_ipv4() && d.is_ipv4() => (s, d),
            _ => (source, destination),
        };
        let expected = Parsed::Complete {
            header: ProxyHeader::Proxied { source, destination },
            len: header.len(),
        };
        prop_assert_eq!(parse(&bytes), Ok(expected));
        // Every proper beginning of a header asks for more, never fails.
        for cut in 0..header.len() {
            prop_assert_eq!(parse(&header[..cut]), Ok(Parsed::Incomplete), "cut at {}", cut);
        }
    }
}
