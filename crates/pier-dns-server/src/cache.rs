//! The cache of upstream answers: bounded, sharded, evicting by CLOCK.
//!
//! Keyed by the lowercase question name, type, class and the DO bit (a client
//! that asked for DNSSEC records gets an answer that has them). An entry holds the
//! upstream's message as received and when it expires: the smallest TTL of its
//! records for a positive answer, the SOA's TTL and MINIMUM, whichever is smaller,
//! for a negative one (RFC 2308 §5). Replies that may not be cached (SERVFAIL,
//! truncated, negative without an SOA, a TTL of 0) are not stored.
//!
//! Each of the 16 shards is a map and a ring of slots under its own mutex, held
//! only to find or place an entry (`Arc` clone in, `Arc` clone out). When a shard
//! is full, the CLOCK hand evicts the first expired entry or the first entry not
//! read since the hand last passed it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pier_dns::wire::{Class, NameRef, RecordData, RecordType, UpstreamResponse, MAX_NAME_LEN};

/// How long a positive answer is kept at most (CoreDNS's cache default).
pub(crate) const MAX_POSITIVE_TTL: u32 = 3600;
/// How long a negative answer is kept at most (CoreDNS's cache default).
pub(crate) const MAX_NEGATIVE_TTL: u32 = 1800;
/// Replies larger than this are not stored (a few of them would outweigh
/// thousands of ordinary answers).
const MAX_CACHED_LEN: usize = 16 * 1024;
const SHARDS: usize = 16;
const KEY_LEN: usize = MAX_NAME_LEN + 5;

/// A cache key: the lowercase wire name, type, class and DO, inline.
pub(crate) struct Key {
    bytes: [u8; KEY_LEN],
    len: usize,
}

impl Key {
    pub(crate) fn new(name: NameRef<'_>, qtype: RecordType, qclass: Class, dnssec_ok: bool) -> Key {
        let wire = name.as_wire();
        let mut bytes = [0u8; KEY_LEN];
        let n = wire.len().min(MAX_NAME_LEN);
        for (to, from) in bytes.iter_mut().zip(&wire[..n]) {
            *to = from.to_ascii_lowercase();
        }
        bytes[n..n + 2].copy_from_slice(&qtype.0.to_be_bytes());
        bytes[n + 2..n + 4].copy_from_slice(&qclass.0.to_be_bytes());
        bytes[n + 4] = u8::from(dnssec_ok);
        Key { bytes, len: n + 5 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// An upstream answer as received, with its age.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The upstream's message (its id is the one we sent).
    pub(crate) msg: Box<[u8]>,
    pub(crate) stored: Instant,
    pub(crate) expires: Instant,
    /// NXDOMAIN or NODATA.
    pub(crate) denial: bool,
}

impl Entry {
    /// An entry for `msg` received at `now`, and whether it may be cached (its
    /// lifetime is then above zero).
    pub(crate) fn new(msg: Box<[u8]>, now: Instant) -> Entry {
        let (ttl, denial) = cache_ttl(&msg).unwrap_or((0, false));
        let ttl = if msg.len() > MAX_CACHED_LEN { 0 } else { ttl };
        Entry { msg, stored: now, expires: now + Duration::from_secs(u64::from(ttl)), denial }
    }

    /// Whether the entry may be stored.
    pub(crate) fn is_cacheable(&self) -> bool {
        self.expires > self.stored
    }

    /// How many whole seconds the entry has been held: what to take off its TTLs.
    pub(crate) fn age(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX)
    }
}

/// How long a reply may be cached, and whether it is a denial; `None` when it may
/// not be.
fn cache_ttl(msg: &[u8]) -> Option<(u32, bool)> {
    let reply = UpstreamResponse::parse(msg).ok()?;
    let header = reply.header();
    if header.truncated {
        return None;
    }
    let no_answers = reply.answers().next().is_none();
    let denial = match header.rcode {
        3 => true,
        0 => no_answers,
        _ => return None,
    };
    if denial {
        // RFC 2308 §5: the SOA's TTL, capped by its MINIMUM field.
        let ttl = reply.authority().find_map(|r| match r.ok()? {
            r if r.rtype == RecordType::SOA => match r.data {
                RecordData::Soa { fixed, .. } => {
                    Some(r.ttl.min(u32::from_be_bytes([fixed[16], fixed[17], fixed[18], fixed[19]])))
                }
                _ => None,
            },
            _ => None,
        })?;
        return Some((ttl.min(MAX_NEGATIVE_TTL), true));
    }
    let mut ttl = MAX_POSITIVE_TTL;
    for record in reply.answers().chain(reply.authority()).chain(reply.additional()) {
        let record = record.ok()?;
        if record.rtype != RecordType::OPT {
            ttl = ttl.min(record.ttl);
        }
    }
    Some((ttl, false))
}

struct Slot {
    key: Box<[u8]>,
    entry: Arc<Entry>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    denials: usize,
}

impl Shard {
    fn remove_slot(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i).and_then(Option::take) {
            self.map.remove(&slot.key);
            self.denials -= usize::from(slot.entry.denial);
            self.free.push(i);
        }
    }

    /// A free slot, evicting if the shard is at `capacity`.
    fn free_slot(&mut self, capacity: usize, now: Instant) -> usize {
        if let Some(i) = self.free.pop() {
            return i;
        }
        if self.slots.len() < capacity {
            self.slots.push(None);
            return self.slots.len() - 1;
        }
        // Two turns of the clock clear every reference bit, so this ends.
        for _ in 0..2 * self.slots.len() {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            match &mut self.slots[i] {
                Some(slot) if slot.referenced && slot.entry.expires > now => slot.referenced = false,
                _ => {
                    self.remove_slot(i);
                    return self.free.pop().unwrap_or(i);
                }
            }
        }
        let i = self.hand;
        self.remove_slot(i);
        self.free.pop().unwrap_or(i)
    }
}

/// The cache; see the module docs.
pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Cache {
    /// A cache of about `entries` entries (0: stores nothing).
    pub(crate) fn new(entries: usize) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: entries.div_ceil(SHARDS),
            hasher: Default::default(),
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key.as_bytes()) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live entry for `key`.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(key);
        let i = *shard.map.get(key.as_bytes())?;
        let slot = shard.slots.get_mut(i)?.as_mut()?;
        if slot.entry.expires <= now {
            shard.remove_slot(i);
            return None;
        }
        slot.referenced = true;
        Some(Arc::clone(&slot.entry))
    }

    /// Stores `entry` under `key` if it may be cached, replacing what was there.
    pub(crate) fn insert(&self, key: &Key, entry: Arc<Entry>, now: Instant) {
        if self.per_shard == 0 || !entry.is_cacheable() {
            return;
        }
        let capacity = self.per_shard;
        let mut shard = self.shard(key);
        if let Some(&i) = shard.map.get(key.as_bytes()) {
            shard.remove_slot(i);
        }
        let i = shard.free_slot(capacity, now);
        let key: Box<[u8]> = key.as_bytes().into();
        shard.denials += usize::from(entry.denial);
        shard.map.insert(key.clone(), i);
        shard.slots[i] = Some(Slot { key, entry, referenced: false });
    }

    /// How many entries are held: (success, denial).
    pub(crate) fn len(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(s, d), shard| {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            (s + shard.map.len() - shard.denials, d + shard.denials)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_dns::wire::{Header, MessageWriter, NameBuf, Section};

    fn name(s: &str) -> NameBuf {
        NameBuf::from_ascii(s).expect("a name")
    }

    /// A reply with `rcode`, A records with `ttls`, and an SOA (TTL, MINIMUM).
    fn reply(rcode: u8, ttls: &[u32], soa: Option<(u32, u32)>) -> Box<[u8]> {
        let mut buf = Vec::new();
        let header = Header { id: 1, response: true, rcode, ..Header::default() };
        let mut w = MessageWriter::new(&mut buf, header);
        let q = name("example.com.");
        w.question(q.as_name(), RecordType::A, Class::IN);
        for ttl in ttls {
            w.a(pier_dns::wire::Owner::Question, *ttl, [192, 0, 2, 1].into());
        }
        if let Some((ttl, minimum)) = soa {
            w.set_section(Section::Authority);
            let ns = name("ns.example.com.");
            let admin = name("admin.example.com.");
            w.soa(pier_dns::wire::Owner::Question, ttl, ns.as_name(), admin.as_name(), 1, 2, 3, 4, minimum);
        }
        w.finish(usize::MAX);
        buf.into()
    }

    fn ttl_of(msg: Box<[u8]>) -> Option<u32> {
        let now = Instant::now();
        let e = Entry::new(msg, now);
        e.is_cacheable().then(|| e.expires.duration_since(now).as_secs() as u32)
    }

    #[test]
    fn lifetimes_follow_rfc_2308() {
        assert_eq!(ttl_of(reply(0, &[300, 60, 120], None)), Some(60));
        assert_eq!(ttl_of(reply(0, &[86_400], None)), Some(MAX_POSITIVE_TTL));
        assert_eq!(ttl_of(reply(0, &[0], None)), None);
        // NXDOMAIN and NODATA: the SOA's TTL, capped by MINIMUM.
        assert_eq!(ttl_of(reply(3, &[], Some((300, 30)))), Some(30));
        assert_eq!(ttl_of(reply(0, &[], Some((20, 30)))), Some(20));
        assert_eq!(ttl_of(reply(3, &[], Some((86_400, 86_400)))), Some(MAX_NEGATIVE_TTL));
        // No SOA: not cached. SERVFAIL and REFUSED: not cached.
        assert_eq!(ttl_of(reply(3, &[], None)), None);
        assert_eq!(ttl_of(reply(2, &[300], None)), None);
        assert_eq!(ttl_of(reply(5, &[], Some((300, 300)))), None);
        let mut truncated = reply(0, &[300], None).into_vec();
        truncated[2] |= 0x02;
        assert_eq!(ttl_of(truncated.into()), None);
        assert_eq!(ttl_of(Box::new([1, 2, 3])), None);
    }

    #[test]
    fn keys_ignore_case_and_separate_type_class_and_do() {
        let cache = Cache::new(100);
        let now = Instant::now();
        let key = |n: &str, t: u16, d: bool| Key::new(name(n).as_name(), RecordType(t), Class::IN, d);
        cache.insert(&key("Example.COM.", 1, false), Arc::new(Entry::new(reply(0, &[60], None), now)), now);
        assert!(cache.get(&key("example.com.", 1, false), now).is_some());
        assert!(cache.get(&key("example.com.", 28, false), now).is_none());
        assert!(cache.get(&key("example.com.", 1, true), now).is_none());
        assert!(cache.get(&key("example.com.", 1, false), now + Duration::from_secs(61)).is_none());
        // The expired entry was dropped on the way.
        assert_eq!(cache.len(), (0, 0));
    }

    #[test]
    fn stays_within_bounds_and_keeps_what_is_read() {
        let cache = Cache::new(SHARDS * 4);
        let now = Instant::now();
        let key =
            |i: usize| Key::new(name(&format!("n{i}.example.")).as_name(), RecordType::A, Class::IN, false);
        let hot = key(0);
        cache.insert(&hot, Arc::new(Entry::new(reply(0, &[600], None), now)), now);
        for i in 1..1000 {
            assert!(cache.get(&hot, now).is_some(), "the hot entry survives insert {i}");
            cache.insert(&key(i), Arc::new(Entry::new(reply(3, &[], Some((60, 60))), now)), now);
            let (success, denial) = cache.len();
            assert!(success + denial <= SHARDS * 4);
        }
        assert_eq!(cache.len().0, 1);
        assert!(cache.len().1 > SHARDS * 2);
    }

    #[test]
    fn zero_entries_store_nothing() {
        let cache = Cache::new(0);
        let now = Instant::now();
        let key = Key::new(name("a.").as_name(), RecordType::A, Class::IN, false);
        cache.insert(&key, Arc::new(Entry::new(reply(0, &[60], None), now)), now);
        assert!(cache.get(&key, now).is_none());
    }
}
