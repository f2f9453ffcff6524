//! [`CidrSet`]: a set of IPv4 and IPv6 networks asked "does any network hold this address?"
//! at a cost that depends on how many distinct prefix *lengths* the set has (at most 33 for
//! IPv4, 129 for IPv6), never on how many networks.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A set of networks, one hash set per prefix length and family: a lookup masks the address
/// to each length present and asks that length's set, longest first.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as the IPv4 address they
/// carry, so a dual-stack listener's IPv4 clients match IPv4 rules.
///
/// # Examples
///
/// ```
/// use socketkit::access::CidrSet;
/// let mut set = CidrSet::default();
/// set.insert("10.0.0.0/8".parse().unwrap());
/// set.insert("2001:db8::/32".parse().unwrap());
/// assert!(set.contains("10.1.2.3".parse().unwrap()));
/// assert!(set.contains("::ffff:10.9.9.9".parse().unwrap()));
/// assert!(!set.contains("11.0.0.1".parse().unwrap()));
/// assert!(set.contains("2001:db8::1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CidrSet {
    v4: Family<u32>,
    v6: Family<u128>,
}

/// The networks of one family: per prefix length, the set of masked network addresses.
#[derive(Debug, Clone)]
struct Family<T> {
    /// Indexed by prefix length; empty sets are skipped by `lengths`.
    by_length: Vec<HashSet<T>>,
    /// The prefix lengths that hold a network, longest first.
    lengths: Vec<u8>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            by_length: Vec::new(),
            lengths: Vec::new(),
        }
    }
}

/// The bits of an address family that the set needs: masking to a prefix length.
trait Bits: Copy + Eq + std::hash::Hash {
    const WIDTH: u8;
    fn masked(self, length: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn masked(self, length: u8) -> u32 {
        // A shift by the full width overflows, so /0 is its own case.
        if length == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(length)))
        }
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn masked(self, length: u8) -> u128 {
        if length == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(length)))
        }
    }
}

impl<T: Bits> Family<T> {
    fn insert(&mut self, network: T, length: u8) {
        let length = length.min(T::WIDTH);
        let index = usize::from(length);
        if self.by_length.len() <= index {
            self.by_length.resize_with(index + 1, HashSet::new);
        }
        if self.by_length[index].insert(network.masked(length)) && !self.lengths.contains(&length) {
            self.lengths.push(length);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    fn contains(&self, address: T) -> bool {
        self.lengths
            .iter()
            .any(|&length| self.by_length[usize::from(length)].contains(&address.masked(length)))
    }

    fn len(&self) -> usize {
        self.by_length.iter().map(HashSet::len).sum()
    }
}

impl CidrSet {
    /// Adds a network (host bits beyond its prefix are ignored: `10.1.2.3/8` is `10.0.0.0/8`).
    pub fn insert(&mut self, network: IpNet) {
        match network {
            IpNet::V4(net) => self.insert_v4(net),
            IpNet::V6(net) => match net.addr().to_ipv4_mapped() {
                // ::ffff:0:0/96 and longer are IPv4 networks written the IPv6 way.
                Some(v4) if net.prefix_len() >= 96 => {
                    let v4 = Ipv4Net::new(v4, net.prefix_len() - 96)
                        .unwrap_or_else(|_| Ipv4Net::from(v4));
                    self.insert_v4(v4);
                }
                _ => self.v6.insert(u128::from(net.addr()), net.prefix_len()),
            },
        }
    }

    fn insert_v4(&mut self, net: Ipv4Net) {
        self.v4.insert(u32::from(net.addr()), net.prefix_len());
    }

    /// Whether a network of the set holds `address`.
    pub fn contains(&self, address: IpAddr) -> bool {
        match canonical(address) {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// How many distinct networks the set holds.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.v4.lengths.is_empty() && self.v6.lengths.is_empty()
    }
}

impl FromIterator<IpNet> for CidrSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> CidrSet {
        let mut set = CidrSet::default();
        for network in iter {
            set.insert(network);
        }
        set
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other address as it is.
pub(crate) fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A bare address as the network of just that address (/32 or /128).
pub(crate) fn host_network(address: IpAddr) -> IpNet {
    match address {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn set(networks: &[&str]) -> CidrSet {
        networks
            .iter()
            .map(|n| n.parse().expect("a CIDR"))
            .collect()
    }

    fn has(set: &CidrSet, address: &str) -> bool {
        set.contains(address.parse().expect("an address"))
    }

    #[test]
    fn masks_for_every_ipv4_length() {
        assert_eq!(0xffff_ffff_u32.masked(0), 0);
        assert_eq!(0xffff_ffff_u32.masked(1), 0x8000_0000);
        assert_eq!(0xffff_ffff_u32.masked(24), 0xffff_ff00);
        assert_eq!(0xffff_ffff_u32.masked(32), 0xffff_ffff);
        assert_eq!(u128::MAX.masked(0), 0);
        assert_eq!(u128::MAX.masked(128), u128::MAX);
        assert_eq!(u128::MAX.masked(64), u128::MAX << 64);
    }

    #[test]
    fn slash_zero_holds_every_address_of_its_family() {
        let all_v4 = set(&["0.0.0.0/0"]);
        assert!(has(&all_v4, "1.2.3.4") && has(&all_v4, "255.255.255.255"));
        assert!(has(&all_v4, "::ffff:8.8.8.8"), "mapped addresses are IPv4");
        assert!(!has(&all_v4, "::1"));
        let all_v6 = set(&["::/0"]);
        assert!(has(&all_v6, "::1") && !has(&all_v6, "127.0.0.1"));
    }

    #[test]
    fn host_routes_hold_only_their_address() {
        let hosts = set(&["127.0.0.2/32", "::1/128"]);
        assert!(has(&hosts, "127.0.0.2") && !has(&hosts, "127.0.0.3"));
        assert!(has(&hosts, "::1") && !has(&hosts, "::2"));
    }

    #[test]
    fn mapped_rules_are_ipv4_rules() {
        let mapped = set(&["::ffff:10.0.0.0/104"]);
        assert!(has(&mapped, "10.1.1.1"));
        assert!(!has(&mapped, "11.1.1.1"));
    }

    #[test]
    fn host_bits_beyond_the_prefix_are_ignored() {
        let loose = set(&["10.1.2.3/8"]);
        assert!(has(&loose, "10.200.0.1"));
        assert_eq!(loose.len(), 1);
    }

    #[test]
    fn a_hundred_thousand_hosts_and_one_network() {
        let mut many = CidrSet::default();
        for i in 0..100_000u32 {
            many.insert(IpNet::V4(Ipv4Net::from(Ipv4Addr::from(
                0x0a00_0000 + i * 7,
            ))));
        }
        many.insert("192.168.0.0/16".parse().expect("a CIDR"));
        assert_eq!(many.len(), 100_001);
        assert!(has(&many, "10.0.0.7") && !has(&many, "10.0.0.8"));
        assert!(has(&many, "192.168.4.4"));
    }
}
