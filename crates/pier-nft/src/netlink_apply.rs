//! Sending [`nftnl`](crate::nftnl) batches to the kernel.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use pier_sandbox::netlink::in_netns;
use pier_sandbox::{Netns, NetnsName};

use crate::ctnetlink::{self, Reply};
use crate::error::NftError;
use crate::names::TableName;
use crate::nftnl::{encode_batch, NftMsg};

const RECV_BUF: usize = 64 * 1024;

/// Applies [`NftMsg`] batches over `NETLINK_NETFILTER`, in the caller's network
/// namespace or a named one, without running nft: no process to start and no
/// ruleset to read back first. Needs root (`CAP_NET_ADMIN`).
#[derive(Debug, Clone, Default)]
pub struct NftNetlink {
    netns: Option<NetnsName>,
}

impl NftNetlink {
    /// Tables of the caller's network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables of the named network namespace `/run/netns/<netns>`.
    pub fn in_netns(netns: NetnsName) -> Self {
        NftNetlink { netns: Some(netns) }
    }

    fn open(&self) -> Result<Socket, NftError> {
        let open = || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            Ok(socket)
        };
        let socket = match &self.netns {
            None => open(),
            // A netlink socket stays in the namespace it was opened in.
            Some(name) => in_netns(&Netns::Named(name.clone()), || Ok(open()))
                .map_err(|source| NftError::Netns { netns: name.clone(), source })?,
        };
        socket.map_err(|source| NftError::Netlink { op: "open a netfilter netlink socket".into(), source })
    }

    /// Applies `msgs` to table `ip <table>` as one transaction: all or nothing.
    ///
    /// # Errors
    ///
    /// [`NftError::Netlink`] naming the first operation the kernel refused (nothing
    /// is applied then), or the socket call that failed.
    pub fn apply_blocking(&self, table: &TableName, msgs: &[NftMsg]) -> Result<(), NftError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let socket = self.open()?;
        let io_error = |op: &'static str| move |source| NftError::Netlink { op: op.to_string(), source };
        let (batch, acks) = encode_batch(table.as_str(), msgs, 1);
        socket.send(&batch, 0).map_err(io_error("send the batch"))?;
        let mut pending = acks.len();
        let mut refused: Option<(usize, i32)> = None;
        let mut buf = Vec::with_capacity(RECV_BUF);
        while pending > 0 {
            buf.clear();
            let n = socket.recv(&mut buf, libc::MSG_TRUNC).map_err(io_error("read the acknowledgements"))?;
            if n > buf.len() {
                let source = io::Error::other(format!("a {n}-byte reply did not fit the buffer"));
                return Err(NftError::Netlink { op: "read the acknowledgements".into(), source });
            }
            let replies = ctnetlink::parse(&buf[..n]).map_err(|e| NftError::Netlink {
                op: "read the acknowledgements".into(),
                source: io::Error::other(e.to_string()),
            })?;
            for reply in replies {
                let Reply::Ack { seq, errno } = reply else { continue };
                let Some(index) = acks.iter().position(|s| *s == seq) else { continue };
                pending = pending.saturating_sub(1);
                if errno != 0 && refused.is_none_or(|(i, _)| index < i) {
                    refused = Some((index, errno));
                }
            }
        }
        match refused {
            None => Ok(()),
            Some((index, errno)) => Err(NftError::Netlink {
                op: format!("operation {} of {} refused: {:?}", index + 1, msgs.len(), msgs[index]),
                source: io::Error::from_raw_os_error(errno),
            }),
        }
    }
}
