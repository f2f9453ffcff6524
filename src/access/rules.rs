//! Allow and deny rules: parsed from options and files, held as two [`CidrSet`]s, swapped
//! whole on reload so that a connection sees either the old rules or the new, never a mix.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use super::cidr_set::{CidrSet, host_network};

/// A rule set's verdict on one source address.
///
/// # Examples
///
/// ```
/// use socketkit::access::AccessRules;
/// let rules = AccessRules::new(
///     ["127.0.0.0/8".parse().unwrap()],
///     ["127.0.0.3/32".parse().unwrap()],
/// );
/// assert!(rules.admits("127.0.0.2".parse().unwrap()));
/// assert!(!rules.admits("127.0.0.3".parse().unwrap()), "a deny always wins");
/// assert!(!rules.admits("10.0.0.1".parse().unwrap()), "with allow rules, only they get in");
/// ```
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    allow: CidrSet,
    deny: CidrSet,
    /// Only `allow`'s sources get in, even when it names none (an allow list that came
    /// out empty shuts everyone out rather than letting everyone in).
    allow_only: bool,
}

impl AccessRules {
    /// Rules from allowed and denied networks: with any allowed network, only those get in.
    pub fn new(
        allow: impl IntoIterator<Item = IpNet>,
        deny: impl IntoIterator<Item = IpNet>,
    ) -> AccessRules {
        let allow: CidrSet = allow.into_iter().collect();
        AccessRules {
            allow_only: !allow.is_empty(),
            allow,
            deny: deny.into_iter().collect(),
        }
    }

    /// Rules that admit only `allow`'s networks, and no one when it is empty: an allow
    /// list read from a file that names no network (emptied, or caught mid-rewrite) shuts
    /// every source out, as ncat's `--allowfile` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use socketkit::access::AccessRules;
    /// let nobody = AccessRules::allow_list([], []);
    /// assert!(!nobody.admits("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn allow_list(
        allow: impl IntoIterator<Item = IpNet>,
        deny: impl IntoIterator<Item = IpNet>,
    ) -> AccessRules {
        AccessRules {
            allow_only: true,
            ..AccessRules::new(allow, deny)
        }
    }

    /// Whether `source` may connect: not denied, and allowed when there is an allow list.
    pub fn admits(&self, source: IpAddr) -> bool {
        !self.deny.contains(source) && (!self.allow_only || self.allow.contains(source))
    }

    /// Whether only an allow list's sources get in and the list names none: every source
    /// is refused.
    pub fn shuts_everyone_out(&self) -> bool {
        self.allow_only && self.allow.is_empty()
    }

    /// How many allow and deny networks the rules hold.
    pub fn len(&self) -> (usize, usize) {
        (self.allow.len(), self.deny.len())
    }

    /// Whether there is no rule at all (everyone is admitted).
    pub fn is_empty(&self) -> bool {
        !self.allow_only && self.deny.is_empty()
    }
}

/// Where rules come from: networks given directly and files read (and re-read) by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSources {
    /// `--allow` networks.
    pub allow: Vec<IpNet>,
    /// `--deny` networks.
    pub deny: Vec<IpNet>,
    /// `--allow-file` paths.
    pub allow_files: Vec<PathBuf>,
    /// `--deny-file` paths.
    pub deny_files: Vec<PathBuf>,
}

impl RuleSources {
    /// Whether no rule source is given.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.allow_files.is_empty()
            && self.deny_files.is_empty()
    }

    /// Reads the files and builds the rules.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, or a line that is not a network (named by file and line).
    pub fn load(&self) -> Result<AccessRules, RuleError> {
        let mut allow = self.allow.clone();
        let mut deny = self.deny.clone();
        for path in &self.allow_files {
            allow.extend(read_rule_file(path)?);
        }
        for path in &self.deny_files {
            deny.extend(read_rule_file(path)?);
        }
        if self.allow_files.is_empty() {
            return Ok(AccessRules::new(allow, deny));
        }
        // An allow file is an allow list even when it names nobody.
        Ok(AccessRules::allow_list(allow, deny))
    }
}

/// A rule that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleError {
    /// A rule file could not be read.
    #[error("cannot read rule file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A rule file is not UTF-8 text.
    #[error("{path}:{line}: not UTF-8 text; a rule file is text")]
    NotText {
        /// The file.
        path: PathBuf,
        /// The first line that is not, from 1.
        line: usize,
    },
    /// A line of a rule file is not a network.
    #[error("{path}:{line}: invalid network '{text}': {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line as written (trimmed; a long one cut, see [`excerpt`](crate::error::excerpt)).
        text: String,
        /// Why, in words.
        reason: String,
    },
}

/// Parses a network: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
///
/// # Errors
///
/// A reason in words: not an address, or a prefix length too long for the family.
///
/// # Examples
///
/// ```
/// use socketkit::access::parse_network;
/// assert_eq!(parse_network("10.1.0.0/16").unwrap().to_string(), "10.1.0.0/16");
/// assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
/// assert!(parse_network("10.0.0.0/33").is_err());
/// ```
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    // Several networks in one value (`10.0.0.0/8,11.0.0.0/8`) read as a prefix length
    // that is not one; said as what they are.
    if text.contains([',', ' ', ';']) {
        return Err(
            "one network per value (give the option again, or one per line of a \
                    rule file)"
                .to_owned(),
        );
    }
    if let Some((address, length)) = text.split_once('/') {
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("'{address}' is not an IP address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        // Digits only: `u8`'s parser takes a leading `+` (`/+8`).
        let length: u8 = Some(length)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|l| l.parse().ok())
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("prefix length must be 0-{max}"))?;
        IpNet::new(address, length).map_err(|_| format!("prefix length must be 0-{max}"))
    } else {
        text.parse::<IpAddr>()
            .map(host_network)
            .map_err(|_| "not an IP address or network (ADDRESS or ADDRESS/LENGTH)".to_owned())
    }
}

/// Reads a rule file: one network per line; blank lines and `#` comments (whole lines or
/// the rest of a line) are skipped.
///
/// # Errors
///
/// The file cannot be read, or a line is not a network: [`RuleError::Line`] names the file
/// and the line.
pub fn read_rule_file(path: &Path) -> Result<Vec<IpNet>, RuleError> {
    // A file that opens but is not text is wrong content, not a failed read.
    let text = crate::option_file::read_text(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::InvalidData => RuleError::NotText {
            path: path.to_owned(),
            line: crate::option_file::not_text_line(&err).unwrap_or(1),
        },
        _ => RuleError::Read {
            path: path.to_owned(),
            reason: crate::error::describe(&err),
        },
    })?;
    let mut networks = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let rule = line.split('#').next().unwrap_or("").trim();
        if rule.is_empty() {
            continue;
        }
        let network = parse_network(rule).map_err(|reason| RuleError::Line {
            path: path.to_owned(),
            line: index + 1,
            text: crate::error::excerpt(rule).into_owned(),
            reason,
        })?;
        networks.push(network);
    }
    Ok(networks)
}

/// Access control as a server runs it: the rules in force, read without a lock on every
/// connection, and the sources to read them again from on reload (SIGHUP).
///
/// # Examples
///
/// ```
/// use socketkit::access::{AccessControl, RuleSources};
/// let sources = RuleSources { deny: vec!["127.0.0.3/32".parse().unwrap()], ..Default::default() };
/// let control = AccessControl::new(sources)?;
/// assert!(control.admits("127.0.0.2".parse().unwrap()));
/// assert!(!control.admits("127.0.0.3".parse().unwrap()));
/// # Ok::<(), socketkit::access::RuleError>(())
/// ```
#[derive(Debug)]
pub struct AccessControl {
    /// None: rules given whole ([`AccessControl::fixed`]), with nothing to read again.
    sources: Option<RuleSources>,
    current: ArcSwap<AccessRules>,
}

impl AccessControl {
    /// Loads the rules of `sources`.
    ///
    /// # Errors
    ///
    /// As [`RuleSources::load`].
    pub fn new(sources: RuleSources) -> Result<AccessControl, RuleError> {
        let rules = sources.load()?;
        Ok(AccessControl {
            sources: Some(sources),
            current: ArcSwap::from_pointee(rules),
        })
    }

    /// Rules given whole, which a reload leaves as they are.
    pub fn fixed(rules: AccessRules) -> AccessControl {
        AccessControl {
            sources: None,
            current: ArcSwap::from_pointee(rules),
        }
    }

    /// Whether `source` may connect under the rules in force.
    pub fn admits(&self, source: IpAddr) -> bool {
        self.current.load().admits(source)
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<AccessRules> {
        self.current.load_full()
    }

    /// Re-reads the files and swaps the new rules in whole. On an error the rules in force
    /// stay as they were.
    ///
    /// # Errors
    ///
    /// As [`RuleSources::load`]; nothing changed.
    pub fn reload(&self) -> Result<(), RuleError> {
        if let Some(sources) = &self.sources {
            let rules = sources.load()?;
            self.current.store(Arc::new(rules));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admits(rules: &AccessRules, address: &str) -> bool {
        rules.admits(address.parse().expect("an address"))
    }

    fn networks(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| parse_network(n).expect("a network"))
            .collect()
    }

    /// Found by an outside audit: a list in one value, and `/+8`, were read as a bad or a
    /// good prefix length.
    #[test]
    fn one_network_per_value_and_a_prefix_length_of_digits() {
        for list in [
            "10.0.0.0/8,11.0.0.0/8",
            "10.0.0.0/8, 11.0.0.0/8",
            "10.0.0.1 10.0.0.2",
        ] {
            let err = parse_network(list).expect_err(list);
            assert!(err.starts_with("one network per value"), "{list}: {err}");
        }
        assert_eq!(
            parse_network("1.2.3.4/+8").unwrap_err(),
            "prefix length must be 0-32"
        );
        assert!(parse_network(" 10.0.0.0/8\t").is_ok());
    }

    #[test]
    fn no_rules_admit_everyone() {
        let rules = AccessRules::default();
        assert!(admits(&rules, "1.2.3.4") && admits(&rules, "::1"));
    }

    #[test]
    fn deny_wins_over_allow_and_slash_zero() {
        let rules = AccessRules::new(networks(&["0.0.0.0/0", "::/0"]), networks(&["127.0.0.3"]));
        assert!(admits(&rules, "127.0.0.2"));
        assert!(!admits(&rules, "127.0.0.3"));
        assert!(
            !admits(&rules, "::ffff:127.0.0.3"),
            "mapped peers match IPv4 rules"
        );
        assert!(admits(&rules, "::1"));
    }

    #[test]
    fn allow_rules_shut_out_the_rest_including_the_other_family() {
        let rules = AccessRules::new(networks(&["127.0.0.2/32"]), []);
        assert!(admits(&rules, "127.0.0.2"));
        assert!(admits(&rules, "::ffff:127.0.0.2"));
        assert!(!admits(&rules, "127.0.0.1"));
        assert!(!admits(&rules, "::1"));
    }

    #[test]
    fn an_allow_file_with_no_network_admits_no_one_and_deny_files_alone_admit_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "# nobody\n").expect("write");
        let allow = RuleSources {
            allow_files: vec![empty.clone()],
            ..Default::default()
        }
        .load()
        .expect("load");
        assert!(allow.shuts_everyone_out() && !allow.is_empty());
        assert!(!admits(&allow, "127.0.0.1"));
        let deny = RuleSources {
            deny_files: vec![empty],
            ..Default::default()
        }
        .load()
        .expect("load");
        assert!(!deny.shuts_everyone_out() && deny.is_empty());
        assert!(admits(&deny, "127.0.0.1"));
    }

    #[test]
    fn networks_parse_with_reasons() {
        assert_eq!(
            parse_network("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_network(" ::/0 ").unwrap().to_string(), "::/0");
        assert_eq!(
            parse_network("::/129").unwrap_err(),
            "prefix length must be 0-128"
        );
        assert_eq!(
            parse_network("1.2.3.4/-1").unwrap_err(),
            "prefix length must be 0-32"
        );
        assert!(
            parse_network("example.com")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(parse_network("").is_err());
        assert!(parse_network("1.2.3.4/").is_err());
    }

    #[test]
    fn files_skip_comments_and_blank_lines_and_name_a_bad_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("good.txt");
        std::fs::write(&good, "# office\n10.0.0.0/8   # all of it\n\n  ::1\n").expect("write");
        assert_eq!(
            read_rule_file(&good).unwrap(),
            networks(&["10.0.0.0/8", "::1"])
        );
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "10.0.0.0/8\n# fine\n10.0.0.0/40\n").expect("write");
        let err = read_rule_file(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: invalid network '10.0.0.0/40': prefix length must be 0-32",
                bad.display()
            )
        );
        let missing = dir.path().join("missing.txt");
        assert!(
            read_rule_file(&missing)
                .unwrap_err()
                .to_string()
                .contains("no such file")
        );
    }

    #[test]
    fn a_reload_that_fails_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("deny.txt");
        std::fs::write(&file, "127.0.0.3\n").expect("write");
        let sources = RuleSources {
            deny_files: vec![file.clone()],
            ..Default::default()
        };
        let control = AccessControl::new(sources).expect("rules load");
        assert!(!control.admits("127.0.0.3".parse().unwrap()));
        std::fs::write(&file, "127.0.0.4\n").expect("write");
        control.reload().expect("reload");
        assert!(control.admits("127.0.0.3".parse().unwrap()));
        assert!(!control.admits("127.0.0.4".parse().unwrap()));
        std::fs::write(&file, "not a network\n").expect("write");
        assert!(control.reload().is_err());
        assert!(
            !control.admits("127.0.0.4".parse().unwrap()),
            "old rules kept"
        );
    }
}
