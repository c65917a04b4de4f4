//! The nf_tables netlink messages a partial sync of the service proxy needs, encoded
//! by hand: chains added, flushed and deleted, one kind of rule, set elements added
//! and deleted, sets deleted. Pure: operations in, one batch of bytes out.
//!
//! Why not only `nft -f`: with 10,000 Services nft reads every chain of the table
//! back before it applies even a two-element change (30–50 ms); the kernel takes
//! well under a millisecond. A batch (`NFNL_MSG_BATCH_BEGIN` ... `END`) is one
//! transaction, as `nft -f` is.
//!
//! Layout: `linux/netfilter/nf_tables.h`. Numbers inside nf_tables attributes are
//! big-endian; set keys and data are raw register contents (addresses and ports in
//! network order, a `numgen` value in host order).

use crate::nlmsg::Msg;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;

/// `NFPROTO_IPV4`: tables of family `ip`.
pub const NFPROTO_IPV4: u8 = 2;
const AF_UNSPEC: u8 = 0;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// `NF_DROP`.
const VERDICT_DROP: u32 = 0;
/// `NFT_GOTO` (-4).
const VERDICT_GOTO: u32 = (-4i32) as u32;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFTA_NG_OFFSET: u16 = 4;
const NFT_NG_RANDOM: u32 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFT_NAT_DNAT: u32 = 1;
/// `NFTNL_UDATA_SET_ELEM_COMMENT`, the type of a comment in an element's user data.
const UDATA_ELEM_COMMENT: u8 = 0;

/// `NFT_META_L4PROTO`.
pub const META_L4PROTO: u32 = 16;
/// `NFT_REG_1`: the first 128-bit register (four 32-bit ones, 8 to 11).
pub const REG_1: u32 = 1;
/// `NFT_REG32_01`: the second 32-bit register, where a port after an address lands.
pub const REG32_01: u32 = 9;

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load <key> => reg <dreg>`.
    Meta {
        /// `NFT_META_*`.
        key: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `cmp eq reg <sreg> <data>`.
    CmpEq {
        /// Source register.
        sreg: u32,
        /// What the register must hold.
        data: Vec<u8>,
    },
    /// `numgen reg <dreg> = random mod <modulus> offset <offset>`.
    NumgenRandom {
        /// Destination register.
        dreg: u32,
        /// How many values.
        modulus: u32,
        /// The first value.
        offset: u32,
    },
    /// `lookup reg <sreg> set <set> dreg <dreg>`: a map lookup.
    Lookup {
        /// The set or map, by name.
        set: String,
        /// Key register.
        sreg: u32,
        /// Value register, for a map.
        dreg: Option<u32>,
    },
    /// `nat dnat ip addr_min reg <addr> proto_min reg <proto>`.
    Dnat {
        /// `NFPROTO_*` of the address.
        family: u8,
        /// Register with the address.
        addr: u32,
        /// Register with the port.
        proto: u32,
    },
}

/// What an element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    /// Register contents (a map of values).
    Value(Vec<u8>),
    /// `goto <chain>` (a verdict map).
    Goto(String),
    /// `drop` (a verdict map).
    Drop,
}

/// One operation on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftMsg {
    /// Creates a regular chain if it is missing.
    AddChain {
        /// Chain name.
        name: String,
    },
    /// Removes every rule of a chain.
    FlushChain {
        /// Chain name.
        name: String,
    },
    /// Deletes an unreferenced chain.
    DeleteChain {
        /// Chain name.
        name: String,
    },
    /// Adds a rule at the end of the chain, or at its start (`insert rule`).
    AddRule {
        /// Chain name.
        chain: String,
        /// The rule's expressions, in order.
        exprs: Vec<Expr>,
        /// Before the chain's other rules.
        first: bool,
    },
    /// Adds an element (an existing equal one is no error).
    AddElement {
        /// Set or map name.
        set: String,
        /// The key, as register contents.
        key: Vec<u8>,
        /// The value, for a map.
        data: Option<ElementData>,
        /// The element's comment.
        comment: Option<String>,
    },
    /// Deletes an element.
    DeleteElement {
        /// Set or map name.
        set: String,
        /// The key.
        key: Vec<u8>,
    },
    /// Deletes an unreferenced set or map.
    DeleteSet {
        /// Set or map name.
        name: String,
    },
}

/// A batch of `msgs` on table `ip <table>`, sequence numbers from `first_seq`: the
/// bytes to send, and the sequence numbers whose acknowledgements to wait for (one
/// per operation; a failed batch answers each with its error or success).
pub fn encode_batch(table: &str, msgs: &[NftMsg], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out =
        Msg::with_res_id(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
            .finish();
    let mut acks = Vec::with_capacity(msgs.len());
    let mut seq = first_seq;
    for msg in msgs {
        seq = seq.wrapping_add(1);
        acks.push(seq);
        out.extend_from_slice(&encode(table, msg, seq));
    }
    seq = seq.wrapping_add(1);
    out.extend_from_slice(
        &Msg::with_res_id(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES).finish(),
    );
    (out, acks)
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn encode(table: &str, msg: &NftMsg, seq: u32) -> Vec<u8> {
    let new = |kind, flags| Msg::new(nft_type(kind), NLM_F_REQUEST | NLM_F_ACK | flags, seq, NFPROTO_IPV4);
    match msg {
        NftMsg::AddChain { name } => {
            let mut m = new(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
            m.attr_str(NFTA_CHAIN_TABLE, table);
            m.attr_str(NFTA_CHAIN_NAME, name);
            m.finish()
        }
        NftMsg::FlushChain { name } => {
            let mut m = new(NFT_MSG_DELRULE, 0);
            m.attr_str(NFTA_RULE_TABLE, table);
            m.attr_str(NFTA_RULE_CHAIN, name);
            m.finish()
        }
        NftMsg::DeleteChain { name } => {
            let mut m = new(NFT_MSG_DELCHAIN, 0);
            m.attr_str(NFTA_CHAIN_TABLE, table);
            m.attr_str(NFTA_CHAIN_NAME, name);
            m.finish()
        }
        NftMsg::AddRule { chain, exprs, first } => {
            // Without NLM_F_APPEND the kernel puts the rule first.
            let mut m = new(NFT_MSG_NEWRULE, if *first { NLM_F_CREATE } else { NLM_F_CREATE | NLM_F_APPEND });
            m.attr_str(NFTA_RULE_TABLE, table);
            m.attr_str(NFTA_RULE_CHAIN, chain);
            let list = m.begin(NFTA_RULE_EXPRESSIONS);
            for expr in exprs {
                let elem = m.begin(NFTA_LIST_ELEM);
                expression(&mut m, expr);
                m.end(elem);
            }
            m.end(list);
            m.finish()
        }
        NftMsg::AddElement { set, key, data, comment } => {
            let mut m = new(NFT_MSG_NEWSETELEM, NLM_F_CREATE);
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
            m.attr_str(NFTA_SET_ELEM_LIST_SET, set);
            let list = m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
            let elem = m.begin(NFTA_LIST_ELEM);
            value(&mut m, NFTA_SET_ELEM_KEY, key);
            match data {
                None => {}
                Some(ElementData::Value(bytes)) => value(&mut m, NFTA_SET_ELEM_DATA, bytes),
                Some(ElementData::Goto(chain)) => verdict(&mut m, VERDICT_GOTO, Some(chain)),
                Some(ElementData::Drop) => verdict(&mut m, VERDICT_DROP, None),
            }
            if let Some(comment) = comment {
                // nft's user data: type, length, the string with its NUL.
                let mut udata = vec![UDATA_ELEM_COMMENT, 0];
                udata.extend_from_slice(comment.as_bytes());
                udata.push(0);
                udata[1] = u8::try_from(udata.len() - 2).unwrap_or(u8::MAX);
                m.attr(NFTA_SET_ELEM_USERDATA, &udata);
            }
            m.end(elem);
            m.end(list);
            m.finish()
        }
        NftMsg::DeleteElement { set, key } => {
            let mut m = new(NFT_MSG_DELSETELEM, 0);
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
            m.attr_str(NFTA_SET_ELEM_LIST_SET, set);
            let list = m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
            let elem = m.begin(NFTA_LIST_ELEM);
            value(&mut m, NFTA_SET_ELEM_KEY, key);
            m.end(elem);
            m.end(list);
            m.finish()
        }
        NftMsg::DeleteSet { name } => {
            let mut m = new(NFT_MSG_DELSET, 0);
            m.attr_str(NFTA_SET_TABLE, table);
            m.attr_str(NFTA_SET_NAME, name);
            m.finish()
        }
    }
}

fn value(m: &mut Msg, kind: u16, bytes: &[u8]) {
    let at = m.begin(kind);
    m.attr(NFTA_DATA_VALUE, bytes);
    m.end(at);
}

fn verdict(m: &mut Msg, code: u32, chain: Option<&str>) {
    let data = m.begin(NFTA_SET_ELEM_DATA);
    let v = m.begin(NFTA_DATA_VERDICT);
    m.attr_be32(NFTA_VERDICT_CODE, code);
    if let Some(chain) = chain {
        m.attr_str(NFTA_VERDICT_CHAIN, chain);
    }
    m.end(v);
    m.end(data);
}

fn expression(m: &mut Msg, expr: &Expr) {
    let name = match expr {
        Expr::Meta { .. } => "meta",
        Expr::CmpEq { .. } => "cmp",
        Expr::NumgenRandom { .. } => "numgen",
        Expr::Lookup { .. } => "lookup",
        Expr::Dnat { .. } => "nat",
    };
    m.attr_str(NFTA_EXPR_NAME, name);
    let data = m.begin(NFTA_EXPR_DATA);
    match expr {
        Expr::Meta { key, dreg } => {
            m.attr_be32(NFTA_META_KEY, *key);
            m.attr_be32(NFTA_META_DREG, *dreg);
        }
        Expr::CmpEq { sreg, data } => {
            m.attr_be32(NFTA_CMP_SREG, *sreg);
            m.attr_be32(NFTA_CMP_OP, NFT_CMP_EQ);
            value(m, NFTA_CMP_DATA, data);
        }
        Expr::NumgenRandom { dreg, modulus, offset } => {
            m.attr_be32(NFTA_NG_DREG, *dreg);
            m.attr_be32(NFTA_NG_MODULUS, *modulus);
            m.attr_be32(NFTA_NG_TYPE, NFT_NG_RANDOM);
            m.attr_be32(NFTA_NG_OFFSET, *offset);
        }
        Expr::Lookup { set, sreg, dreg } => {
            m.attr_str(NFTA_LOOKUP_SET, set);
            m.attr_be32(NFTA_LOOKUP_SREG, *sreg);
            if let Some(dreg) = dreg {
                m.attr_be32(NFTA_LOOKUP_DREG, *dreg);
            }
        }
        Expr::Dnat { family, addr, proto } => {
            m.attr_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
            m.attr_be32(NFTA_NAT_FAMILY, u32::from(*family));
            m.attr_be32(NFTA_NAT_REG_ADDR_MIN, *addr);
            m.attr_be32(NFTA_NAT_REG_PROTO_MIN, *proto);
        }
    }
    m.end(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (length, type) of each netlink message in a batch.
    fn headers(batch: &[u8]) -> Vec<(usize, u16, u16, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 16 <= batch.len() {
            let len = u32::from_ne_bytes([batch[at], batch[at + 1], batch[at + 2], batch[at + 3]]) as usize;
            let kind = u16::from_ne_bytes([batch[at + 4], batch[at + 5]]);
            let flags = u16::from_ne_bytes([batch[at + 6], batch[at + 7]]);
            let seq = u32::from_ne_bytes([batch[at + 8], batch[at + 9], batch[at + 10], batch[at + 11]]);
            out.push((len, kind, flags, seq));
            at += len;
        }
        assert_eq!(at, batch.len(), "messages fill the batch exactly");
        out
    }

    #[test]
    fn a_batch_is_framed_and_every_operation_acknowledged() {
        let msgs = [
            NftMsg::FlushChain { name: "c".into() },
            NftMsg::DeleteElement { set: "s".into(), key: vec![1, 2, 3, 4] },
        ];
        let (bytes, acks) = encode_batch("t", &msgs, 100);
        let h = headers(&bytes);
        assert_eq!(h.len(), 4);
        assert_eq!((h[0].1, h[0].3), (NFNL_MSG_BATCH_BEGIN, 100));
        assert_eq!((h[1].1, h[1].2, h[1].3), (nft_type(NFT_MSG_DELRULE), NLM_F_REQUEST | NLM_F_ACK, 101));
        assert_eq!((h[2].1, h[2].3), (nft_type(NFT_MSG_DELSETELEM), 102));
        assert_eq!((h[3].1, h[3].3), (NFNL_MSG_BATCH_END, 103));
        assert_eq!(acks, vec![101, 102]);
        // The batch delimiters name the nf_tables subsystem, big-endian.
        assert_eq!(&bytes[16..20], &[AF_UNSPEC, 0, 0, 10]);
    }

    #[test]
    fn an_endpoint_element_is_encoded_as_nft_sends_it() {
        // `nft --debug=netlink add element ip p endpoints-tcp-0 { 131073 : 10.1.2.3 . 8080 }`
        // prints `element 00020001 : 0302010a 0000901f`: the numgen value in host
        // order, then address and port each in a 4-byte register.
        let msg = NftMsg::AddElement {
            set: "m".into(),
            key: 131_073u32.to_ne_bytes().to_vec(),
            data: Some(ElementData::Value(vec![10, 1, 2, 3, 0x1f, 0x90, 0, 0])),
            comment: Some("x/y".into()),
        };
        let bytes = encode("t", &msg, 1);
        let body = &bytes[20..];
        let want_tail: Vec<u8> = [
            // NFTA_SET_ELEM_LIST_ELEMENTS { NFTA_LIST_ELEM { KEY { VALUE }, DATA { VALUE }, USERDATA } }
            &[48u8, 0][..],
            &(NFTA_SET_ELEM_LIST_ELEMENTS | 0x8000).to_ne_bytes(),
            &[44, 0],
            &(NFTA_LIST_ELEM | 0x8000).to_ne_bytes(),
            &[12, 0],
            &(NFTA_SET_ELEM_KEY | 0x8000).to_ne_bytes(),
            &[8, 0, 1, 0],
            &131_073u32.to_ne_bytes(),
            &[16, 0],
            &(NFTA_SET_ELEM_DATA | 0x8000).to_ne_bytes(),
            &[12, 0, 1, 0, 10, 1, 2, 3, 0x1f, 0x90, 0, 0],
            &[10, 0, 6, 0, 0, 4, b'x', b'/', b'y', 0, 0, 0],
        ]
        .concat();
        assert!(body.ends_with(&want_tail), "{body:?}");
    }

    #[test]
    fn a_dnat_rule_has_its_five_expressions() {
        let msg = NftMsg::AddRule {
            chain: "service-x".into(),
            exprs: vec![
                Expr::Meta { key: META_L4PROTO, dreg: REG_1 },
                Expr::CmpEq { sreg: REG_1, data: vec![6] },
                Expr::NumgenRandom { dreg: REG_1, modulus: 3, offset: 131_072 },
                Expr::Lookup { set: "endpoints-tcp-0".into(), sreg: REG_1, dreg: Some(REG_1) },
                Expr::Dnat { family: NFPROTO_IPV4, addr: REG_1, proto: REG32_01 },
            ],
            first: false,
        };
        let bytes = encode("t", &msg, 7);
        let h = headers(&bytes);
        assert_eq!(h[0].1, nft_type(NFT_MSG_NEWRULE));
        assert_eq!(h[0].2, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND);
        for name in ["meta", "cmp", "numgen", "lookup", "nat", "endpoints-tcp-0", "service-x"] {
            let needle: Vec<u8> = name.bytes().chain([0]).collect();
            assert!(bytes.windows(needle.len()).any(|w| w == needle), "{name} is in the rule");
        }
    }
}
