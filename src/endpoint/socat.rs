//! socat's address words (`TCP4:HOST:PORT`, `UNIX-CONNECT:PATH`, `STDIO`…) and our schemes
//! in upper case (`TCP:`), which are no endpoints here: each is refused naming socketkit's
//! form, rather than misread as an IPv6 address, a host or a port.
//!
//! A plain word before a bare port (`proxy:3128`, `TCP:80`) stays a host, as it always was;
//! a word with a hyphen (`TCP-LISTEN:8080`) is socat's whatever follows, and
//! `tcp:TCP-LISTEN:8080` is still the host of that name.

/// socat's words (lower case), and what each is written as here.
const WORDS: [(&[&str], &str); 13] = [
    (&["tcp-connect"], "tcp:HOST:PORT, or HOST:PORT"),
    (
        &["tcp4", "tcp6", "tcp4-connect", "tcp6-connect"],
        "tcp:HOST:PORT, with -4 or -6 on connect and listen for the family",
    ),
    (
        &[
            "tcp-listen",
            "tcp4-listen",
            "tcp6-listen",
            "tcp-l",
            "tcp4-l",
            "tcp6-l",
        ],
        ":PORT or HOST:PORT, given to listen, serve -l or forward -l",
    ),
    (
        &["udp-connect", "udp-sendto", "udp-datagram"],
        "udp:HOST:PORT",
    ),
    (
        &[
            "udp4",
            "udp6",
            "udp4-connect",
            "udp6-connect",
            "udp4-sendto",
            "udp6-sendto",
        ],
        "udp:HOST:PORT, with -4 or -6 on connect and listen for the family",
    ),
    (
        &[
            "udp-listen",
            "udp4-listen",
            "udp6-listen",
            "udp-l",
            "udp-recv",
            "udp-recvfrom",
        ],
        "udp::PORT or udp:HOST:PORT, given to listen, serve -l or forward -l",
    ),
    (&["unix-connect", "unix-client"], "unix:PATH"),
    (
        &["unix-listen", "unix-l"],
        "unix:PATH, given to listen, serve -l or forward -l",
    ),
    (
        &["unix-sendto", "unix-recv", "unix-recvfrom"],
        "unixgram:PATH",
    ),
    (
        &["abstract-connect", "abstract-client", "abstract-listen"],
        "unix:@NAME",
    ),
    (&["openssl", "openssl-connect", "ssl"], "tls:HOST:PORT"),
    (
        &["openssl-listen"],
        "tls::PORT, given to listen, serve -l or forward -l with --tls-cert and --tls-key",
    ),
    (
        &["socks4", "socks4a", "socks5", "proxy", "proxy-connect"],
        "the target as HOST:PORT and --proxy URL (connect, forward)",
    ),
];

/// Our schemes and their forms, for one written in another case.
const OURS: [(&str, &str); 5] = [
    ("tcp", "tcp:HOST:PORT"),
    ("tls", "tls:HOST:PORT"),
    ("udp", "udp:HOST:PORT"),
    ("unix", "unix:PATH"),
    ("unixgram", "unixgram:PATH"),
];

/// socat's words for the standard streams, written alone.
const STDIO: [&str; 4] = ["stdio", "stdin", "stdout", "-"];

/// Why `input` is refused, when it is one of socat's addresses or one of our schemes in
/// another case; `None` leaves it to the grammar.
pub(super) fn refusal(input: &str) -> Option<String> {
    let lower = input.to_ascii_lowercase();
    if STDIO.contains(&lower.as_str()) {
        return Some(format!(
            "socat's '{input}' (standard input and output): connect and listen bridge stdin \
             and stdout themselves, so name only the other end"
        ));
    }
    let (word, rest) = input.split_once(':')?;
    let lower = word.to_ascii_lowercase();
    // A plain word before a port alone is a host (`proxy:3128`).
    let port_alone = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    if port_alone && !word.contains('-') {
        return None;
    }
    if let Some((scheme, form)) = OURS.into_iter().find(|(scheme, _)| *scheme == lower) {
        if scheme == word {
            return None;
        }
        return Some(format!(
            "unknown scheme '{word}' (schemes are lower case: {form})"
        ));
    }
    let (_, form) = WORDS
        .iter()
        .find(|(words, _)| words.contains(&lower.as_str()))?;
    Some(format!("unknown scheme '{word}' (socat's; here {form})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(input: &str, text: &str) {
        let reason = refusal(input).unwrap_or_default();
        assert!(reason.contains(text), "{input}: {reason}");
    }

    #[test]
    fn socat_words_name_the_form_here() {
        says(
            "tcp4:127.0.0.1:9",
            "'tcp4' (socat's; here tcp:HOST:PORT, with -4 or -6",
        );
        says("TCP6:[::1]:9", "'TCP6' (socat's; here tcp:HOST:PORT");
        says("udp4:127.0.0.1:9", "here udp:HOST:PORT, with -4 or -6");
        says("UNIX-CONNECT:/tmp/x.sock", "here unix:PATH");
        says("UNIX-LISTEN:/tmp/x.sock", "unix:PATH, given to listen");
        says(
            "TCP-LISTEN:8080",
            "here :PORT or HOST:PORT, given to listen",
        );
        says("OPENSSL:example.com:443", "here tls:HOST:PORT");
        says("OPENSSL-LISTEN:4433", "--tls-cert");
        says(
            "STDIO",
            "socat's 'STDIO' (standard input and output): connect and listen",
        );
        says("-", "socat's '-'");
    }

    #[test]
    fn our_schemes_in_another_case_name_the_lower_case() {
        says(
            "TCP:127.0.0.1:9",
            "'TCP' (schemes are lower case: tcp:HOST:PORT)",
        );
        says("Udp:h:53", "udp:HOST:PORT");
        says("UNIX:/tmp/x", "unix:PATH");
    }

    #[test]
    fn hosts_and_our_schemes_are_left_alone() {
        for input in [
            "proxy:3128",
            "TCP:80",
            "tcp4:80",
            "tcp:1.2.3.4:5",
            "unix:/x",
            "h:1",
        ] {
            assert_eq!(refusal(input), None, "{input}");
        }
    }
}
