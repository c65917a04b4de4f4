//! From a [`ProxyModel`] to the nftables transaction that programs it: a full sync
//! ([`render_full`]) at start and after a failure, then partial syncs
//! ([`render_partial`]) that touch only what changed between two models.
//!
//! Neither ever deletes the table. A full sync re-adds and flushes what exists, so
//! per-endpoint affinity sets (and their clients) survive a restart of the proxy,
//! and established connections keep their DNAT in conntrack whatever the rules do.
//! A partial sync leaves untouched every chain whose rules did not change, so rule
//! counters and affinity entries of unchanged endpoints survive too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::cidr::Ipv4Cidr;
use imbl::ordmap::DiffItem;

use crate::model::{ProxyModel, ServiceName, ServicePort};
use crate::names;
use crate::ruleset::{self, Chain, Container, Element, Rule, ServiceObjects};
use crate::transaction::{ElementKey, Op, Transaction};

/// Where NodePorts are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodePortAddresses {
    /// On every local address of the node but 127.0.0.0/8 (`fib daddr type local`),
    /// kube-proxy's behaviour when `--nodeport-addresses` is unset.
    #[default]
    AllLocal,
    /// Only on [`NodeInfo::node_ips`](crate::NodeInfo::node_ips) (a `nodeport-ips` set), like kube-proxy's
    /// `--nodeport-addresses primary`.
    NodeIps,
}

/// How a service chain picks one of its endpoints for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    /// `dnat ip to numgen random mod N offset K map @endpoints-<protocol>-<group>`:
    /// one rule and one lookup per connection, no chain per endpoint, and map
    /// elements that a change of endpoints adds and deletes one by one. Ports with
    /// ClientIP affinity use [`LoadBalancing::VerdictMap`]'s per-endpoint chains,
    /// which their affinity sets need. A full sync of 10,000 Services with 10
    /// endpoints: see BENCHMARKS.md.
    #[default]
    EndpointMaps,
    /// kube-proxy's `numgen random mod N vmap { 0 : goto endpoint-a, ... }`: one
    /// lookup per connection. Each such rule carries an anonymous map, and the kernel
    /// handles many anonymous maps in one transaction in quadratic time: a full sync
    /// of 10,000 Services with 10 endpoints took 210 s (Linux 6.18, nft 1.0.6).
    /// Partial syncs, which add a few, are not affected.
    VerdictMap,
    /// One rule per endpoint, each taking its share of what the previous ones left
    /// (`numgen random mod 3 == 0 goto a`, `numgen random mod 2 == 0 goto b`,
    /// `goto c`): uniform as well, no anonymous maps (the same full sync took 9 s),
    /// at the price of up to N rule evaluations for the first packet of a connection.
    Rules,
}

/// Settings of the ruleset that do not come from the API. A partial sync assumes the
/// same settings as the full sync before it; after changing them, do a full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// The table, in family `ip`; one per node network namespace.
    pub table: String,
    /// The packet mark bit that asks for SNAT in postrouting (kube-proxy's
    /// `--masquerade-bit` 14 is `0x4000`).
    pub masquerade_mark: u32,
    /// The cluster's pod network (kube-proxy's `--cluster-cidr`): traffic to a
    /// ClusterIP from outside it is masqueraded, and pod traffic to an external
    /// address of a `Local`-policy Service is short-circuited to all endpoints.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// The service networks: traffic to an address in them that is no ClusterIP is
    /// dropped (traffic to an unused port of a ClusterIP is always rejected).
    pub service_cidrs: Vec<Ipv4Cidr>,
    /// Masquerade all traffic to ClusterIPs (kube-proxy's `--masquerade-all`).
    pub masquerade_all: bool,
    /// Where NodePorts listen.
    pub node_port_addresses: NodePortAddresses,
    /// How endpoints are picked.
    pub load_balancing: LoadBalancing,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            table: "pier-proxy".to_string(),
            masquerade_mark: 0x4000,
            cluster_cidr: None,
            service_cidrs: Vec::new(),
            masquerade_all: false,
            node_port_addresses: NodePortAddresses::default(),
            load_balancing: LoadBalancing::default(),
        }
    }
}

/// What the table holds before a full sync, as far as the caller knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Existing {
    /// Not known. Every per-Service chain is flushed before it is filled, which is
    /// always correct, and leftovers of Services deleted meanwhile stay (empty of
    /// references, harmless) until a full sync that knows about them.
    #[default]
    Unknown,
    /// Listed from the table just before the sync (or known empty: a fresh network
    /// namespace). Chains not listed are created without a flush, and per-Service
    /// chains and affinity sets listed but no longer wanted are deleted.
    ///
    /// Flushing a chain created in the same transaction costs the kernel time that
    /// grows with the transaction: measured on Linux 6.18 with nft 1.0.6, a full sync
    /// of 10,000 Services with 10 endpoints took 99 s with the flushes and 9 s
    /// without.
    Listed {
        /// Chain names.
        chains: BTreeSet<String>,
        /// Set and map names.
        sets: BTreeSet<String>,
    },
}

impl Existing {
    /// A table known to be empty or missing.
    pub fn empty() -> Self {
        Existing::Listed { chains: BTreeSet::new(), sets: BTreeSet::new() }
    }

    /// Reads chain and set names from the text of `nft list table ip <table>` (or
    /// `nft list chains` / `nft list sets`). Anything else is ignored.
    pub fn from_nft_listing(listing: &str) -> Self {
        let mut chains = BTreeSet::new();
        let mut sets = BTreeSet::new();
        for line in listing.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("chain"), Some(name)) => {
                    chains.insert(name.to_string());
                }
                (Some("set" | "map"), Some(name)) => {
                    sets.insert(name.to_string());
                }
                _ => {}
            }
        }
        Existing::Listed { chains, sets }
    }

    /// Whether `chain` may exist (and hold rules).
    fn may_have_chain(&self, chain: &str) -> bool {
        match self {
            Existing::Unknown => true,
            Existing::Listed { chains, .. } => chains.contains(chain),
        }
    }

    fn may_have_set(&self, set: &str) -> bool {
        match self {
            Existing::Unknown => true,
            Existing::Listed { sets, .. } => sets.contains(set),
        }
    }
}

/// Whether a transaction rebuilds everything or applies a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncKind {
    /// From [`render_full`].
    #[default]
    Full,
    /// From [`render_partial`].
    Partial,
}

/// The size of a ruleset, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesetCounts {
    /// Chains, fixed and per-Service.
    pub chains: usize,
    /// Rules in all chains.
    pub rules: usize,
    /// Sets and maps, including affinity sets.
    pub sets: usize,
    /// Elements of the dispatch sets and maps (not affinity entries, which the
    /// kernel adds).
    pub elements: usize,
}

/// A signed change of [`RulesetCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesetDelta {
    /// Change in chains.
    pub chains: i64,
    /// Change in rules.
    pub rules: i64,
    /// Change in sets and maps.
    pub sets: i64,
    /// Change in elements.
    pub elements: i64,
}

impl RulesetCounts {
    /// The ruleset's size once `stats`' transaction is applied on a ruleset of this
    /// size. After a full sync this is the full sync's size, whatever `self` was.
    pub fn after(self, stats: &RenderStats) -> RulesetCounts {
        let base = match stats.kind {
            SyncKind::Full => RulesetCounts::default(),
            SyncKind::Partial => self,
        };
        let add = |n: usize, d: i64| usize::try_from((n as i64).saturating_add(d)).unwrap_or(0);
        RulesetCounts {
            chains: add(base.chains, stats.delta.chains),
            rules: add(base.rules, stats.delta.rules),
            sets: add(base.sets, stats.delta.sets),
            elements: add(base.elements, stats.delta.elements),
        }
    }
}

/// Two Services claiming one destination (address, protocol, port), e.g. an
/// `externalIP` equal to another Service's ClusterIP. nft cannot hold both map
/// elements, so the first Service (by namespace and name) keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The contested destination.
    pub destination: ElementKey,
    /// The Service that keeps it.
    pub owner: ServiceName,
    /// The Services whose claim is ignored.
    pub ignored: Vec<ServiceName>,
}

/// What a rendered transaction does, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Full or partial.
    pub kind: SyncKind,
    /// Chains created or flushed and refilled.
    pub chains_written: usize,
    /// Rules added.
    pub rules_written: usize,
    /// Per-Service chains deleted.
    pub chains_deleted: usize,
    /// Affinity sets added (or re-created with a new timeout).
    pub sets_added: usize,
    /// Affinity sets deleted.
    pub sets_deleted: usize,
    /// Map and set elements added.
    pub elements_added: usize,
    /// Map and set elements deleted.
    pub elements_deleted: usize,
    /// Change of the ruleset's size; see [`RulesetCounts::after`].
    pub delta: RulesetDelta,
    /// Destinations claimed by more than one Service in the new model: all of them
    /// for a full sync, those involving a changed Service for a partial one.
    pub conflicts: Vec<Conflict>,
}

/// A transaction and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The transaction to apply (`nft -f -` with [`Transaction::to_nft_script`]).
    pub transaction: Transaction,
    /// Deletions to apply right after it, in a transaction of their own: set
    /// elements (and endpoint maps) no rule refers to any more. The kernel waits a
    /// grace period (8-16 ms measured) before it acknowledges a transaction that
    /// deletes elements, so they are kept off the path of the change that matters.
    /// Empty for a full sync.
    pub cleanup: Transaction,
    /// The effect of both.
    pub stats: RenderStats,
}

/// The transaction that makes the table hold exactly `model`'s ruleset, whatever it
/// held before (nothing, a previous run's ruleset, or a ruleset a failed partial sync
/// left inconsistent with what the caller believes). `existing` says what the table
/// holds, if known: see [`Existing`].
pub fn render_full(cfg: &RenderConfig, model: &ProxyModel, existing: &Existing) -> Rendered {
    let mut ops = Vec::new();
    let mut stats = RenderStats { kind: SyncKind::Full, ..RenderStats::default() };
    let base = ruleset::base_ops(cfg, &model.node, &mut ops);
    stats.chains_written += base.chains;
    stats.rules_written += base.rules;
    stats.elements_added += base.elements;
    let mut sets_total = base.sets;

    let claims = Claims::of(model, None);
    stats.conflicts = claims.conflicts();
    let mut wanted_chains = HashSet::new();
    let mut wanted_sets = HashSet::new();
    // Elements go in last, grouped by set or map: one long `add element` per set is
    // much faster for nft, and maps are empty while rules bind to them (the kernel
    // checks a map's elements for every rule that starts using it). Services share
    // hairpin elements, so this also drops the repeats.
    let mut elements: BTreeMap<Container, BTreeMap<ElementKey, Element>> = BTreeMap::new();
    let mut rule_ops = Vec::new();
    for (name, ports) in &model.services {
        let objects = claims.filter(name, ruleset::service_objects(cfg, &model.node, ports));
        for chain in &objects.chains {
            ops.push(Op::AddChain { name: chain.name.clone(), base: None, comment: None });
            if existing.may_have_chain(&chain.name) {
                ops.push(Op::FlushChain { name: chain.name.clone() });
            }
            wanted_chains.insert(chain.name.clone());
        }
        for set in &objects.sets {
            ops.push(add_set(set));
            wanted_sets.insert(set.name.clone());
        }
        for container in objects.endpoint_maps() {
            if elements.contains_key(&container) {
                continue;
            }
            let name = container.name();
            ops.extend(add_endpoint_map(container));
            if existing.may_have_set(&name) {
                ops.push(Op::FlushMap { name: name.clone() });
            }
            wanted_sets.insert(name);
            sets_total += 1;
            elements.insert(container, BTreeMap::new());
        }
        for chain in &objects.chains {
            push_rules(&mut rule_ops, chain);
        }
        stats.chains_written += objects.chains.len();
        stats.rules_written += objects.rule_count();
        stats.sets_added += objects.sets.len();
        sets_total += objects.sets.len();
        for ((container, key), element) in objects.elements {
            elements.entry(container).or_default().insert(key, element);
        }
    }
    ops.append(&mut rule_ops);
    for element in elements.values().flat_map(BTreeMap::values) {
        ops.push(element.add_op());
        stats.elements_added += 1;
    }

    // Leftovers: flush every stale chain before deleting any, since one may jump to
    // another; affinity sets and endpoint maps go last, once no rule references them.
    let (listed_chains, listed_sets) = match existing {
        Existing::Unknown => (None, None),
        Existing::Listed { chains, sets } => (Some(chains), Some(sets)),
    };
    let stale_chains: Vec<&String> = listed_chains
        .into_iter()
        .flatten()
        .filter(|c| names::is_service_chain(c) && !wanted_chains.contains(*c))
        .collect();
    for chain in &stale_chains {
        ops.push(Op::FlushChain { name: (*chain).clone() });
    }
    for chain in &stale_chains {
        ops.push(Op::DeleteChain { name: (*chain).clone() });
    }
    stats.chains_deleted = stale_chains.len();
    for set in listed_sets.into_iter().flatten() {
        if wanted_sets.contains(set) {
            continue;
        }
        if names::is_affinity_set(set) {
            ops.push(Op::DeleteSet { name: set.clone() });
            stats.sets_deleted += 1;
        } else if names::is_endpoint_map(set) {
            ops.push(Op::DeleteMap { name: set.clone() });
            stats.sets_deleted += 1;
        }
    }

    stats.delta = RulesetDelta {
        chains: stats.chains_written as i64,
        rules: stats.rules_written as i64,
        sets: sets_total as i64,
        elements: stats.elements_added as i64,
    };
    Rendered { transaction: transaction(cfg, ops), cleanup: transaction(cfg, Vec::new()), stats }
}

/// The transaction that turns the table from `prev`'s ruleset (applied by the last
/// successful sync) into `next`'s, touching only Services that changed: their
/// changed chains are flushed and refilled, chains no longer wanted are deleted
/// after the map elements pointing at them, map elements are added and deleted one
/// by one. Unchanged chains, sets and elements are left alone.
///
/// If this transaction fails, the table no longer matches `prev` for sure: do a full
/// sync next (as kube-proxy does).
pub fn render_partial(cfg: &RenderConfig, prev: &ProxyModel, next: &ProxyModel) -> Rendered {
    let mut stats = RenderStats { kind: SyncKind::Partial, ..RenderStats::default() };
    let node_changed = prev.node != next.node;

    // Which Services to re-render: changed ones, and every one if the node changed
    // (its name decides locality, its addresses the firewall). The models share
    // the structure of what did not change, which the diff skips.
    let mut changed: BTreeSet<&ServiceName> = if node_changed {
        prev.services.keys().chain(next.services.keys()).collect()
    } else {
        prev.services
            .diff(&next.services)
            .filter_map(|item| match item {
                DiffItem::Add(name, _) | DiffItem::Remove(name, _) => Some(name),
                DiffItem::Update { old: (name, old), new: (_, new) } => (!same(old, new)).then_some(name),
            })
            .collect()
    };

    // Destinations claimed by more than one Service: only those of changed Services
    // can change hands, so only they are tracked (conflicts among unchanged Services
    // stay as the last full sync resolved them). Every claimant of a destination
    // whose owner changes is re-rendered too.
    let relevant: HashSet<ElementKey> = changed
        .iter()
        .flat_map(|name| prev.services.get(*name).into_iter().chain(next.services.get(*name)))
        .flat_map(|ports| ports.iter().flat_map(ServicePort::destinations))
        .collect();
    let prev_claims = Claims::of(prev, Some(&relevant));
    let next_claims = Claims::of(next, Some(&relevant));
    stats.conflicts = next_claims.conflicts();
    let moved = prev_claims.moved_claimants(&next_claims);
    changed.extend(moved);

    let mut diff = Diff::default();
    if node_changed {
        diff.elements(ruleset::node_elements(cfg, &prev.node), ruleset::node_elements(cfg, &next.node));
    }
    for name in changed {
        let old = prev
            .services
            .get(name)
            .map(|ports| prev_claims.filter(name, ruleset::service_objects(cfg, &prev.node, ports)))
            .unwrap_or_default();
        let new = next
            .services
            .get(name)
            .map(|ports| next_claims.filter(name, ruleset::service_objects(cfg, &next.node, ports)))
            .unwrap_or_default();
        diff.service(old, new);
    }
    diff.reconcile_shared(cfg, prev, next);
    diff.finish(cfg, stats)
}

fn same(prev: &Arc<Vec<ServicePort>>, next: &Arc<Vec<ServicePort>>) -> bool {
    Arc::ptr_eq(prev, next) || prev == next
}

fn transaction(cfg: &RenderConfig, ops: Vec<Op>) -> Transaction {
    let mut tx = Transaction::new(cfg.table.clone());
    for op in ops {
        tx.push(op);
    }
    tx
}

/// `add map` of an endpoint map; nothing for the fixed sets and maps, which every
/// full sync declares.
fn add_endpoint_map(container: Container) -> Option<Op> {
    match container {
        Container::Endpoints { protocol, group } => Some(Op::AddEndpointMap {
            name: container.name(),
            protocol,
            comment: Some(format!("endpoints of {} Service ports, group {group}", protocol.as_nft())),
        }),
        Container::Fixed(_) => None,
    }
}

fn add_set(set: &ruleset::AffinitySet) -> Op {
    Op::AddSet {
        name: set.name.clone(),
        key_type: "ipv4_addr".to_string(),
        timeout_seconds: Some(set.timeout_seconds),
        comment: None,
    }
}

fn push_rules(ops: &mut Vec<Op>, chain: &Chain) {
    for rule in &chain.rules {
        ops.push(match &rule.pick {
            Some(pick) => Op::AddEndpointPick { chain: chain.name.clone(), pick: pick.clone(), first: false },
            None => Op::AddRule {
                chain: chain.name.clone(),
                rule: rule.text.clone(),
                comment: rule.comment.map(str::to_string),
            },
        });
    }
}

/// How a partial sync writes a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// A new chain: created and filled.
    New,
    /// An existing chain: flushed and refilled.
    Flush,
    /// A chain that holds only an endpoint pick and gets another one: the new pick
    /// is inserted before the old, which the cleanup removes. Deleting a rule makes
    /// the kernel wait a grace period (8-16 ms) before it acknowledges the
    /// transaction; inserting one does not.
    SwapPick,
}

/// The changes of a partial sync, collected over all changed Services and then
/// ordered so that nothing is deleted while still referenced.
#[derive(Default)]
struct Diff {
    /// Chains to create, or flush and refill, and how.
    write: Vec<(Chain, Rewrite)>,
    /// Rule counts of the chains in `write` before the sync (0 for new ones).
    write_old_rules: usize,
    write_new_chains: usize,
    /// Chains to flush and delete, with their rule counts.
    stale: Vec<(String, usize)>,
    /// Affinity sets to delete (gone, or re-created with another timeout).
    delete_sets: Vec<String>,
    add_sets: Vec<ruleset::AffinitySet>,
    new_sets: i64,
    delete_elements: Vec<Element>,
    add_elements: Vec<Element>,
    element_delta: i64,
    /// Endpoint maps that come into use or go out of use.
    add_maps: Vec<Container>,
    delete_maps: Vec<Container>,
}

impl Diff {
    fn service(&mut self, old: ServiceObjects, new: ServiceObjects) {
        // Sets first: a set re-created with a new timeout forces a rewrite of the
        // chains that use it (they must let go of it before it is deleted).
        let old_sets: HashMap<&str, u32> =
            old.sets.iter().map(|s| (s.name.as_str(), s.timeout_seconds)).collect();
        let new_set_names: HashSet<&str> = new.sets.iter().map(|s| s.name.as_str()).collect();
        let mut recreated: HashSet<String> = HashSet::new();
        for set in &new.sets {
            match old_sets.get(set.name.as_str()) {
                None => {
                    self.add_sets.push(set.clone());
                    self.new_sets += 1;
                }
                Some(timeout) if *timeout != set.timeout_seconds => {
                    self.delete_sets.push(set.name.clone());
                    self.add_sets.push(set.clone());
                    recreated.insert(set.name.clone());
                }
                Some(_) => {}
            }
        }
        for set in &old.sets {
            if !new_set_names.contains(set.name.as_str()) {
                self.delete_sets.push(set.name.clone());
                self.new_sets -= 1;
            }
        }

        let old_chains: HashMap<&str, &Chain> = old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let new_chain_names: HashSet<&str> = new.chains.iter().map(|c| c.name.as_str()).collect();
        let only_a_pick = |c: &Chain| matches!(c.rules.as_slice(), [rule] if rule.pick.is_some());
        for chain in &new.chains {
            let rewrite = match old_chains.get(chain.name.as_str()) {
                None => {
                    self.write_new_chains += 1;
                    Some(Rewrite::New)
                }
                Some(old) => {
                    let changed =
                        old.rules != chain.rules || chain.sets.iter().any(|s| recreated.contains(s));
                    if changed {
                        self.write_old_rules += old.rules.len();
                    }
                    let swap = only_a_pick(old) && only_a_pick(chain) && chain.sets.is_empty();
                    changed.then_some(if swap { Rewrite::SwapPick } else { Rewrite::Flush })
                }
            };
            if let Some(how) = rewrite {
                self.write.push((chain.clone(), how));
            }
        }
        for chain in &old.chains {
            if !new_chain_names.contains(chain.name.as_str()) {
                self.stale.push((chain.name.clone(), chain.rules.len()));
            }
        }

        for (key, element) in &old.elements {
            match new.elements.get(key) {
                None => {
                    self.delete_elements.push(element.clone());
                    self.element_delta -= 1;
                }
                // An element cannot be changed in place: `add` of an existing key
                // with another value fails. Delete and re-add.
                Some(new_element) if new_element != element => {
                    self.delete_elements.push(element.clone());
                    self.add_elements.push(new_element.clone());
                }
                Some(_) => {}
            }
        }
        for (key, element) in &new.elements {
            if !old.elements.contains_key(key) {
                self.add_elements.push(element.clone());
                self.element_delta += 1;
            }
        }
    }

    /// Hairpin elements and endpoint maps are shared between Services: one is
    /// added when its first user appears and deleted with its last, which the
    /// per-Service differences cannot tell. Decides them from the whole models.
    fn reconcile_shared(&mut self, cfg: &RenderConfig, prev: &ProxyModel, next: &ProxyModel) {
        let hairpin = Container::Fixed(ruleset::HAIRPIN_ENDPOINTS);
        let mut candidates: BTreeSet<Ipv4Addr> = BTreeSet::new();
        let mut maps: BTreeSet<Container> = BTreeSet::new();
        for element in self.delete_elements.iter().chain(&self.add_elements) {
            match (element.container, element.key) {
                (c, ElementKey::SameAddress(ip)) if c == hairpin => {
                    candidates.insert(ip);
                }
                (c @ Container::Endpoints { .. }, _) => {
                    maps.insert(c);
                }
                _ => {}
            }
        }
        if !candidates.is_empty() {
            // Undo the per-Service view, then apply the shared one.
            let before = self.delete_elements.len() + self.add_elements.len();
            self.delete_elements.retain(|e| e.container != hairpin);
            let deleted = before - self.add_elements.len() - self.delete_elements.len();
            let before_adds = self.add_elements.len();
            self.add_elements.retain(|e| e.container != hairpin);
            let added = before_adds - self.add_elements.len();
            self.element_delta += deleted as i64 - added as i64;
            let used_before = endpoint_ips_among(prev, &candidates);
            let used_after = endpoint_ips_among(next, &candidates);
            for ip in candidates {
                let element = Element {
                    container: hairpin,
                    key: ElementKey::SameAddress(ip),
                    value: None,
                    comment: None,
                };
                match (used_before.contains(&ip), used_after.contains(&ip)) {
                    (true, false) => {
                        self.delete_elements.push(element);
                        self.element_delta -= 1;
                    }
                    (false, true) => {
                        self.add_elements.push(element);
                        self.element_delta += 1;
                    }
                    _ => {}
                }
            }
        }
        if !maps.is_empty() {
            let before = endpoint_maps_among(cfg, prev, &maps);
            let after = endpoint_maps_among(cfg, next, &maps);
            for map in maps {
                match (before.contains(&map), after.contains(&map)) {
                    (false, true) => {
                        self.add_maps.push(map);
                        self.new_sets += 1;
                    }
                    (true, false) => {
                        self.delete_maps.push(map);
                        self.new_sets -= 1;
                    }
                    _ => {}
                }
            }
        }
    }

    fn elements(&mut self, old: Vec<Element>, new: Vec<Element>) {
        let old_keys: BTreeMap<_, _> = old.iter().map(|e| ((e.container, e.key), e)).collect();
        let new_keys: BTreeMap<_, _> = new.iter().map(|e| ((e.container, e.key), e)).collect();
        for (key, e) in &old_keys {
            if !new_keys.contains_key(key) {
                self.delete_elements.push((*e).clone());
                self.element_delta -= 1;
            }
        }
        for (key, e) in &new_keys {
            if !old_keys.contains_key(key) {
                self.add_elements.push((*e).clone());
                self.element_delta += 1;
            }
        }
    }

    fn finish(self, cfg: &RenderConfig, mut stats: RenderStats) -> Rendered {
        let mut ops = Vec::new();
        // 1. Create new chains; empty every chain that is rewritten or goes away, so
        //    nothing refers to the sets and chains deleted below.
        for (chain, how) in &self.write {
            match how {
                Rewrite::New => {
                    ops.push(Op::AddChain { name: chain.name.clone(), base: None, comment: None })
                }
                Rewrite::Flush => ops.push(Op::FlushChain { name: chain.name.clone() }),
                Rewrite::SwapPick => {}
            }
        }
        for (name, _) in &self.stale {
            ops.push(Op::FlushChain { name: name.clone() });
        }
        // 2. Affinity sets: delete, then (re-)create.
        for name in &self.delete_sets {
            ops.push(Op::DeleteSet { name: name.clone() });
        }
        for set in &self.add_sets {
            ops.push(add_set(set));
        }
        for map in &self.add_maps {
            ops.extend(add_endpoint_map(*map));
        }
        // 3. Rules of the rewritten chains (they may use the new sets and chains).
        let mut cleanup = Vec::new();
        for (chain, how) in &self.write {
            match (how, chain.rules.as_slice()) {
                (Rewrite::SwapPick, [Rule { pick: Some(pick), .. }]) => {
                    let name = chain.name.clone();
                    ops.push(Op::AddEndpointPick { chain: name.clone(), pick: pick.clone(), first: true });
                    // Later, the chain as a full sync leaves it: the new pick alone.
                    cleanup.push(Op::FlushChain { name: name.clone() });
                    cleanup.push(Op::AddEndpointPick { chain: name, pick: pick.clone(), first: false });
                }
                _ => push_rules(&mut ops, chain),
            }
        }
        // 4. Map elements: deletions first, so a changed value is deleted before it
        //    is re-added. Endpoint and hairpin elements nothing refers to any more
        //    wait for the cleanup, unless their key is added again.
        let added: HashSet<(Container, ElementKey)> =
            self.add_elements.iter().map(|e| (e.container, e.key)).collect();
        for element in &self.delete_elements {
            if element.container.is_deferrable() && !added.contains(&(element.container, element.key)) {
                cleanup.push(element.delete_op());
            } else {
                ops.push(element.delete_op());
            }
        }
        for element in &self.add_elements {
            ops.push(element.add_op());
        }
        // 5. Now unreferenced: the stale chains; endpoint maps out of use go with
        //    the cleanup, after their elements.
        for (name, _) in &self.stale {
            ops.push(Op::DeleteChain { name: name.clone() });
        }
        for map in &self.delete_maps {
            cleanup.push(Op::DeleteMap { name: map.name() });
        }

        let new_rules: usize = self.write.iter().map(|(c, _)| c.rules.len()).sum();
        let stale_rules: usize = self.stale.iter().map(|(_, n)| n).sum();
        stats.chains_written = self.write.len();
        stats.rules_written = new_rules;
        stats.chains_deleted = self.stale.len();
        stats.sets_added = self.add_sets.len() + self.add_maps.len();
        stats.sets_deleted = self.delete_sets.len() + self.delete_maps.len();
        stats.elements_added = self.add_elements.len();
        stats.elements_deleted = self.delete_elements.len();
        stats.delta = RulesetDelta {
            chains: self.write_new_chains as i64 - self.stale.len() as i64,
            rules: new_rules as i64 - self.write_old_rules as i64 - stale_rules as i64,
            sets: self.new_sets,
            elements: self.element_delta,
        };
        Rendered { transaction: transaction(cfg, ops), cleanup: transaction(cfg, cleanup), stats }
    }
}

/// Which of `candidates` are the address of a local endpoint in `model`.
fn endpoint_ips_among(model: &ProxyModel, candidates: &BTreeSet<Ipv4Addr>) -> HashSet<Ipv4Addr> {
    candidates.iter().copied().filter(|ip| model.has_local_endpoint(*ip)).collect()
}

/// Which of `candidates` some port of `model` puts endpoints in.
fn endpoint_maps_among(
    cfg: &RenderConfig,
    model: &ProxyModel,
    candidates: &BTreeSet<Container>,
) -> HashSet<Container> {
    let groups: BTreeSet<u32> = candidates
        .iter()
        .filter_map(|c| match c {
            Container::Endpoints { group, .. } => Some(*group),
            Container::Fixed(_) => None,
        })
        .collect();
    groups
        .into_iter()
        .flat_map(|g| model.ports_in_slots(g * ruleset::SLOTS_PER_MAP..(g + 1) * ruleset::SLOTS_PER_MAP))
        .filter_map(|port| ruleset::endpoint_map_of(cfg, port))
        .filter(|map| candidates.contains(map))
        .collect()
}

/// Which Service owns each destination (address, protocol, port) or NodePort that
/// more than one Service claims. Uncontested destinations are not recorded.
struct Claims<'a> {
    contested: HashMap<ElementKey, Vec<&'a ServiceName>>,
}

impl<'a> Claims<'a> {
    /// The contested destinations of `model`, among `only` if given.
    fn of(model: &'a ProxyModel, only: Option<&HashSet<ElementKey>>) -> Self {
        let contested = match only {
            Some(only) => only
                .iter()
                .map(|key| (*key, model.claimants(key)))
                .filter(|(_, claimants)| claimants.len() > 1)
                .map(|(key, claimants)| (key, claimants.iter().collect()))
                .collect(),
            None => model.contested().map(|(key, claimants)| (*key, claimants.iter().collect())).collect(),
        };
        Self { contested }
    }

    fn allows(&self, service: &ServiceName, key: &ElementKey) -> bool {
        match self.contested.get(key) {
            Some(claimants) => claimants.first().is_some_and(|owner| *owner == service),
            None => true,
        }
    }

    /// Drops the elements of destinations another Service owns.
    fn filter(&self, service: &ServiceName, mut objects: ServiceObjects) -> ServiceObjects {
        if !self.contested.is_empty() {
            objects.elements.retain(|(container, key), _| {
                // Only the dispatch maps are keyed by destination; `cluster-ips`
                // holds bare addresses and may repeat harmlessly.
                !container.is_dispatch() || self.allows(service, key)
            });
        }
        objects
    }

    /// Services that claim a destination whose owner differs between `self` and
    /// `next`: their elements must be re-rendered even if they did not change.
    fn moved_claimants(&self, next: &Claims<'a>) -> Vec<&'a ServiceName> {
        let mut out = Vec::new();
        let keys: HashSet<&ElementKey> = self.contested.keys().chain(next.contested.keys()).collect();
        for key in keys {
            let before = self.contested.get(key).and_then(|c| c.first());
            let after = next.contested.get(key).and_then(|c| c.first());
            if before != after {
                out.extend(self.contested.get(key).into_iter().flatten());
                out.extend(next.contested.get(key).into_iter().flatten());
            }
        }
        out
    }

    fn conflicts(&self) -> Vec<Conflict> {
        let mut out: Vec<Conflict> = self
            .contested
            .iter()
            .filter_map(|(key, claimants)| {
                let (owner, ignored) = claimants.split_first()?;
                Some(Conflict {
                    destination: *key,
                    owner: (*owner).clone(),
                    ignored: ignored.iter().map(|s| (*s).clone()).collect(),
                })
            })
            .collect();
        out.sort_by_key(|c| c.destination);
        out
    }
}
