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
    /// `add rule` of an [`EndpointPick`]: the same as [`Op::AddRule`] with its text,
    /// typed so that an applier can encode it without parsing nft syntax.
    AddEndpointPick {
        /// Chain name.
        chain: String,
        /// The rule.
        pick: EndpointPick,
        /// `insert rule` (before the chain's other rules) instead of `add rule`: a
        /// new pick takes over from the old one at once, without deleting it in
        /// the same transaction.
        first: bool,
    },
    /// `add set`. With a timeout, the set is an affinity set: `flags
    /// dynamic,timeout`, filled from the packet path by `update`.
    AddSet {
        /// Set name.
        name: String,
        /// The element type, e.g. `ipv4_addr`.
        key_type: String,
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
    /// `add map` from a random number to an endpoint address and port, for `dnat ip
    /// to numgen random mod N offset K map @<name>`. One per protocol and group of
    /// Service ports (see [`crate::ServicePort::slot`]).
    AddEndpointMap {
        /// Map name.
        name: String,
        /// The protocol of its Service ports (nft types the port by it).
        protocol: Protocol,
        /// The map's comment.
        comment: Option<String>,
    },
    /// `delete map`: the map must not be referenced any more.
    DeleteMap {
        /// Map name.
        name: String,
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
        value: Option<Value>,
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

/// The rule that DNATs a new connection to one of a Service port's endpoints:
/// `meta l4proto <protocol> dnat ip to numgen random mod <modulus> offset <offset>
/// map @<map>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPick {
    /// The port's protocol.
    pub protocol: Protocol,
    /// How many endpoints.
    pub modulus: u32,
    /// The first of the port's keys in the map.
    pub offset: u32,
    /// The endpoint map.
    pub map: String,
}

impl fmt::Display for EndpointPick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "meta l4proto {} dnat ip to numgen random mod {} offset {} map @{}",
            self.protocol.as_nft(),
            self.modulus,
            self.offset,
            self.map
        )
    }
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
    /// A number `numgen` may draw (endpoint maps).
    Number(u32),
    /// `ipv4_addr . ipv4_addr` with the address twice: a connection from an endpoint
    /// to itself (hairpin).
    SameAddress(Ipv4Addr),
}

/// A verdict-map value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// `goto <chain>`.
    Goto(String),
    /// `drop`.
    Drop,
    /// An endpoint map's value: where to DNAT.
    Endpoint {
        /// The endpoint's address.
        ip: Ipv4Addr,
        /// Its port.
        port: u16,
    },
}

impl fmt::Display for ElementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementKey::Ip(ip) => write!(f, "{ip}"),
            ElementKey::Port { protocol, port } => write!(f, "{} . {port}", protocol.as_nft()),
            ElementKey::IpPort { ip, protocol, port } => {
                write!(f, "{ip} . {} . {port}", protocol.as_nft())
            }
            ElementKey::Number(n) => write!(f, "{n}"),
            ElementKey::SameAddress(ip) => write!(f, "{ip} . {ip}"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Goto(chain) => write!(f, "goto {chain}"),
            Value::Drop => f.write_str("drop"),
            Value::Endpoint { ip, port } => write!(f, "{ip} . {port}"),
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
    /// Consecutive additions of elements to one set or map become one command: nft
    /// parses and sends a long list much faster than as many commands.
    pub fn to_nft_script(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.ops.len() {
            // Writing to a String cannot fail.
            match &self.ops[i] {
                Op::AddElement { container, .. } => {
                    let run = self.ops[i..]
                        .iter()
                        .take_while(|op| matches!(op, Op::AddElement { container: c, .. } if c == container))
                        .count();
                    let _ = write!(out, "add element ip {} {container} {{ ", self.table);
                    for (n, op) in self.ops[i..i + run].iter().enumerate() {
                        if n > 0 {
                            out.push_str(", ");
                        }
                        if let Op::AddElement { key, value, comment, .. } = op {
                            let _ = write_element(&mut out, key, value.as_ref(), comment.as_deref());
                        }
                    }
                    out.push_str(" }\n");
                    i += run;
                }
                op => {
                    let _ = self.write_op(&mut out, op);
                    out.push('\n');
                    i += 1;
                }
            }
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
            Op::AddEndpointPick { chain, pick, first } => {
                let verb = if *first { "insert" } else { "add" };
                write!(out, "{verb} rule ip {t} {chain} {pick}")?
            }
            Op::AddSet { name, key_type, timeout_seconds, comment } => {
                write!(out, "add set ip {t} {name} {{ type {key_type} ;")?;
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
                write!(out, "add element ip {t} {container} {{ ")?;
                write_element(out, key, value.as_ref(), comment.as_deref())?;
                out.push_str(" }");
            }
            Op::AddEndpointMap { name, protocol, comment } => {
                // `typeof` because nft has no type name for numgen's plain integer;
                // the value's port is typed by protocol, as the rules that use it.
                write!(
                    out,
                    "add map ip {t} {name} {{ typeof numgen random mod 1 : ip daddr . {} dport ;",
                    protocol.as_nft()
                )?;
                if let Some(c) = comment {
                    write!(out, " comment {} ;", quoted(c))?;
                }
                out.push_str(" }");
            }
            Op::DeleteMap { name } => write!(out, "delete map ip {t} {name}")?,
            Op::DeleteElement { container, key } => {
                write!(out, "delete element ip {t} {container} {{ {key} }}")?;
            }
        }
        Ok(())
    }
}

fn write_element(
    out: &mut String,
    key: &ElementKey,
    value: Option<&Value>,
    comment: Option<&str>,
) -> fmt::Result {
    write!(out, "{key}")?;
    if let Some(c) = comment {
        write!(out, " comment {}", quoted(c))?;
    }
    if let Some(v) = value {
        write!(out, " : {v}")?;
    }
    Ok(())
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
        tx.push(Op::AddSet {
            name: "affinity-x".into(),
            key_type: "ipv4_addr".into(),
            timeout_seconds: Some(30),
            comment: None,
        });
        tx.push(Op::AddElement {
            container: "m".into(),
            key: ElementKey::IpPort { ip: Ipv4Addr::new(10, 96, 0, 1), protocol: Protocol::Udp, port: 53 },
            value: Some(Value::Drop),
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
    fn consecutive_element_additions_are_one_command() {
        let mut tx = Transaction::new("t");
        let add = |container: &str, key| Op::AddElement {
            container: container.into(),
            key,
            value: Some(Value::Endpoint { ip: Ipv4Addr::new(10, 244, 0, 5), port: 8080 }),
            comment: None,
        };
        tx.push(add("endpoints-tcp-0", ElementKey::Number(0)));
        tx.push(add("endpoints-tcp-0", ElementKey::Number(131072)));
        tx.push(add("endpoints-tcp-1", ElementKey::Number(1)));
        tx.push(Op::AddEndpointMap {
            name: "endpoints-udp-0".into(),
            protocol: Protocol::Udp,
            comment: None,
        });
        tx.push(Op::AddElement {
            container: "hairpin-endpoints".into(),
            key: ElementKey::SameAddress(Ipv4Addr::new(10, 244, 0, 5)),
            value: None,
            comment: None,
        });
        tx.push(Op::DeleteMap { name: "endpoints-udp-0".into() });
        assert_eq!(
            tx.to_nft_script(),
            "add element ip t endpoints-tcp-0 { 0 : 10.244.0.5 . 8080, 131072 : 10.244.0.5 . 8080 }\n\
             add element ip t endpoints-tcp-1 { 1 : 10.244.0.5 . 8080 }\n\
             add map ip t endpoints-udp-0 { typeof numgen random mod 1 : ip daddr . udp dport ; }\n\
             add element ip t hairpin-endpoints { 10.244.0.5 . 10.244.0.5 }\n\
             delete map ip t endpoints-udp-0\n"
        );
    }

    #[test]
    fn long_comments_are_cut() {
        let q = quoted(&"é".repeat(100));
        assert!(q.len() <= COMMENT_MAX + 2);
    }
}
