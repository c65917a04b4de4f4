//! An nftables transaction as typed operations, and its text for `nft -f`.
//!
//! The applier runs [`Transaction::to_nft_script`] with `nft -f -`: nft(8) applies a
//! file as one atomic batch, so packets see either the old ruleset or the new one.
//! Every command names the table's family (`ip`) and name, so a transaction never
//! touches another table.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use crate::model::Protocol;

/// A list of nftables operations on one table, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    table: String,
    ops: Vec<Op>,
}

/// One nftables operation. Object names are the names inside the transaction's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `add table` (creates it if missing, else changes nothing).
    AddTable {
        /// The table's comment.
        comment: Option<String>,
    },
    /// `add chain` (creates it if missing; an existing chain keeps its rules).
    AddChain {
        /// Chain name.
        name: String,
        /// Hook and priority for a base chain; `None` for a regular chain.
        base: Option<BaseChain>,
        /// The chain's comment.
        comment: Option<String>,
    },
    /// `flush chain`: removes every rule of the chain.
    FlushChain {
        /// Chain name.
        name: String,
    },
    /// `delete chain`: the chain must not be referenced any more.
    DeleteChain {
        /// Chain name.
        name: String,
    },
    /// `add rule`: appends a rule to a chain.
    AddRule {
        /// Chain name.
        chain: String,
        /// The rule in nft syntax, e.g. `ip saddr 10.244.1.5 jump mark-for-masquerade`.
        rule: String,
        /// The rule's comment.
        comment: Option<String>,
    },
    /// `add set` of IPv4 addresses. With a timeout, the set is an affinity set:
    /// `flags dynamic,timeout`, filled from the packet path by `update`.
    AddSet {
        /// Set name.
        name: String,
        /// Element timeout in seconds, for affinity sets.
        timeout_seconds: Option<u32>,
        /// The set's comment.
        comment: Option<String>,
    },
    /// `add map` with verdict values.
    AddMap {
        /// Map name.
        name: String,
        /// The key type, e.g. `ipv4_addr . inet_proto . inet_service`.
        key_type: String,
        /// The map's comment.
        comment: Option<String>,
    },
    /// `flush set`: removes every element.
    FlushSet {
        /// Set name.
        name: String,
    },
    /// `flush map`: removes every element.
    FlushMap {
        /// Map name.
        name: String,
    },
    /// `delete set`: the set must not be referenced any more.
    DeleteSet {
        /// Set name.
        name: String,
    },
    /// `add element` to a set (no value) or a verdict map.
    AddElement {
        /// Set or map name.
        container: String,
        /// The element.
        key: ElementKey,
        /// The verdict, for a map.
        value: Option<Verdict>,
        /// The element's comment.
        comment: Option<String>,
    },
    /// `delete element` from a set or map.
    DeleteElement {
        /// Set or map name.
        container: String,
        /// The element.
        key: ElementKey,
    },
}

/// What makes a chain a base chain: the netfilter hook it is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter` or `nat`.
    pub kind: ChainKind,
    /// The hook.
    pub hook: Hook,
    /// Lower runs first; `dstnat` is -100 and `srcnat` 100 in the `ip` family.
    pub priority: i32,
}

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `type filter`.
    Filter,
    /// `type nat`.
    Nat,
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

/// A set or map element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementKey {
    /// An address (`ipv4_addr` sets).
    Ip(Ipv4Addr),
    /// `inet_proto . inet_service` (NodePorts).
    Port {
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
    },
    /// `ipv4_addr . inet_proto . inet_service` (service IPs).
    IpPort {
        /// Destination address.
        ip: Ipv4Addr,
        /// Protocol.
        protocol: Protocol,
        /// Destination port.
        port: u16,
    },
}

/// A verdict-map value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `goto <chain>`.
    Goto(String),
    /// `drop`.
    Drop,
}

impl fmt::Display for ElementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementKey::Ip(ip) => write!(f, "{ip}"),
            ElementKey::Port { protocol, port } => write!(f, "{} . {port}", protocol.as_nft()),
            ElementKey::IpPort { ip, protocol, port } => {
                write!(f, "{ip} . {} . {port}", protocol.as_nft())
            }
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Goto(chain) => write!(f, "goto {chain}"),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

impl ChainKind {
    fn as_nft(self) -> &'static str {
        match self {
            ChainKind::Filter => "filter",
            ChainKind::Nat => "nat",
        }
    }
}

impl Hook {
    fn as_nft(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// The most nft keeps of a comment (NFTNL_UDATA_COMMENT_MAXLEN, with the NUL).
const COMMENT_MAX: usize = 127;

/// A comment as a quoted nft string. nft strings cannot escape quotes, so quotes and
/// backslashes are replaced; long comments are cut, since nft refuses them.
fn quoted(comment: &str) -> String {
    let mut clean: String =
        comment.chars().map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    if clean.len() > COMMENT_MAX {
        let mut end = COMMENT_MAX;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    format!("\"{clean}\"")
}

impl Transaction {
    /// An empty transaction on table `ip <table>`.
    pub fn new(table: impl Into<String>) -> Self {
        Self { table: table.into(), ops: Vec::new() }
    }

    /// The table (family `ip`) every operation applies to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether there is nothing to apply (a partial sync with no change).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends an operation.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// The transaction as an nft(8) script, one command per line, for `nft -f`.
    pub fn to_nft_script(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            // Writing to a String cannot fail.
            let _ = self.write_op(&mut out, op);
            out.push('\n');
        }
        out
    }

    fn write_op(&self, out: &mut String, op: &Op) -> fmt::Result {
        let t = &self.table;
        match op {
            Op::AddTable { comment } => {
                write!(out, "add table ip {t}")?;
                if let Some(c) = comment {
                    write!(out, " {{ comment {} ; }}", quoted(c))?;
                }
            }
            Op::AddChain { name, base, comment } => {
                write!(out, "add chain ip {t} {name}")?;
                if base.is_some() || comment.is_some() {
                    out.push_str(" {");
                    if let Some(b) = base {
                        write!(
                            out,
                            " type {} hook {} priority {} ;",
                            b.kind.as_nft(),
                            b.hook.as_nft(),
                            b.priority
                        )?;
                    }
                    if let Some(c) = comment {
                        write!(out, " comment {} ;", quoted(c))?;
                    }
                    out.push_str(" }");
                }
            }
            Op::FlushChain { name } => write!(out, "flush chain ip {t} {name}")?,
            Op::DeleteChain { name } => write!(out, "delete chain ip {t} {name}")?,
            Op::AddRule { chain, rule, comment } => {
                write!(out, "add rule ip {t} {chain} {rule}")?;
                if let Some(c) = comment {
                    write!(out, " comment {}", quoted(c))?;
                }
            }
            Op::AddSet { name, timeout_seconds, comment } => {
                write!(out, "add set ip {t} {name} {{ type ipv4_addr ;")?;
                if let Some(timeout) = timeout_seconds {
                    // `dynamic` as upstream: the kernel adds it to sets updated from
                    // the packet path, and a later `add set` without it would then
                    // look like a change of flags and fail.
                    write!(out, " flags dynamic,timeout ; timeout {timeout}s ;")?;
                }
                if let Some(c) = comment {
                    write!(out, " comment {} ;", quoted(c))?;
                }
                out.push_str(" }");
            }
            Op::AddMap { name, key_type, comment } => {
                write!(out, "add map ip {t} {name} {{ type {key_type} : verdict ;")?;
                if let Some(c) = comment {
                    write!(out, " comment {} ;", quoted(c))?;
                }
                out.push_str(" }");
            }
            Op::FlushSet { name } => write!(out, "flush set ip {t} {name}")?,
            Op::FlushMap { name } => write!(out, "flush map ip {t} {name}")?,
            Op::DeleteSet { name } => write!(out, "delete set ip {t} {name}")?,
            Op::AddElement { container, key, value, comment } => {
                write!(out, "add element ip {t} {container} {{ {key}")?;
                if let Some(c) = comment {
                    write!(out, " comment {}", quoted(c))?;
                }
                if let Some(v) = value {
                    write!(out, " : {v}")?;
                }
                out.push_str(" }");
            }
            Op::DeleteElement { container, key } => {
                write!(out, "delete element ip {t} {container} {{ {key} }}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_operation() {
        let mut tx = Transaction::new("t");
        tx.push(Op::AddTable { comment: Some("rules".into()) });
        tx.push(Op::AddChain {
            name: "nat-output".into(),
            base: Some(BaseChain { kind: ChainKind::Nat, hook: Hook::Output, priority: -100 }),
            comment: None,
        });
        tx.push(Op::AddSet { name: "affinity-x".into(), timeout_seconds: Some(30), comment: None });
        tx.push(Op::AddElement {
            container: "m".into(),
            key: ElementKey::IpPort { ip: Ipv4Addr::new(10, 96, 0, 1), protocol: Protocol::Udp, port: 53 },
            value: Some(Verdict::Drop),
            comment: Some("a \"quoted\" comment".into()),
        });
        tx.push(Op::DeleteElement {
            container: "np".into(),
            key: ElementKey::Port { protocol: Protocol::Sctp, port: 30000 },
        });
        assert_eq!(
            tx.to_nft_script(),
            "add table ip t { comment \"rules\" ; }\n\
             add chain ip t nat-output { type nat hook output priority -100 ; }\n\
             add set ip t affinity-x { type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; }\n\
             add element ip t m { 10.96.0.1 . udp . 53 comment \"a _quoted_ comment\" : drop }\n\
             delete element ip t np { sctp . 30000 }\n"
        );
    }

    #[test]
    fn long_comments_are_cut() {
        let q = quoted(&"é".repeat(100));
        assert!(q.len() <= COMMENT_MAX + 2);
    }
}
