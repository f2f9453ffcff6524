//! Who may connect, how many at once, how often, and as whom the server runs: allow/deny rules over CIDR networks
//! ([`AccessControl`]), per-source limits ([`SourceLimits`]), dropping root ([`drop_to`]) and the parsers of their
//! options. These are the access-control and per-source stages of a server's connection
//! pipeline (SPEC §3.2); the server runs them on each accepted connection before any byte of
//! the service.
//!
//! Rule lookups cost one hash probe per distinct prefix length in the rules (at most 33 for
//! IPv4, 129 for IPv6), however many rules there are: 100,000 denied hosts cost what one
//! does.

mod cidr_set;
mod per_source;
mod privileges;
mod rules;

pub use cidr_set::CidrSet;
pub(crate) use cidr_set::canonical;
pub use per_source::{MAX_TRACKED_SOURCES, Rate, SourceLimits, SourceRefusal, SourceSlot};
pub(crate) use privileges::account_environment;
pub use privileges::{
    Identity, PrivilegeError, drop_to, may_execute, may_remove, resolve_identity,
};
pub use rules::{
    AccessControl, AccessRules, RuleError, RuleSources, parse_network, read_rule_file,
};
