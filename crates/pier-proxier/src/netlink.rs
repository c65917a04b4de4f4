//! A partial sync as nf_tables netlink operations, for [`NftApplier::apply_batch`]:
//! the changes an endpoint brings (map and hairpin elements, a chain's endpoint
//! pick) skip nft, which would first read back every chain of the table.

use pier_nft::nftnl::{ElementData, Expr, NftMsg, META_L4PROTO, NFPROTO_IPV4, REG32_01, REG_1};
use pier_proxy::{ElementKey, EndpointPick, Op, Transaction, Value};

/// The transaction as netlink operations, or `None` if it holds an operation only
/// nft's script carries (base chains, sets with types, rules other than endpoint
/// picks): a full sync, or a Service appearing with chains of other kinds.
pub fn batch(tx: &Transaction) -> Option<Vec<NftMsg>> {
    tx.ops().iter().map(message).collect()
}

fn message(op: &Op) -> Option<NftMsg> {
    Some(match op {
        Op::AddChain { name, base: None, comment: None } => NftMsg::AddChain { name: name.clone() },
        Op::FlushChain { name } => NftMsg::FlushChain { name: name.clone() },
        Op::DeleteChain { name } => NftMsg::DeleteChain { name: name.clone() },
        Op::AddEndpointPick { chain, pick, first } => {
            NftMsg::AddRule { chain: chain.clone(), exprs: pick_exprs(pick), first: *first }
        }
        Op::AddElement { container, key, value, comment } => NftMsg::AddElement {
            set: container.clone(),
            key: key_bytes(key),
            data: value.as_ref().map(data),
            comment: comment.clone(),
        },
        Op::DeleteElement { container, key } => {
            NftMsg::DeleteElement { set: container.clone(), key: key_bytes(key) }
        }
        Op::DeleteMap { name } | Op::DeleteSet { name } => NftMsg::DeleteSet { name: name.clone() },
        _ => return None,
    })
}

/// What nft compiles `meta l4proto tcp dnat ip to numgen random mod N offset K map
/// @m` to (`nft --debug=netlink`).
fn pick_exprs(pick: &EndpointPick) -> Vec<Expr> {
    vec![
        Expr::Meta { key: META_L4PROTO, dreg: REG_1 },
        Expr::CmpEq { sreg: REG_1, data: vec![pick.protocol.number()] },
        Expr::NumgenRandom { dreg: REG_1, modulus: pick.modulus, offset: pick.offset },
        Expr::Lookup { set: pick.map.clone(), sreg: REG_1, dreg: Some(REG_1) },
        Expr::Dnat { family: NFPROTO_IPV4, addr: REG_1, proto: REG32_01 },
    ]
}

/// A key as registers hold it: each field of a concatenation takes whole 4-byte
/// registers; addresses, protocols and ports in network order, numbers in host
/// order (numgen's).
fn key_bytes(key: &ElementKey) -> Vec<u8> {
    let port = |p: u16| [p.to_be_bytes()[0], p.to_be_bytes()[1], 0, 0];
    match key {
        ElementKey::Ip(ip) => ip.octets().to_vec(),
        ElementKey::Port { protocol, port: p } => [[protocol.number(), 0, 0, 0], port(*p)].concat(),
        ElementKey::IpPort { ip, protocol, port: p } => {
            [ip.octets(), [protocol.number(), 0, 0, 0], port(*p)].concat()
        }
        ElementKey::Number(n) => n.to_ne_bytes().to_vec(),
        ElementKey::SameAddress(ip) => [ip.octets(), ip.octets()].concat(),
    }
}

fn data(value: &Value) -> ElementData {
    match value {
        Value::Goto(chain) => ElementData::Goto(chain.clone()),
        Value::Drop => ElementData::Drop,
        Value::Endpoint { ip, port } => {
            let p = port.to_be_bytes();
            ElementData::Value([ip.octets(), [p[0], p[1], 0, 0]].concat())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_proxy::Protocol;
    use std::net::Ipv4Addr;

    #[test]
    fn keys_are_laid_out_as_nft_lays_them_out() {
        // From `nft --debug=netlink`: `element 0100600a 00000006 00005000` for
        // `10.96.0.1 . tcp . 80` (32-bit words, little-endian host).
        let key = ElementKey::IpPort { ip: Ipv4Addr::new(10, 96, 0, 1), protocol: Protocol::Tcp, port: 80 };
        assert_eq!(key_bytes(&key), vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]);
        assert_eq!(key_bytes(&ElementKey::Number(131_073)), 131_073u32.to_ne_bytes().to_vec());
        let hairpin = ElementKey::SameAddress(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(key_bytes(&hairpin), vec![10, 1, 2, 3, 10, 1, 2, 3]);
        let value = Value::Endpoint { ip: Ipv4Addr::new(10, 1, 2, 3), port: 8080 };
        assert_eq!(data(&value), ElementData::Value(vec![10, 1, 2, 3, 0x1f, 0x90, 0, 0]));
    }

    #[test]
    fn only_transactions_of_known_operations_become_batches() {
        let mut tx = Transaction::new("pier-proxy");
        tx.push(Op::FlushChain { name: "service-x".into() });
        tx.push(Op::DeleteElement { container: "endpoints-tcp-0".into(), key: ElementKey::Number(2) });
        assert_eq!(batch(&tx).map(|b| b.len()), Some(2));
        tx.push(Op::AddRule { chain: "service-x".into(), rule: "jump y".into(), comment: None });
        assert_eq!(batch(&tx), None, "free-form rules need nft");
    }
}
