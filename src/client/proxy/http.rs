//! HTTP's `CONNECT` (RFC 9110 §9.3.6) as steps for a driver ([`super::Step`]): one request
//! naming the target, and the proxy's answer read up to its blank line and no further, for
//! what follows is the target's ([`head_part`] says where the head ends in what a driver
//! peeked).

use std::io;

use base64::Engine;

use super::{Credentials, Receive, Step};
use crate::endpoint::HostPort;

/// The longest answer head taken from a proxy.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// A `CONNECT` handshake for one target.
pub(super) struct HttpConnect<'a> {
    target: &'a HostPort,
    credentials: Option<&'a Credentials>,
    asked: bool,
}

impl<'a> HttpConnect<'a> {
    pub(super) fn new(target: &'a HostPort, credentials: Option<&'a Credentials>) -> Self {
        HttpConnect {
            target,
            credentials,
            asked: false,
        }
    }

    /// The request first; then, given the answer's head, done or why not.
    pub(super) fn next(&mut self, received: &[u8]) -> io::Result<Step> {
        if !self.asked {
            self.asked = true;
            return Ok(Step::Exchange {
                send: self.request().into_bytes(),
                then: Receive::HttpHead,
            });
        }
        self.answer(received).map(|()| Step::Done)
    }

    fn request(&self) -> String {
        // The authority form (`host:port`, an IPv6 address in brackets): the proxy resolves.
        let target = self.target;
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(credentials) = self.credentials {
            let pair = [&credentials.user[..], b":", &credentials.password].concat();
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
        }
        request.push_str("\r\n");
        request
    }

    /// `Ok` for a 2xx answer; else the status in words, with the kind of error it is.
    fn answer(&self, head: &[u8]) -> io::Result<()> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut answer = httparse::Response::new(&mut headers);
        let parsed = answer.parse(head);
        let (Ok(httparse::Status::Complete(_)), Some(code)) = (parsed, answer.code) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's answer is not HTTP",
            ));
        };
        if (200..300).contains(&code) {
            return Ok(());
        }
        let status = format!("HTTP {code} {}", answer.reason.unwrap_or("").trim());
        let status = status.trim_end();
        let denied = |words: &str| io::Error::new(io::ErrorKind::PermissionDenied, words);
        Err(match (code, self.credentials) {
            (407, None) => denied(&format!(
                "the proxy wants a user name and password (http://USER:PASSWORD@HOST): {status}"
            )),
            (407, Some(_)) => denied(&format!(
                "the proxy refused the user name and password: {status}"
            )),
            (401 | 403 | 405, _) => denied(&format!("the proxy refused: {status}")),
            (504, _) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the proxy could not connect: {status}"),
            ),
            (500.., _) => io::Error::other(format!("the proxy could not connect: {status}")),
            _ => io::Error::other(format!("the proxy refused: {status}")),
        })
    }
}

/// How many of the `peeked` bytes, which follow the `head` taken so far, belong to the
/// head: up to the end of its blank line (which may begin in `head`), else all of them.
pub(super) fn head_part(head: &[u8], peeked: &[u8]) -> usize {
    let from = head.len().saturating_sub(3);
    let seen = [&head[from..], peeked].concat();
    match head_end(&seen) {
        // An end within what was taken already was seen before: none here then.
        Some(end) if from + end > head.len() => from + end - head.len(),
        _ => peeked.len(),
    }
}

/// Where the first blank line of `bytes` ends, if it has one: `\r\n\r\n`, or with bare LF
/// line ends (`\n\n`, `\n\r\n`), which some proxies send and ncat and nc accept.
pub(super) fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().find_map(|(at, &byte)| {
        let rest = &bytes[at + 1..];
        match (byte, rest) {
            (b'\n', [b'\n', ..]) => Some(at + 2),
            (b'\n', [b'\r', b'\n', ..]) => Some(at + 3),
            _ => None,
        }
    })
}

/// Whether `head` is whole (ends with its blank line); an error once it has passed
/// [`MAX_HEAD`] without.
pub(super) fn head_is_whole(head: &[u8]) -> io::Result<bool> {
    if head_end(head) == Some(head.len()) {
        return Ok(true);
    }
    if head.len() >= MAX_HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the proxy's answer has no end within 16 KiB",
        ));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_its_blank_line_wherever_the_pieces_fall() {
        let answer = b"HTTP/1.1 200 OK\r\n\r\nbanner";
        for split in 0..answer.len() {
            // What was taken before, and what a peek shows now.
            let (taken, peeked) = answer.split_at(split);
            let head_len = answer.len() - b"banner".len();
            if taken.len() >= head_len {
                continue;
            }
            let part = head_part(taken, peeked);
            assert_eq!(taken.len() + part, head_len, "split at {split}");
        }
        assert_eq!(head_part(b"", b"HTTP/1.1 200"), 12, "no end yet: all of it");
        assert!(!head_is_whole(b"HTTP/1.1 200 OK\r\n").unwrap());
        // Bare LF line ends, as some proxies send them.
        assert!(head_is_whole(b"HTTP/1.0 200 OK\n\n").unwrap());
        assert_eq!(head_part(b"HTTP/1.0 200 OK\n", b"\nbanner"), 1);
        let target = HostPort {
            host: crate::endpoint::Host::Name("t".into()),
            port: 1,
        };
        let connect = HttpConnect::new(&target, None);
        assert!(
            connect
                .answer(b"HTTP/1.0 200 Connection established\n\n")
                .is_ok()
        );
        assert!(head_is_whole(&[b'x'; MAX_HEAD]).is_err());
    }

    proptest::proptest! {
        /// However a proxy's bytes come in pieces, the head taken is exactly what comes
        /// through the first blank line; any answer is read without a panic.
        #[test]
        fn prop_the_head_is_taken_through_its_first_blank_line(
            stream in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'\r'),
                    proptest::prelude::Just(b'\n'),
                    proptest::prelude::any::<u8>(),
                ],
                0..200,
            ),
            pieces in proptest::collection::vec(1usize..20, 1..40),
        ) {
            let end = head_end(&stream);
            let mut head = Vec::new();
            let mut pieces = pieces.iter().cycle();
            while head.len() < stream.len() && !head_is_whole(&head).unwrap_or(true) {
                let at = head.len();
                // What a peek shows: the next piece of what has come.
                let shown = &stream[at..stream.len().min(at + pieces.next().copied().unwrap_or(1))];
                let part = head_part(&head, shown);
                proptest::prop_assert!(part <= shown.len());
                head.extend_from_slice(&shown[..part]);
            }
            match end {
                Some(end) => proptest::prop_assert_eq!(&head[..], &stream[..end]),
                None => proptest::prop_assert_eq!(&head[..], &stream[..]),
            }
            let target = HostPort { host: crate::endpoint::Host::Name("t".into()), port: 1 };
            let _ = HttpConnect::new(&target, None).answer(&stream);
        }
    }

    #[test]
    fn answers_read_as_their_status_says() {
        let target = HostPort {
            host: crate::endpoint::Host::Ip("::1".parse().unwrap()),
            port: 22,
        };
        let mut connect = HttpConnect::new(&target, None);
        let Ok(Step::Exchange { send, .. }) = connect.next(&[]) else {
            panic!("the request first");
        };
        assert!(send.starts_with(b"CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n"));
        assert!(matches!(
            connect.next(b"HTTP/1.0 200 Connection established\r\n\r\n"),
            Ok(Step::Done)
        ));
        let err = connect
            .answer(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the proxy could not connect: HTTP 502 Bad Gateway"
        );
        let err = connect.answer(b"SSH-2.0-x\r\n\r\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
