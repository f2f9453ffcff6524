//! Server names as a TLS client asks for them (SNI), looked up as web servers and HAProxy
//! do: the exact name first, then a wildcard that stands for one label (`*.example.com`
//! answers `shop.example.com`, not `example.com` nor `a.b.example.com`), without regard to
//! case. Used to choose a listener's certificate and a relay's target by name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// Values found by server name: exact names and one-label wildcards.
#[derive(Debug, Clone)]
pub(crate) struct ServerNames<T> {
    /// Exact names, lower case.
    exact: HashMap<String, T>,
    /// Wildcard names by the part after `*.`, lower case.
    wildcard: HashMap<String, T>,
}

impl<T> Default for ServerNames<T> {
    fn default() -> ServerNames<T> {
        ServerNames {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> ServerNames<T> {
    /// Files `value` under `pattern` (a name, or `*.` and a name), unless the pattern has a
    /// value already: then it keeps the first, and `false` says so.
    pub(crate) fn insert(&mut self, pattern: &str, value: T) -> bool {
        let pattern = pattern.to_ascii_lowercase();
        let entry = match pattern.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()),
            None => self.exact.entry(pattern),
        };
        match entry {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(value);
                true
            }
        }
    }

    /// The value for a client that asked for `name`: under the name itself, else under
    /// the wildcard of its parent.
    pub(crate) fn get(&self, name: &str) -> Option<&T> {
        // rustls hands the name over in lower case already: a copy only for other callers.
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        self.exact.get(name.as_ref()).or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        })
    }

    /// The value filed under `pattern` itself (a name, or `*.` and a name): no wildcard
    /// stands in for a name here.
    pub(crate) fn pattern(&self, pattern: &str) -> Option<&T> {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(parent) => self.wildcard.get(parent),
            None => self.exact.get(&pattern),
        }
    }

    /// The value filed under `pattern` itself, to change it.
    pub(crate) fn pattern_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(parent) => self.wildcard.get_mut(parent),
            None => self.exact.get_mut(&pattern),
        }
    }

    /// Every pattern and its value, wildcards as `*.parent`, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        let exact = self.exact.iter().map(|(name, value)| (name.clone(), value));
        let wildcard = (self.wildcard.iter()).map(|(parent, value)| (format!("*.{parent}"), value));
        exact.chain(wildcard)
    }

    /// Every value, mutably.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.exact.values_mut().chain(self.wildcard.values_mut())
    }
}

/// A server name pattern that no client could ask for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidServerName {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for InvalidServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid server name {:?}: {}", self.pattern, self.reason)
    }
}

/// Checks that `pattern` is a DNS name a client can send as its SNI (letters, digits and
/// hyphens in dot-separated labels of at most 63 characters, 253 in all, no IP address:
/// clients send no SNI for one), or `*.` followed by such a name.
///
/// # Errors
///
/// Anything else, with the reason.
pub fn check_server_name(pattern: &str) -> Result<(), InvalidServerName> {
    let invalid = |reason| InvalidServerName {
        pattern: pattern.to_owned(),
        reason,
    };
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 253 {
        return Err(invalid("a DNS name has at most 253 characters"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid(
            "an IP address is not a server name (clients send none for an address)",
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("each label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        {
            return Err(invalid(
                "a name holds letters, digits, hyphens and dots (a wildcard only as its first label, *.)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_first_then_a_wildcard_for_one_label_in_any_case() {
        let mut names = ServerNames::default();
        assert!(names.insert("Shop.Example.com", 1));
        assert!(names.insert("*.example.com", 2));
        assert!(!names.insert("shop.example.com", 3), "the first keeps it");
        assert_eq!(names.pattern("*.Example.com"), Some(&2));
        assert_eq!(names.pattern("api.example.com"), None);
        assert_eq!(names.get("SHOP.example.COM"), Some(&1));
        assert_eq!(names.get("api.example.com"), Some(&2));
        assert_eq!(names.get("a.b.example.com"), None);
        assert_eq!(names.get("example.com"), None);
        let mut patterns: Vec<_> = names.iter().map(|(name, &v)| (name, v)).collect();
        patterns.sort();
        assert_eq!(
            patterns,
            [
                ("*.example.com".to_owned(), 2),
                ("shop.example.com".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn patterns_are_dns_names_or_one_leading_wildcard() {
        for good in ["example.com", "*.example.com", "localhost", "a-b.c_d.test"] {
            assert_eq!(check_server_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "shop.*.example.com",
            "*example.com",
            "exa mple.com",
            "127.0.0.1",
            "::1",
            "example.com.",
        ] {
            assert!(check_server_name(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.test", "a".repeat(64));
        assert!(check_server_name(&long).is_err());
    }
}
