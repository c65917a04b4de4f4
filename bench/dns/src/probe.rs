//! A minimal DNS client over UDP, written here (not borrowed from the server under
//! test) so that it checks the servers independently: encodes one question,
//! decodes the rcode and the A and SRV records of the answer section (RFC 1035
//! §4.1, RFC 2782).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;

pub const TYPE_A: u16 = 1;
pub const TYPE_SRV: u16 = 33;
pub const NOERROR: u8 = 0;
pub const NXDOMAIN: u8 = 3;

/// What a server answered.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub rcode: u8,
    pub a: Vec<Ipv4Addr>,
    /// (priority, weight, port, target without the final dot)
    pub srv: Vec<(u16, u16, u16, String)>,
}

/// A UDP socket on 127.0.0.1 connected to one server.
pub struct Probe {
    socket: UdpSocket,
    id: u16,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Probe {
    pub fn new(server: SocketAddr, timeout: Duration) -> anyhow::Result<Probe> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding a probe socket")?;
        socket.connect(server).with_context(|| format!("connecting a probe socket to {server}"))?;
        Ok(Probe { socket, id: 0x5eed, buf: vec![0; 4096], timeout })
    }

    /// One query, waiting at most the probe's timeout for its reply (replies to
    /// earlier, timed-out queries are skipped).
    pub fn query(&mut self, name: &str, qtype: u16) -> io::Result<Reply> {
        self.id = self.id.wrapping_add(1);
        let msg = encode(self.id, name, qtype)?;
        self.socket.send(&msg)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no reply for {name}")));
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.socket.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e),
            };
            let msg = &self.buf[..n];
            if msg.len() >= 2 && u16::from_be_bytes([msg[0], msg[1]]) == self.id {
                return decode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

pub fn encode(id: u16, name: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    // RD set, as stub resolvers send (and dnsperf does).
    msg.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad label in {name}")))?;
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    Ok(msg)
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, String> {
    msg.get(pos..pos + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "short message".to_string())
}

/// Reads a (possibly compressed) name at `pos`; the name and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or("name past the end")? as usize;
        if len & 0xc0 == 0xc0 {
            let target = (u16_at(msg, pos)? & 0x3fff) as usize;
            end.get_or_insert(pos + 2);
            pos = target;
        } else if len == 0 {
            return Ok((name, end.unwrap_or(pos + 1)));
        } else {
            let label = msg.get(pos + 1..pos + 1 + len).ok_or("label past the end")?;
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(&String::from_utf8_lossy(label));
            pos += 1 + len;
        }
    }
    Err("name loop".into())
}

fn decode(msg: &[u8]) -> Result<Reply, String> {
    if msg.len() < 12 {
        return Err("short header".into());
    }
    let mut reply = Reply { rcode: msg[3] & 0x0f, ..Reply::default() };
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    for _ in 0..an {
        pos = read_name(msg, pos)?.1;
        let rtype = u16_at(msg, pos)?;
        let rdlen = u16_at(msg, pos + 8)? as usize;
        let rdata = pos + 10;
        let data = msg.get(rdata..rdata + rdlen).ok_or("rdata past the end")?;
        match rtype {
            TYPE_A if rdlen == 4 => reply.a.push(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            TYPE_SRV if rdlen >= 7 => {
                let (target, _) = read_name(msg, rdata + 6)?;
                reply.srv.push((
                    u16_at(msg, rdata)?,
                    u16_at(msg, rdata + 2)?,
                    u16_at(msg, rdata + 4)?,
                    target,
                ));
            }
            _ => {}
        }
        pos = rdata + rdlen;
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_compressed_srv_answer() {
        let mut msg = encode(7, "_http._tcp.a.b.svc.cluster.local", TYPE_SRV).expect("encodes");
        msg[2] = 0x85; // QR, AA, RD
        msg[7] = 1; // ANCOUNT
                    // Owner: pointer to the question; SRV 0 100 80, target "a" + pointer to "b.svc...".
        msg.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 5]);
        let target_suffix = 12 + 1 + 5 + 1 + 4 + 2; // "_http", "_tcp", "a" labels
        msg.extend_from_slice(&[0, 10, 0, 0, 0, 100, 0, 80, 1, b'a', 0xc0, target_suffix as u8]);
        let reply = decode(&msg).expect("decodes");
        assert_eq!(reply.rcode, NOERROR);
        assert_eq!(reply.srv, vec![(0, 100, 80, "a.b.svc.cluster.local".to_string())]);
    }
}
