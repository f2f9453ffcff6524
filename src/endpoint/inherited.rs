//! [`InheritedName`]: how a listener names a socket it inherits (`fd:N`, `fd:NAME`), which
//! the endpoint grammar leaves out.

use std::fmt;

use super::EndpointError;

/// An inherited listening socket as a listener names it (SPEC §3.4): `fd:N`, the
/// descriptor number, or `fd:NAME`, the name socket activation gave it (systemd's
/// `FileDescriptorName=`, passed in `LISTEN_FDNAMES`). It is not an
/// [`Endpoint`](super::Endpoint): where it listens is known only once the socket is
/// inherited.
///
/// # Examples
///
/// ```
/// use socketkit::endpoint::InheritedName;
/// assert_eq!(InheritedName::parse("fd:3"), Some(Ok(InheritedName::Number(3))));
/// assert_eq!(InheritedName::parse("fd:web").and_then(Result::ok).map(|n| n.to_string()),
///            Some("fd:web".to_owned()));
/// assert_eq!(InheritedName::parse("tcp:web:80"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InheritedName {
    /// `fd:N`: descriptor N.
    Number(i32),
    /// `fd:NAME`: the sockets named NAME.
    Name(String),
}

impl InheritedName {
    /// `Some` when `text` is an `fd:` endpoint (checked), `None` for any other text.
    ///
    /// # Errors
    ///
    /// An `fd:` endpoint with no number or name, or a name systemd would not give (longer
    /// than 255 bytes, or with `:` or a control character).
    pub fn parse(text: &str) -> Option<Result<InheritedName, EndpointError>> {
        let rest = text.strip_prefix("fd:")?;
        let error = |reason: String| EndpointError {
            input: text.to_owned(),
            reason,
        };
        Some(if rest.is_empty() {
            Err(error(
                "missing descriptor number or name after 'fd:'".into(),
            ))
        } else if rest.bytes().all(|b| b.is_ascii_digit()) {
            rest.parse()
                .map(InheritedName::Number)
                .map_err(|_| error(format!("descriptor number {rest} is too large")))
        } else if rest.len() > 255 {
            Err(error("a descriptor name is at most 255 bytes".into()))
        } else if let Some(bad) = rest.chars().find(|&c| c == ':' || c.is_control()) {
            Err(error(format!(
                "a descriptor name cannot contain '{}'",
                bad.escape_default()
            )))
        } else {
            Ok(InheritedName::Name(rest.to_owned()))
        })
    }
}

impl fmt::Display for InheritedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritedName::Number(fd) => write!(f, "fd:{fd}"),
            InheritedName::Name(name) => write!(f, "fd:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_sockets_are_named_apart_from_endpoints() {
        let parse =
            |text: &str| InheritedName::parse(text).map(|r| r.map_err(|e| e.reason().to_owned()));
        assert_eq!(parse("fd:0"), Some(Ok(InheritedName::Number(0))));
        assert_eq!(
            parse("fd:admin"),
            Some(Ok(InheritedName::Name("admin".into())))
        );
        assert_eq!(
            parse("fd:"),
            Some(Err("missing descriptor number or name after 'fd:'".into()))
        );
        assert_eq!(
            parse("fd:99999999999"),
            Some(Err("descriptor number 99999999999 is too large".into()))
        );
        assert_eq!(
            parse("fd:a:b"),
            Some(Err("a descriptor name cannot contain ':'".into()))
        );
        assert_eq!(
            parse(&format!("fd:{}", "x".repeat(256))),
            Some(Err("a descriptor name is at most 255 bytes".into()))
        );
        assert_eq!(parse("127.0.0.1:3"), None);
        assert_eq!(InheritedName::Name("web".into()).to_string(), "fd:web");
    }
}
