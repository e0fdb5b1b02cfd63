//! Networks of addresses (`10.0.0.0/8`, `2001:db8::/32`, or one address) and finding the client
//! behind proxies that are trusted to say who it is (`X-Forwarded-For`, `Forwarded`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address and how many of its leading bits are the network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid network {0:?}: give an address (10.0.0.7) or an address and prefix (10.0.0.0/8, fd00::/8)"
)]
pub struct IpNetworkError(String);

impl IpNetwork {
    /// Whether `address` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || IpNetworkError(s.chars().take(100).collect());
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address = IpAddr::from_str(address)
            .map_err(|_| invalid())?
            .to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
            None => bits,
        };
        if prefix > bits {
            return Err(invalid());
        }
        Ok(IpNetwork { address, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl serde::Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The client of a request that came from `peer`, given the request's forwarding headers
/// (`Forwarded`, else `X-Forwarded-For`, each possibly several times), believed only as far as
/// they were written by `trusted` proxies: from the peer backwards, each hop that is a trusted
/// proxy passes on what it was told, and the first that is not is the client. A header from
/// anybody else, or a hop that cannot be read, changes nothing past that point: a forged header
/// grants nothing.
pub fn client_behind_proxies(
    peer: IpAddr,
    trusted: &[IpNetwork],
    forwarded: &[&str],
    x_forwarded_for: &[&str],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |address: IpAddr| trusted.iter().any(|n| n.contains(address));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = if !forwarded.is_empty() {
        forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(forwarded_for)
            .collect()
    } else {
        x_forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(|hop| IpAddr::from_str(hop.trim()).ok())
            .collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(address) => {
                client = address.to_canonical();
                if !is_trusted(client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The address of one element of a `Forwarded` header (`for=192.0.2.60;proto=http`,
/// `for="[2001:db8::1]:4711"`), if it names one.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value.trim_matches('"');
    let host = match value.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => value.split(':').next()?,
    };
    IpAddr::from_str(host).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks(list: &[&str]) -> Vec<IpNetwork> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let one: IpNetwork = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNetwork = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let trusted = networks(&["10.0.0.0/8"]);
        // A client that is not a proxy: its header is ignored.
        assert_eq!(
            client_behind_proxies(ip("203.0.113.9"), &trusted, &[], &["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // Through a trusted proxy: the address it was connected from.
        assert_eq!(
            client_behind_proxies(ip("10.0.0.2"), &trusted, &[], &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // A forged first hop before an untrusted one is not believed: the right-most untrusted
        // address is the client.
        assert_eq!(
            client_behind_proxies(
                ip("10.0.0.2"),
                &trusted,
                &[],
                &["6.6.6.6, 198.51.100.1", "10.0.0.3"]
            ),
            ip("198.51.100.1")
        );
        // An unreadable hop stops the walk at the last proxy.
        assert_eq!(
            client_behind_proxies(ip("10.0.0.2"), &trusted, &[], &["garbage"]),
            ip("10.0.0.2")
        );
        // Forwarded wins over X-Forwarded-For.
        assert_eq!(
            client_behind_proxies(
                ip("10.0.0.2"),
                &trusted,
                &[r#"for="[2001:db8::1]:4711";proto=https"#],
                &["198.51.100.1"]
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_behind_proxies(
                ip("10.0.0.2"),
                &trusted,
                &["for=192.0.2.60;proto=http, for=10.1.1.1"],
                &[]
            ),
            ip("192.0.2.60")
        );
    }
}
