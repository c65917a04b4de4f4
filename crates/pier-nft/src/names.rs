//! nftables address families and table names, valid by construction: they become
//! words of an nft command line, which nft parses as one command.

use std::fmt;
use std::str::FromStr;

/// An nftables address family (nft(8), "ADDRESS FAMILIES").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `inet`: IPv4 and IPv6.
    Inet,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`.
    Netdev,
}

impl Family {
    /// The keyword nft uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that cannot be an nftables family or table name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not one of nft's family keywords.
    #[error("unknown nftables family {0:?}: expected ip, ip6, inet, arp, bridge or netdev")]
    Family(String),
    /// Not an nft identifier.
    #[error(
        "invalid nftables table name {0:?}: must be 1-255 bytes of letters, digits, '_', '-' or '.', \
         starting with a letter or '_'"
    )]
    Table(String),
}

impl FromStr for Family {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Ok(match s {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            "arp" => Family::Arp,
            "bridge" => Family::Bridge,
            "netdev" => Family::Netdev,
            other => return Err(NameError::Family(other.to_string())),
        })
    }
}

/// An nftables table name: an nft identifier (letters, digits, `_`, `-`, `.`, not
/// starting with a digit or punctuation other than `_`), shorter than the kernel's
/// `NFT_NAME_MAXLEN` of 256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName(String);

impl TableName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`NameError::Table`] for anything nft would not read as one identifier.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let mut chars = name.chars();
        let ok = name.len() <= 255
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(TableName(name))
        } else {
            Err(NameError::Table(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TableName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        TableName::new(s)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_single_nft_identifiers() {
        for ok in ["pier", "kube-proxy", "_x", "t.1", "a".repeat(255).as_str()] {
            assert_eq!(TableName::new(ok).map(|t| t.to_string()), Ok(ok.to_string()));
        }
        for bad in ["", "1abc", "-x", "a b", "t;flush ruleset", "x\n", "a".repeat(256).as_str()] {
            assert!(TableName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn families_round_trip() {
        for f in [Family::Ip, Family::Ip6, Family::Inet, Family::Arp, Family::Bridge, Family::Netdev] {
            assert_eq!(f.to_string().parse::<Family>(), Ok(f));
        }
        assert!("ipv4".parse::<Family>().is_err());
    }
}
