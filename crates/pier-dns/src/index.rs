//! The records the cluster zone holds, built from Services, EndpointSlices,
//! Namespaces and Pods: an immutable [`Index`] that answers in O(1) per query.
//!
//! Layout, chosen so a lookup is two or three hash probes with no allocation, and
//! an update copies only what it touches:
//!
//! - namespaces by lowercase name, each an `Arc` holding its Services (by
//!   lowercase name, each an `Arc<ServiceData>` with every name below it
//!   precompiled: addresses, endpoint names, SRV sets), its Pods, and the pod
//!   `hostname.subdomain` names;
//! - the reverse map (IP to PTR targets) and the pod IP map, each split in 256
//!   `Arc` shards by address, so changing one Service copies a few small shards
//!   rather than the whole map.
//!
//! Cloning an `Index` is cheap (a map of `Arc`s per namespace and 512 shard
//! pointers); the `upsert_*`/`remove_*` methods then copy on write: the caller
//! clones the current index, applies an event, and publishes the clone while
//! queries keep reading the old one. A full [`IndexBuilder::build`] is O(objects).
//!
//! What becomes a record follows the Kubernetes DNS specification (schema 1.1.0)
//! and CoreDNS's `kubernetes` plugin where the specification leaves room; see
//! [`crate::answer`](mod@crate::answer) for which name answers what.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::wire::{Name, NameBuf, NameError, NameRef, MAX_LABEL_LEN};

/// The label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The schema version served at `dns-version.<zone>` (specification §1).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// The TTL of the `dns-version` TXT record, as CoreDNS and the specification's
/// example (28800 s).
pub const SCHEMA_VERSION_TTL: u32 = 28_800;
/// How many shards the reverse and pod IP maps have.
const SHARDS: usize = 256;

/// How `<a-b-c-d>.<ns>.pod.<zone>` names are answered (CoreDNS's `pods` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodMode {
    /// No pod records: every name under `pod.<zone>` but the apex is NXDOMAIN.
    Disabled,
    /// Any dashed IP answers with that IP, if the namespace exists, without looking
    /// for a Pod (kube-dns's behaviour; what kubeadm's default Corefile enables).
    #[default]
    Insecure,
    /// A dashed IP answers only if a Pod in that namespace has that IP.
    Verified,
}

/// How the zone is served. [`Config::default`] is CoreDNS's defaults for
/// `cluster.local` with kubeadm's `pods insecure`, and autopath on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cluster domain, e.g. `cluster.local` (a final dot is optional).
    pub zone: String,
    /// TTL of positive answers, in seconds (CoreDNS's default: 5).
    pub ttl: u32,
    /// TTL of negative answers (the SOA's MINIMUM and its own TTL, RFC 2308 §5);
    /// `None` means `ttl`, as CoreDNS.
    pub negative_ttl: Option<u32>,
    /// Pod records.
    pub pods: PodMode,
    /// Server-side search path completion for queries from known pods (CoreDNS's
    /// `autopath @kubernetes`); see [`crate::answer`](mod@crate::answer). Needs the client's real
    /// address, and must be off if nodes' `/etc/resolv.conf` carry search domains
    /// (pods with `ClusterFirst` inherit them between `<zone>` and the bare name,
    /// and this server does not know them).
    pub autopath: bool,
    /// The addresses of this DNS service, served at `ns.dns.<zone>` and as the glue
    /// of the zone's NS record. Empty: the apex has no NS record (NODATA).
    pub nameservers: Vec<IpAddr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            zone: "cluster.local".into(),
            ttl: 5,
            negative_ttl: None,
            pods: PodMode::Insecure,
            autopath: true,
            nameservers: Vec::new(),
        }
    }
}

/// A [`Config`] that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dns zone {zone:?}: {source}")]
pub struct ConfigError {
    /// The zone as configured.
    pub zone: String,
    /// Why it is not a domain name.
    pub source: NameError,
}

/// A [`Config`] with its names in wire form, shared by every index built from it.
#[derive(Debug)]
pub(crate) struct Zone {
    pub(crate) config: Config,
    /// The zone, lowercase.
    pub(crate) name: Name,
    /// SOA MNAME, `ns.dns.<zone>` (CoreDNS).
    pub(crate) mname: Name,
    /// SOA RNAME, `hostmaster.<zone>` (CoreDNS).
    pub(crate) rname: Name,
}

impl Zone {
    fn new(config: Config) -> Result<Zone, ConfigError> {
        let err = |source| ConfigError { zone: config.zone.clone(), source };
        let mut zone = NameBuf::from_ascii(&config.zone).map_err(err)?;
        zone.make_lowercase();
        let mname = NameBuf::concat(b"\x02ns\x03dns", zone.as_name()).map_err(err)?;
        let rname = NameBuf::concat(b"\x0ahostmaster", zone.as_name()).map_err(err)?;
        Ok(Zone {
            name: zone.as_name().to_name(),
            mname: mname.as_name().to_name(),
            rname: rname.as_name().to_name(),
            config,
        })
    }

    pub(crate) fn negative_ttl(&self) -> u32 {
        self.config.negative_ttl.unwrap_or(self.config.ttl)
    }
}

/// Everything the DNS server answers from; see the module docs.
#[derive(Clone)]
pub struct Index {
    zone: Arc<Zone>,
    synced: bool,
    serial: u32,
    namespaces: Arc<HashMap<Box<[u8]>, Arc<NsData>>>,
    reverse: Sharded<PtrEntries>,
    pod_ips: Sharded<Vec<PodIpEntry>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("zone", &self.zone.name)
            .field("synced", &self.synced)
            .field("serial", &self.serial)
            .field("namespaces", &self.namespaces.len())
            .field("services", &self.service_count())
            .finish()
    }
}

impl Index {
    /// An index that has not seen the API server yet: queries in the zone get
    /// SERVFAIL (CoreDNS's behaviour before its caches sync), other names are
    /// forwarded. Feed it events, then [`Index::mark_synced`]; or replace it with
    /// a built one.
    ///
    /// # Errors
    ///
    /// If `config.zone` is not a domain name.
    pub fn unsynced(config: Config) -> Result<Index, ConfigError> {
        let mut index = IndexBuilder::new(config)?.build();
        index.synced = false;
        Ok(index)
    }

    /// A builder for a synced index from lists of objects.
    ///
    /// # Errors
    ///
    /// If `config.zone` is not a domain name.
    pub fn builder<'a>(config: Config) -> Result<IndexBuilder<'a>, ConfigError> {
        IndexBuilder::new(config)
    }

    /// Whether the index reflects the API server (false for [`Index::unsynced`]
    /// until [`Index::mark_synced`]).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The configuration served.
    pub fn config(&self) -> &Config {
        &self.zone.config
    }

    /// The SOA serial: set by [`IndexBuilder::serial`], incremented (wrapping) by
    /// every change. A server may set it to the time of the last change, as
    /// CoreDNS does, with [`Index::set_serial`].
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Sets the SOA serial.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// How many Services are indexed (ExternalName Services whose name is an IP
    /// are not).
    pub fn service_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.services.len()).sum()
    }

    /// Adds or replaces a Service with its EndpointSlices (the caller passes every
    /// slice labelled for it; slices of other Services are ignored).
    pub fn upsert_service<'s>(
        &mut self,
        service: &Service,
        slices: impl IntoIterator<Item = &'s EndpointSlice>,
    ) {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        self.remove_service_inner(namespace, name);
        let ns_key = lowercase_key(namespace);
        let svc_key = lowercase_key(name);
        let slices: Vec<&EndpointSlice> = slices
            .into_iter()
            .filter(|s| {
                s.metadata.namespace.as_deref().unwrap_or_default().eq_ignore_ascii_case(namespace)
                    && slice_service(s).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .collect();
        if let Some(data) = compile_service(&self.zone, service, &slices, &mut Vec::new()) {
            let data = Arc::new(data);
            add_reverse(&mut self.reverse, &data);
            let namespaces = Arc::make_mut(&mut self.namespaces);
            let ns = namespaces.entry(ns_key).or_insert_with(|| Arc::new(NsData::new()));
            Arc::make_mut(ns).services.insert(svc_key, data);
        }
        self.changed();
    }

    /// Removes a Service (deleted).
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        self.remove_service_inner(namespace, name);
        self.changed();
    }

    /// Adds or replaces a Namespace: names in it exist from now on.
    pub fn upsert_namespace(&mut self, namespace: &Namespace) {
        let name = namespace.metadata.name.as_deref().unwrap_or_default();
        let namespaces = Arc::make_mut(&mut self.namespaces);
        let ns = namespaces.entry(lowercase_key(name)).or_insert_with(|| Arc::new(NsData::new()));
        Arc::make_mut(ns).object = true;
        self.changed();
    }

    /// Removes a Namespace. Its Services and Pods stay until they are removed
    /// themselves (the namespace controller deletes them first anyway).
    pub fn remove_namespace(&mut self, name: &str) {
        let key = lowercase_key(name);
        let namespaces = Arc::make_mut(&mut self.namespaces);
        if let Some(ns) = namespaces.get_mut(&key) {
            Arc::make_mut(ns).object = false;
            if ns.is_empty() {
                namespaces.remove(&key);
            }
        }
        self.changed();
    }

    /// Adds or replaces a Pod (its IPs for autopath and `pods verified`, its
    /// `hostname.subdomain` name).
    pub fn upsert_pod(&mut self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.remove_pod_inner(namespace, name);
        let data = compile_pod(pod);
        for ip in &data.ips {
            if data.indexed {
                let entry = PodIpEntry {
                    namespace: namespace.to_ascii_lowercase().into(),
                    pod: name.into(),
                    autopath: data.autopath,
                };
                self.pod_ips.get_mut(*ip).entry(*ip).or_default().push(entry);
            }
        }
        let namespaces = Arc::make_mut(&mut self.namespaces);
        let ns = namespaces.entry(lowercase_key(namespace)).or_insert_with(|| Arc::new(NsData::new()));
        let ns = Arc::make_mut(ns);
        if let Some(key) = data.host_key.as_ref().filter(|_| data.indexed && !data.ips.is_empty()) {
            ns.pod_hosts.entry(key.clone()).or_default().push(PodHost {
                pod: name.into(),
                v4: data.ips.iter().filter_map(v4).collect(),
                v6: data.ips.iter().filter_map(v6).collect(),
                ready: data.ready,
            });
        }
        ns.pods.insert(name.into(), Arc::new(data));
        self.changed();
    }

    /// Removes a Pod (deleted).
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.remove_pod_inner(namespace, name);
        self.changed();
    }

    fn changed(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }

    /// Marks the index as reflecting the API server: call once every watch has
    /// listed (an [`Index::unsynced`] index fed event by event), after which names
    /// in the zone are answered instead of SERVFAIL. Indexes from
    /// [`IndexBuilder::build`] are synced already.
    pub fn mark_synced(&mut self) {
        self.synced = true;
    }

    fn remove_service_inner(&mut self, namespace: &str, name: &str) {
        let ns_key = lowercase_key(namespace);
        let svc_key = lowercase_key(name);
        let Some(old) = self.namespaces.get(&ns_key).and_then(|ns| ns.services.get(&svc_key)).cloned() else {
            return;
        };
        remove_reverse(&mut self.reverse, &old);
        let namespaces = Arc::make_mut(&mut self.namespaces);
        if let Some(ns) = namespaces.get_mut(&ns_key) {
            Arc::make_mut(ns).services.remove(&svc_key);
            if ns.is_empty() {
                namespaces.remove(&ns_key);
            }
        }
    }

    fn remove_pod_inner(&mut self, namespace: &str, name: &str) {
        let ns_key = lowercase_key(namespace);
        let Some(old) = self.namespaces.get(&ns_key).and_then(|ns| ns.pods.get(name)).cloned() else {
            return;
        };
        for ip in &old.ips {
            let shard = self.pod_ips.get_mut(*ip);
            if let Some(entries) = shard.get_mut(ip) {
                entries.retain(|e| !(e.pod.as_ref() == name && e.namespace.as_bytes() == &*ns_key));
                if entries.is_empty() {
                    shard.remove(ip);
                }
            }
        }
        let namespaces = Arc::make_mut(&mut self.namespaces);
        if let Some(ns) = namespaces.get_mut(&ns_key) {
            let ns = Arc::make_mut(ns);
            ns.pods.remove(name);
            if let Some(key) = &old.host_key {
                if let Some(hosts) = ns.pod_hosts.get_mut(key) {
                    hosts.retain(|h| h.pod.as_ref() != name);
                    if hosts.is_empty() {
                        ns.pod_hosts.remove(key);
                    }
                }
            }
        }
        if self.namespaces.get(&ns_key).is_some_and(|ns| ns.is_empty()) {
            Arc::make_mut(&mut self.namespaces).remove(&ns_key);
        }
    }

    // ---- Lookups, for crate::answer. All take lowercase input. ----

    pub(crate) fn zone(&self) -> &Zone {
        &self.zone
    }

    /// A namespace by lowercase name, if it exists (a Namespace object, or any
    /// Service or Pod in it).
    pub(crate) fn namespace(&self, name: &[u8]) -> Option<&NsData> {
        self.namespaces.get(name).map(|ns| &**ns).filter(|ns| !ns.is_empty())
    }

    /// PTR targets for an address: the first Service whose cluster IP it is, else
    /// every endpoint with that address (CoreDNS's order).
    pub(crate) fn reverse(&self, ip: IpAddr) -> &[PtrEntry] {
        let Some(entries) = self.reverse.get(ip).get(&ip).map(PtrEntries::as_slice) else { return &[] };
        match entries.iter().position(|e| e.endpoint.is_none()) {
            Some(i) => &entries[i..=i],
            None => entries,
        }
    }

    /// The namespace of the pod with this address, if exactly one namespace has
    /// live pods with it and they all resolve with the cluster search path.
    pub(crate) fn autopath_namespace(&self, ip: IpAddr) -> Option<&str> {
        let entries = self.pod_ips.get(ip).get(&ip)?;
        let first = entries.first()?;
        entries
            .iter()
            .all(|e| e.autopath && e.namespace == first.namespace)
            .then_some(first.namespace.as_ref())
    }

    /// Whether a live pod in `namespace` (lowercase) has this address.
    pub(crate) fn pod_has_ip(&self, namespace: &[u8], ip: IpAddr) -> bool {
        self.pod_ips
            .get(ip)
            .get(&ip)
            .is_some_and(|entries| entries.iter().any(|e| e.namespace.as_bytes() == namespace))
    }
}

/// A Service by lowercase namespace and name.
type ServiceKey<'a> = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>);

/// Builds a synced [`Index`] from lists of objects, by reference: `&services`
/// for a `Vec<Service>`, `store.iter().map(|s| &**s)` for a reflector store's
/// `Arc`s.
pub struct IndexBuilder<'a> {
    zone: Arc<Zone>,
    serial: u32,
    services: Vec<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
    namespaces: Vec<&'a Namespace>,
    pods: Vec<&'a Pod>,
}

impl<'a> IndexBuilder<'a> {
    fn new(config: Config) -> Result<IndexBuilder<'a>, ConfigError> {
        Ok(IndexBuilder {
            zone: Arc::new(Zone::new(config)?),
            serial: 1,
            services: Vec::new(),
            slices: Vec::new(),
            namespaces: Vec::new(),
            pods: Vec::new(),
        })
    }

    /// Adds Services.
    pub fn services(&mut self, services: impl IntoIterator<Item = &'a Service>) -> &mut Self {
        self.services.extend(services);
        self
    }

    /// Adds EndpointSlices (matched to Services by their `kubernetes.io/service-name`
    /// label).
    pub fn endpoint_slices(&mut self, slices: impl IntoIterator<Item = &'a EndpointSlice>) -> &mut Self {
        self.slices.extend(slices);
        self
    }

    /// Adds Namespaces.
    pub fn namespaces(&mut self, namespaces: impl IntoIterator<Item = &'a Namespace>) -> &mut Self {
        self.namespaces.extend(namespaces);
        self
    }

    /// Adds Pods.
    pub fn pods(&mut self, pods: impl IntoIterator<Item = &'a Pod>) -> &mut Self {
        self.pods.extend(pods);
        self
    }

    /// Sets the SOA serial (default 1).
    pub fn serial(&mut self, serial: u32) -> &mut Self {
        self.serial = serial;
        self
    }

    /// Builds the index; O(objects).
    pub fn build(&self) -> Index {
        let mut index = Index {
            zone: self.zone.clone(),
            synced: true,
            serial: self.serial,
            namespaces: Arc::new(HashMap::new()),
            reverse: Sharded::new(),
            pod_ips: Sharded::new(),
        };
        // Group slices by Service first, so building is linear. Names are
        // lowercase already in practice: the keys borrow them then.
        let mut by_service: HashMap<ServiceKey<'_>, Vec<&EndpointSlice>> =
            HashMap::with_capacity(self.services.len());
        for slice in &self.slices {
            if let Some(svc) = slice_service(slice) {
                let ns = lowercase(slice.metadata.namespace.as_deref().unwrap_or_default());
                by_service.entry((ns, lowercase(svc))).or_default().push(slice);
            }
        }
        let mut namespaces: HashMap<Box<[u8]>, NsData> = HashMap::new();
        let mut compiled = Vec::with_capacity(self.services.len());
        let mut scratch = Vec::new();
        let mut ptrs = 0;
        for service in &self.services {
            let ns_name = service.metadata.namespace.as_deref().unwrap_or_default();
            let key = (lowercase(ns_name), lowercase(service.metadata.name.as_deref().unwrap_or_default()));
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
            let Some(data) = compile_service(&self.zone, service, slices, &mut scratch) else { continue };
            let data = Arc::new(data);
            ptrs += ptr_count(&data);
            compiled.push(data.clone());
            let (ns_key, svc_key) = key;
            namespaces
                .entry(ns_key.as_bytes().into())
                .or_insert_with(NsData::new)
                .services
                .insert(svc_key.as_bytes().into(), data);
        }
        // Sized up front: growing 256 maps to 100k entries is a good part of
        // the build otherwise.
        let per_shard = ptrs / SHARDS + ptrs / SHARDS / 4 + 4;
        let mut reverse: Vec<HashMap<IpAddr, PtrEntries>> =
            (0..SHARDS).map(|_| HashMap::with_capacity(per_shard)).collect();
        for data in &compiled {
            for_each_ptr(data, |ip, entry| insert_ptr(&mut reverse[shard_of(ip)], ip, entry));
        }
        index.reverse = Sharded { shards: reverse.into_iter().map(Arc::new).collect() };
        for namespace in &self.namespaces {
            let name = namespace.metadata.name.as_deref().unwrap_or_default();
            namespaces.entry(lowercase_key(name)).or_insert_with(NsData::new).object = true;
        }
        index.namespaces = Arc::new(namespaces.into_iter().map(|(k, v)| (k, Arc::new(v))).collect());
        for pod in &self.pods {
            index.upsert_pod(pod);
        }
        index.synced = true;
        index.serial = self.serial;
        index
    }
}

// ---- Compiled data ----

/// One namespace: whether its object exists, its Services and Pods.
#[derive(Clone)]
pub(crate) struct NsData {
    object: bool,
    pub(crate) services: HashMap<Box<[u8]>, Arc<ServiceData>>,
    pods: HashMap<Box<str>, Arc<PodData>>,
    /// `hostname.subdomain` of pods (two labels in wire form, lowercase).
    pub(crate) pod_hosts: HashMap<Box<[u8]>, Vec<PodHost>>,
}

impl NsData {
    fn new() -> NsData {
        NsData { object: false, services: HashMap::new(), pods: HashMap::new(), pod_hosts: HashMap::new() }
    }

    /// Whether the namespace is known only from objects that are gone.
    fn is_empty(&self) -> bool {
        !self.object && self.services.is_empty() && self.pods.is_empty()
    }
}

/// How a Service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A/AAAA with its cluster IPs.
    ClusterIp,
    /// A/AAAA with its endpoints' addresses.
    Headless,
    /// A CNAME to `spec.externalName`.
    ExternalName(Name),
}

/// One Service, every name below `<svc>.<ns>.svc.<zone>` precompiled.
pub(crate) struct ServiceData {
    /// `<svc>.<ns>.svc.<zone>`, lowercase.
    pub(crate) fqdn: Name,
    pub(crate) kind: ServiceKind,
    pub(crate) cluster_v4: Vec<Ipv4Addr>,
    pub(crate) cluster_v6: Vec<Ipv6Addr>,
    pub(crate) publish_not_ready: bool,
    /// Ready endpoints (all of them with `publishNotReadyAddresses`), sorted by
    /// name.
    pub(crate) endpoints: Vec<EndpointData>,
    /// The endpoints' names in wire form, end to end (one allocation per Service
    /// rather than one per endpoint).
    ep_names: Vec<u8>,
    /// The addresses of `endpoints`, grouped per endpoint (see `EndpointData`).
    ep_v4: Vec<Ipv4Addr>,
    ep_v6: Vec<Ipv6Addr>,
    /// Every endpoint address, sorted and deduplicated: a headless Service's A and
    /// AAAA records.
    pub(crate) all_v4: Vec<Ipv4Addr>,
    pub(crate) all_v6: Vec<Ipv6Addr>,
    /// `_<port>._<proto>` sets, for named ports.
    srv_sets: Vec<SrvSet>,
    /// SRV records at the Service's own name: every port, named or not (CoreDNS).
    pub(crate) srv_all: Vec<SrvRecord>,
}

impl ServiceData {
    /// The index of the endpoint whose first label is `label` (lowercase): a binary
    /// search, endpoints being sorted by name.
    pub(crate) fn endpoint(&self, label: &[u8]) -> Option<usize> {
        self.endpoints.binary_search_by(|ep| self.endpoint_label(ep).cmp(label)).ok()
    }

    /// An endpoint's name, `<label>.<svc>.<ns>.svc.<zone>`.
    pub(crate) fn endpoint_name(&self, ep: &EndpointData) -> NameRef<'_> {
        let start = ep.name_start as usize;
        NameRef::trusted(self.ep_names.get(start..start + usize::from(ep.name_len)).unwrap_or(&[0]))
    }

    fn endpoint_label(&self, ep: &EndpointData) -> &[u8] {
        self.endpoint_name(ep).labels().next().unwrap_or_default()
    }

    /// The SRV set of `_<port>._<proto>`, given as two labels in wire form
    /// (lowercase).
    pub(crate) fn srv_set(&self, key: &[u8]) -> Option<&[SrvRecord]> {
        self.srv_sets.iter().find(|s| &*s.key == key).map(|s| &*s.records)
    }

    pub(crate) fn endpoint_v4(&self, ep: &EndpointData) -> &[Ipv4Addr] {
        self.ep_v4.get(ep.v4.start as usize..ep.v4.end as usize).unwrap_or_default()
    }

    pub(crate) fn endpoint_v6(&self, ep: &EndpointData) -> &[Ipv6Addr] {
        self.ep_v6.get(ep.v6.start as usize..ep.v6.end as usize).unwrap_or_default()
    }

    /// The target name of an SRV record.
    pub(crate) fn srv_target(&self, record: &SrvRecord) -> NameRef<'_> {
        self.name_of(record.endpoint)
    }

    /// An endpoint's name by index, or the Service's for `None`.
    fn name_of(&self, endpoint: Option<u32>) -> NameRef<'_> {
        match endpoint.and_then(|i| self.endpoints.get(i as usize)) {
            Some(ep) => self.endpoint_name(ep),
            None => self.fqdn.as_name(),
        }
    }

    /// Whether a headless Service has no endpoint to answer with (NXDOMAIN,
    /// specification §2.4.1).
    pub(crate) fn is_empty_headless(&self) -> bool {
        self.kind == ServiceKind::Headless && self.endpoints.is_empty()
    }
}

/// One endpoint name, `<hostname>.<svc>.<ns>.svc.<zone>`: the endpoint's
/// `hostname`, or its address with dashes (CoreDNS: `10-1-2-3`, `fd00--1`).
pub(crate) struct EndpointData {
    /// Where the name is in `ServiceData::ep_names`.
    name_start: u32,
    name_len: u8,
    v4: Range<u32>,
    v6: Range<u32>,
}

struct SrvSet {
    /// `_<port>._<proto>` in wire form, lowercase, without a root label.
    key: Box<[u8]>,
    records: Vec<SrvRecord>,
}

/// One SRV record: the port, and the target (an endpoint, or the Service itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SrvRecord {
    pub(crate) port: u16,
    /// An index into `ServiceData::endpoints`; `None` is the Service's name.
    pub(crate) endpoint: Option<u32>,
}

/// A PTR target: a Service's name (its cluster IP) or one of its endpoint names.
#[derive(Clone)]
pub(crate) struct PtrEntry {
    pub(crate) service: Arc<ServiceData>,
    pub(crate) endpoint: Option<u32>,
}

impl PtrEntry {
    pub(crate) fn target(&self) -> NameRef<'_> {
        self.service.name_of(self.endpoint)
    }
}

/// The PTR entries of one address: almost always one, kept without a `Vec`.
#[derive(Clone)]
pub(crate) enum PtrEntries {
    One(PtrEntry),
    More(Vec<PtrEntry>),
}

impl PtrEntries {
    fn as_slice(&self) -> &[PtrEntry] {
        match self {
            PtrEntries::One(e) => std::slice::from_ref(e),
            PtrEntries::More(v) => v,
        }
    }

    fn push(&mut self, entry: PtrEntry) {
        match self {
            PtrEntries::One(first) => *self = PtrEntries::More(vec![first.clone(), entry]),
            PtrEntries::More(v) => v.push(entry),
        }
        if let PtrEntries::More(v) = self {
            sort_ptr_entries(v);
        }
    }

    /// Removes the entries of `service`; false if none is left.
    fn remove_service(&mut self, service: &Arc<ServiceData>) -> bool {
        match self {
            PtrEntries::One(e) => !Arc::ptr_eq(&e.service, service),
            PtrEntries::More(v) => {
                v.retain(|e| !Arc::ptr_eq(&e.service, service));
                !v.is_empty()
            }
        }
    }
}

/// A pod's `<hostname>.<subdomain>` name.
#[derive(Clone)]
pub(crate) struct PodHost {
    pod: Box<str>,
    pub(crate) v4: Vec<Ipv4Addr>,
    pub(crate) v6: Vec<Ipv6Addr>,
    /// The Ready condition is True.
    pub(crate) ready: bool,
}

struct PodData {
    ips: Vec<IpAddr>,
    host_key: Option<Box<[u8]>>,
    ready: bool,
    /// In the pod IP map: not host-network, not terminal, not being deleted.
    indexed: bool,
    /// Resolves with exactly the cluster search path.
    autopath: bool,
}

#[derive(Clone)]
struct PodIpEntry {
    namespace: Box<str>,
    pod: Box<str>,
    autopath: bool,
}

/// A map by IP address in shards, each shared until written.
#[derive(Clone)]
struct Sharded<V> {
    shards: Vec<Arc<HashMap<IpAddr, V>>>,
}

impl<V: Clone> Sharded<V> {
    fn new() -> Sharded<V> {
        Sharded { shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect() }
    }

    fn get(&self, ip: IpAddr) -> &HashMap<IpAddr, V> {
        &self.shards[shard_of(ip)]
    }

    fn get_mut(&mut self, ip: IpAddr) -> &mut HashMap<IpAddr, V> {
        Arc::make_mut(&mut self.shards[shard_of(ip)])
    }
}

fn shard_of(ip: IpAddr) -> usize {
    // The low octets vary most within a cluster's ranges.
    let bits = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) as u64) ^ ((u128::from(v6) >> 64) as u64),
    };
    (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % SHARDS
}

fn add_reverse(reverse: &mut Sharded<PtrEntries>, data: &Arc<ServiceData>) {
    for_each_ptr(data, |ip, entry| insert_ptr(reverse.get_mut(ip), ip, entry));
}

fn insert_ptr(shard: &mut HashMap<IpAddr, PtrEntries>, ip: IpAddr, entry: PtrEntry) {
    match shard.entry(ip) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(entry),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(PtrEntries::One(entry));
        }
    }
}

fn remove_reverse(reverse: &mut Sharded<PtrEntries>, data: &Arc<ServiceData>) {
    for_each_ptr(data, |ip, _| {
        let shard = reverse.get_mut(ip);
        if let Some(entries) = shard.get_mut(&ip) {
            if !entries.remove_service(data) {
                shard.remove(&ip);
            }
        }
    });
}

/// Cluster IPs first, then by name, so answers do not depend on build order.
fn sort_ptr_entries(entries: &mut [PtrEntry]) {
    entries.sort_by(|a, b| {
        (a.endpoint.is_some(), a.target().as_wire()).cmp(&(b.endpoint.is_some(), b.target().as_wire()))
    });
}

/// Calls `f` with the reverse entries of a Service: its cluster IPs, and its
/// endpoints' addresses.
fn for_each_ptr(data: &Arc<ServiceData>, mut f: impl FnMut(IpAddr, PtrEntry)) {
    let entry = |endpoint| PtrEntry { service: data.clone(), endpoint };
    for ip in &data.cluster_v4 {
        f(IpAddr::V4(*ip), entry(None));
    }
    for ip in &data.cluster_v6 {
        f(IpAddr::V6(*ip), entry(None));
    }
    for (i, ep) in data.endpoints.iter().enumerate() {
        for ip in data.endpoint_v4(ep) {
            f(IpAddr::V4(*ip), entry(Some(i as u32)));
        }
        for ip in data.endpoint_v6(ep) {
            f(IpAddr::V6(*ip), entry(Some(i as u32)));
        }
    }
}

/// How many reverse entries a Service has.
fn ptr_count(data: &ServiceData) -> usize {
    data.cluster_v4.len() + data.cluster_v6.len() + data.ep_v4.len() + data.ep_v6.len()
}

fn lowercase_key(s: &str) -> Box<[u8]> {
    s.as_bytes().to_ascii_lowercase().into_boxed_slice()
}

/// `s` in lowercase, borrowed when it is already.
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    }
}

fn v6(ip: &IpAddr) -> Option<Ipv6Addr> {
    match ip {
        IpAddr::V6(v6) => Some(*v6),
        IpAddr::V4(_) => None,
    }
}

/// The Service a slice belongs to, from its label.
fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME).map(String::as_str)
}

/// Whether `label` can be one label of a name.
fn valid_label(label: &[u8]) -> bool {
    !label.is_empty() && label.len() <= MAX_LABEL_LEN
}

/// The dashed form of an address used as an endpoint's name when it has no
/// hostname: `10-1-2-3`; IPv6 as its compressed text with `:` replaced, and a `0`
/// added after a final dash (CoreDNS's `endpointHostname`).
pub(crate) fn dashed_ip(ip: IpAddr) -> Label {
    let mut label = Label::default();
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    label.push(b'-');
                }
                if octet >= 100 {
                    label.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    label.push(b'0' + octet / 10 % 10);
                }
                label.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            // At most 39 characters: fits a label.
            use std::io::Write;
            let mut text = [0u8; 48];
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            let _ = write!(cursor, "{v6}");
            let len = cursor.position() as usize;
            for &b in text.get(..len).unwrap_or_default() {
                label.push(if b == b':' { b'-' } else { b });
            }
            if label.as_bytes().last() == Some(&b'-') {
                label.push(b'0');
            }
        }
    }
    label
}

/// One label, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label {
    len: u8,
    bytes: [u8; MAX_LABEL_LEN],
}

impl Default for Label {
    fn default() -> Label {
        Label { len: 0, bytes: [0; MAX_LABEL_LEN] }
    }
}

impl Label {
    /// A label from `s` in lowercase; `None` if empty or too long.
    fn lowercase(s: &str) -> Option<Label> {
        if !valid_label(s.as_bytes()) {
            return None;
        }
        let mut label = Label::default();
        for b in s.bytes() {
            label.push(b.to_ascii_lowercase());
        }
        Some(label)
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(usize::from(self.len)) {
            *slot = b;
            self.len += 1;
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Label) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Label) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Compiles one Service and its slices. `None` when the Service has no records:
/// an ExternalName that is empty, not a name, or an IP address (CoreDNS skips
/// those too), or a Service without a name.
/// `scratch` is reused from one Service to the next.
fn compile_service(
    zone: &Zone,
    service: &Service,
    slices: &[&EndpointSlice],
    scratch: &mut Vec<(Label, IpAddr)>,
) -> Option<ServiceData> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    if !valid_label(name.as_bytes()) || !valid_label(namespace.as_bytes()) {
        return None;
    }
    let spec = service.spec.as_ref();
    let mut fqdn = NameBuf::root();
    for label in [name.as_bytes(), namespace.as_bytes(), b"svc"] {
        fqdn.push_label(label).ok()?;
    }
    fqdn.push_name(zone.name.as_name()).ok()?;
    fqdn.make_lowercase();

    let type_ = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    let mut cluster_ips: Vec<&str> =
        spec.and_then(|s| s.cluster_ips.as_ref()).into_iter().flatten().map(String::as_str).collect();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.and_then(|s| s.cluster_ip.as_deref()));
    }
    let kind = if type_ == "ExternalName" {
        let target = spec.and_then(|s| s.external_name.as_deref()).unwrap_or_default();
        if target.is_empty() || target.parse::<IpAddr>().is_ok() {
            return None;
        }
        let target = Name::from_ascii(target).ok()?;
        if target.as_name().is_root() {
            return None;
        }
        ServiceKind::ExternalName(target)
    } else if cluster_ips.first() == Some(&"None") {
        ServiceKind::Headless
    } else {
        ServiceKind::ClusterIp
    };
    let publish_not_ready = spec.and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut data = ServiceData {
        fqdn: fqdn.as_name().to_name(),
        kind,
        cluster_v4: Vec::new(),
        cluster_v6: Vec::new(),
        publish_not_ready,
        endpoints: Vec::new(),
        ep_names: Vec::new(),
        ep_v4: Vec::new(),
        ep_v6: Vec::new(),
        all_v4: Vec::new(),
        all_v6: Vec::new(),
        srv_sets: Vec::new(),
        srv_all: Vec::new(),
    };
    if let ServiceKind::ExternalName(_) = data.kind {
        return Some(data);
    }
    if data.kind == ServiceKind::ClusterIp {
        for ip in cluster_ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            match ip {
                IpAddr::V4(v4) if !data.cluster_v4.contains(&v4) => data.cluster_v4.push(v4),
                IpAddr::V6(v6) if !data.cluster_v6.contains(&v6) => data.cluster_v6.push(v6),
                _ => {}
            }
        }
    }
    compile_endpoints(&mut data, slices, scratch);
    // SRV: a ClusterIP Service's records point at the Service, with its ports; a
    // headless Service's at each endpoint, with the slices' ports (what the
    // client must connect to, as CoreDNS does).
    let mut named: Vec<(Box<[u8]>, SrvRecord)> = Vec::new();
    if data.kind == ServiceKind::ClusterIp {
        for port in spec.and_then(|s| s.ports.as_ref()).into_iter().flatten() {
            let Ok(number) = u16::try_from(port.port) else { continue };
            let record = SrvRecord { port: number, endpoint: None };
            data.srv_all.push(record);
            if let Some(key) = srv_key(port.name.as_deref(), port.protocol.as_deref()) {
                named.push((key, record));
            }
        }
    } else {
        let ports = endpoint_ports(&data, slices);
        for (key, record) in ports {
            data.srv_all.push(record);
            if let Some(key) = key {
                named.push((key, record));
            }
        }
    }
    data.srv_all.sort();
    data.srv_all.dedup();
    named.sort();
    named.dedup();
    for (key, record) in named {
        match data.srv_sets.last_mut() {
            Some(set) if set.key == key => set.records.push(record),
            _ => data.srv_sets.push(SrvSet { key, records: vec![record] }),
        }
    }
    Some(data)
}

/// `_<name>._<proto>` in wire form, lowercase, for a named port.
fn srv_key(name: Option<&str>, protocol: Option<&str>) -> Option<Box<[u8]>> {
    let name = name.filter(|n| !n.is_empty())?;
    let protocol = protocol.unwrap_or("TCP");
    let mut key = Vec::with_capacity(name.len() + protocol.len() + 4);
    for label in [name, protocol] {
        if label.len() + 1 > MAX_LABEL_LEN {
            return None;
        }
        key.push(label.len() as u8 + 1);
        key.push(b'_');
        key.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    Some(key.into_boxed_slice())
}

/// The name an endpoint goes by: its hostname, or its dashed address.
fn endpoint_label(hostname: Option<&str>, ip: IpAddr) -> Option<Label> {
    match hostname {
        Some(h) => Label::lowercase(h),
        None => Some(dashed_ip(ip)),
    }
}

/// Whether an endpoint of a slice is served.
fn served(ep: &k8s_openapi::api::discovery::v1::Endpoint, publish_not_ready: bool) -> bool {
    publish_not_ready || ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

/// The addresses of a slice's endpoints of its family, with their names.
fn slice_addresses<'s>(
    slice: &'s EndpointSlice,
    publish_not_ready: bool,
) -> impl Iterator<Item = (Label, IpAddr)> + 's {
    let family_v6 = match slice.address_type.as_str() {
        "IPv4" => Some(false),
        "IPv6" => Some(true),
        _ => None,
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(move |_| family_v6.is_some())
        .filter(move |ep| served(ep, publish_not_ready))
        .flat_map(move |ep| {
            let hostname = ep.hostname.as_deref().filter(|h| valid_label(h.as_bytes()));
            ep.addresses.iter().filter_map(move |address| {
                let ip = address.parse::<IpAddr>().ok().filter(|ip| Some(ip.is_ipv6()) == family_v6)?;
                Some((endpoint_label(hostname, ip)?, ip))
            })
        })
}

/// Collects the ready endpoints of `slices` into `data`, merged by name and
/// sorted by it.
fn compile_endpoints(data: &mut ServiceData, slices: &[&EndpointSlice], raw: &mut Vec<(Label, IpAddr)>) {
    raw.clear();
    raw.extend(slices.iter().flat_map(|s| slice_addresses(s, data.publish_not_ready)));
    raw.sort_unstable();
    raw.dedup();
    let suffix = data.fqdn.as_wire();
    data.ep_names.reserve(raw.len() * (suffix.len() + 12));
    data.endpoints.reserve(raw.len());
    let v4 = raw.iter().filter(|r| r.1.is_ipv4()).count();
    data.ep_v4.reserve(v4);
    data.ep_v6.reserve(raw.len() - v4);
    let mut i = 0;
    while i < raw.len() {
        let label = raw[i].0;
        let start = data.ep_names.len();
        let len = 1 + usize::from(label.len) + suffix.len();
        let group_end = raw[i..].iter().position(|r| r.0 != label).map_or(raw.len(), |n| i + n);
        if len > crate::wire::MAX_NAME_LEN || start > u32::MAX as usize {
            // Too long once the Service's name is added: no record for it.
            i = group_end;
            continue;
        }
        data.ep_names.push(label.len);
        data.ep_names.extend_from_slice(label.as_bytes());
        data.ep_names.extend_from_slice(suffix);
        let (v4_start, v6_start) = (data.ep_v4.len() as u32, data.ep_v6.len() as u32);
        for (_, ip) in &raw[i..group_end] {
            match ip {
                IpAddr::V4(ip) => data.ep_v4.push(*ip),
                IpAddr::V6(ip) => data.ep_v6.push(*ip),
            }
        }
        data.endpoints.push(EndpointData {
            name_start: start as u32,
            name_len: len as u8,
            v4: v4_start..data.ep_v4.len() as u32,
            v6: v6_start..data.ep_v6.len() as u32,
        });
        i = group_end;
    }
    // The Service's own addresses: only a headless Service answers with them.
    if data.kind != ServiceKind::Headless {
        return;
    }
    data.all_v4 = data.ep_v4.clone();
    data.all_v4.sort_unstable();
    data.all_v4.dedup();
    data.all_v6 = data.ep_v6.clone();
    data.all_v6.sort_unstable();
    data.all_v6.dedup();
}

/// The SRV records of a headless Service: every served endpoint with every port
/// of its slice; the key is `Some` for named ports.
fn endpoint_ports(data: &ServiceData, slices: &[&EndpointSlice]) -> Vec<(Option<Box<[u8]>>, SrvRecord)> {
    let mut out = Vec::new();
    for slice in slices {
        let ports: Vec<(Option<Box<[u8]>>, u16)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let number = u16::try_from(p.port?).ok()?;
                Some((srv_key(p.name.as_deref(), p.protocol.as_deref()), number))
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        for (label, _) in slice_addresses(slice, data.publish_not_ready) {
            let Some(idx) = data.endpoint(label.as_bytes()) else { continue };
            for (key, number) in &ports {
                out.push((key.clone(), SrvRecord { port: *number, endpoint: Some(idx as u32) }));
            }
        }
    }
    out
}

fn compile_pod(pod: &Pod) -> PodData {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    ips.dedup();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    // The resolv.conf kubelet writes for ClusterFirst (and ClusterFirstWithHostNet
    // off the host network) searches `<ns>.svc.<zone> svc.<zone> <zone>` and then
    // the node's domains and `dnsConfig.searches`; with extra domains, the order
    // after `<zone>` is not ours to guess.
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let extra_searches = spec
        .and_then(|s| s.dns_config.as_ref())
        .and_then(|c| c.searches.as_ref())
        .is_some_and(|s| !s.is_empty());
    let autopath =
        !host_network && matches!(policy, "ClusterFirst" | "ClusterFirstWithHostNet") && !extra_searches;
    let host_key = spec.and_then(|s| {
        let hostname = s.hostname.as_deref().filter(|h| valid_label(h.as_bytes()))?;
        let subdomain = s.subdomain.as_deref().filter(|h| valid_label(h.as_bytes()))?;
        let mut key = Vec::with_capacity(hostname.len() + subdomain.len() + 2);
        for label in [hostname, subdomain] {
            key.push(label.len() as u8);
            key.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
        Some(key.into_boxed_slice())
    });
    PodData {
        ips,
        host_key: if host_network { None } else { host_key },
        ready,
        indexed: !host_network && !terminal && !deleting,
        autopath,
    }
}
