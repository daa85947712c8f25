//! One CIDR type: [`IpNet`] (an address and a prefix length, host bits
//! cleared), its parser in the rules' SPEC form ([`parse_net`]: IPv6 in
//! brackets, `10.0.0.0/8`, `[fd00::]/8`), a lenient form for free text
//! ([`parse_net_lenient`]: brackets optional), and [`IpNet::contains`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address and a prefix length; host bits are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

fn mask4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl IpNet {
    /// The network of `addr`/`prefix` (host bits cleared); None if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask4(prefix))),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask6(prefix))),
            _ => return None,
        };
        Some(IpNet { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// 32 for IPv4, 128 for IPv6.
    pub fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// Is `a` in this network? (An IPv4 address is never in an IPv6 network, nor the reverse.)
    pub fn contains(&self, a: IpAddr) -> bool {
        match (a, self.addr) {
            (IpAddr::V4(a), IpAddr::V4(n)) => u32::from(a) & mask4(self.prefix) == u32::from(n),
            (IpAddr::V6(a), IpAddr::V6(n)) => u128::from(a) & mask6(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}")?,
            IpAddr::V6(a) => write!(f, "[{a}]")?,
        }
        if self.prefix != self.max_prefix() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let s = String::deserialize(d)?;
        parse_net(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a network does not parse; the message reads after the text it is about
/// (`` `10.0.0.0/33` has prefix length `33`, expected 0..=32 ``).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("has no closing `]`")]
    NoClosingBracket,
    #[error("has `{0}` after `]` (expected /LEN)")]
    AfterBracket(String),
    #[error("has two prefix lengths")]
    TwoPrefixes,
    #[error("`{0}` is not an IPv6 address")]
    NotIpv6(String),
    #[error("is not an IPv4 address (write IPv6 addresses in brackets: [::1], [fd00::]/8)")]
    Ipv6WithoutBrackets,
    #[error("`{0}` is not an IPv4 address")]
    NotIpv4(String),
    #[error("has prefix length `{text}`, expected 0..={max}")]
    BadPrefix { text: String, max: u8 },
}

impl NetError {
    /// The message as a phrase that follows `input` (the text that was parsed),
    /// e.g. "`300.1.1.1` is not an IPv4 address", without naming the
    /// address a second time when it is the whole input.
    pub fn after(&self, input: &str) -> String {
        match self {
            NetError::NotIpv4(a) if a == input => "is not an IPv4 address".into(),
            NetError::NotIpv6(a) if a == input => "is not an IPv6 address".into(),
            NetError::NotIpv4(a) => format!("has `{a}`, which is not an IPv4 address"),
            NetError::NotIpv6(a) => format!("has `{a}`, which is not an IPv6 address"),
            other => other.to_string(),
        }
    }
}

/// Parse `10.0.0.0/8`, `1.2.3.4`, `[::1]`, `[fd00::]/8` or `[fd00::/8]`
/// (IPv6 in brackets, as in the rules' SPEC where `:` separates parts).
pub fn parse_net(s: &str) -> Result<IpNet, NetError> {
    let (addr_s, prefix_s) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(NetError::NoClosingBracket)?;
        match (inside.split_once('/'), after) {
            (Some((a, p)), "") => (a, Some(p)),
            (None, "") => (inside, None),
            (None, after) => match after.strip_prefix('/') {
                Some(p) => (inside, Some(p)),
                None => return Err(NetError::AfterBracket(after.into())),
            },
            (Some(_), _) => return Err(NetError::TwoPrefixes),
        }
    } else {
        match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    let addr: IpAddr = if s.starts_with('[') {
        addr_s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| NetError::NotIpv6(addr_s.into()))?
    } else {
        addr_s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
            if addr_s.contains(':') {
                NetError::Ipv6WithoutBrackets
            } else {
                NetError::NotIpv4(addr_s.into())
            }
        })?
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_s {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && !p.starts_with('+') => n,
            _ => return Err(NetError::BadPrefix { text: p.into(), max }),
        },
    };
    // The prefix is at most `max`, so `new` cannot refuse it.
    IpNet::new(addr, prefix).ok_or(NetError::BadPrefix { text: prefix.to_string(), max })
}

/// [`parse_net`], also taking IPv6 without brackets (`::1`, `fd00::/8`), for
/// free text where `:` separates nothing.
pub fn parse_net_lenient(s: &str) -> Result<IpNet, NetError> {
    if s.starts_with('[') || !s.contains(':') {
        return parse_net(s);
    }
    match s.split_once('/') {
        Some((a, p)) => parse_net(&format!("[{a}]/{p}")),
        None => parse_net(&format!("[{s}]")),
    }
}

impl std::str::FromStr for IpNet {
    type Err = NetError;
    /// [`parse_net_lenient`].
    fn from_str(s: &str) -> Result<IpNet, NetError> {
        parse_net_lenient(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(n("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(n("1.2.3.4").to_string(), "1.2.3.4");
        assert_eq!(n("[::1]").to_string(), "[::1]");
        assert_eq!(n("[fd00::1]/8").to_string(), "[fd00::]/8");
        assert_eq!(n("[fd00::1/8]").to_string(), "[fd00::]/8");
        assert_eq!(parse_net("::1"), Err(NetError::Ipv6WithoutBrackets));
        assert_eq!(parse_net("10.0.0.0/33"), Err(NetError::BadPrefix { text: "33".into(), max: 32 }));
        assert_eq!(parse_net("10.0.0.0/+8"), Err(NetError::BadPrefix { text: "+8".into(), max: 32 }));
        assert_eq!(parse_net("[::1"), Err(NetError::NoClosingBracket));
        assert_eq!(parse_net("[::1]x"), Err(NetError::AfterBracket("x".into())));
        assert_eq!(parse_net("[::1/8]/9"), Err(NetError::TwoPrefixes));
        assert_eq!(parse_net("[1.2.3.4]"), Err(NetError::NotIpv6("1.2.3.4".into())));
        assert_eq!(parse_net("10.0.0"), Err(NetError::NotIpv4("10.0.0".into())));
        // Said once, after the text it is about.
        assert_eq!(parse_net("300.1.1.1").unwrap_err().after("300.1.1.1"), "is not an IPv4 address");
        assert_eq!(parse_net("10.0.0/8").unwrap_err().after("10.0.0/8"), "has `10.0.0`, which is not an IPv4 address");
        assert_eq!(parse_net("10.0.0.0/33").unwrap_err().to_string(), "has prefix length `33`, expected 0..=32");
        assert_eq!(parse_net_lenient("fd00::1/8").unwrap().to_string(), "[fd00::]/8");
        assert_eq!("::1".parse::<IpNet>().unwrap(), n("[::1]"));
        assert_eq!("10.0.0.0/8".parse::<IpNet>().unwrap(), n("10.0.0.0/8"));
        assert!(parse_net_lenient("fd00::/129").is_err());
        assert_eq!(IpNet::new("10.0.0.1".parse().unwrap(), 33), None);
    }

    #[test]
    fn contains() {
        let net = n("10.0.0.0/8");
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(n("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!n("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(n("[fd00::]/8").contains("fdff::1".parse().unwrap()));
        assert!(!n("[fd00::]/8").contains("fe00::1".parse().unwrap()));
        assert!(n("[::1]").contains("::1".parse().unwrap()));
        assert!(!n("[::1]").contains("::2".parse().unwrap()));
        assert!(n("[::]/0").contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn serde_is_the_display_form() {
        let j = serde_json::to_string(&n("[fd00::]/8")).unwrap();
        assert_eq!(j, "\"[fd00::]/8\"");
        assert_eq!(serde_json::from_str::<IpNet>(&j).unwrap(), n("[fd00::]/8"));
        assert!(serde_json::from_str::<IpNet>("\"x\"").is_err());
    }
}
