//! Pod `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` contents (pure), as
//! kubelet writes them.
//!
//! Rules follow kubelet's `pkg/kubelet/network/dns` and `managedHostsFileContent`,
//! and the file layout follows what the container runtime writes from kubelet's
//! `DNSConfig` (containerd's `parseDNSOptions`): a `search` line, one `nameserver`
//! line each, an `options` line; lines with nothing to say are left out.

use std::net::{IpAddr, Ipv4Addr};

/// At most this many nameservers (glibc's `MAXNS`), as kubelet trims.
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (kubelet's `MaxDNSSearchPaths`).
pub const MAX_SEARCH_PATHS: usize = 32;
/// At most this many characters in the search list (kubelet's `MaxDNSSearchListChars`).
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A pod's `dnsPolicy` (API conventions: `spec.dnsPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsPolicy {
    /// The cluster DNS first, then the node's search domains (the API default).
    #[default]
    ClusterFirst,
    /// Like `ClusterFirst`, also for pods on the host network.
    ClusterFirstWithHostNet,
    /// The node's resolver configuration.
    Default,
    /// Only `dnsConfig`.
    None,
}

impl DnsPolicy {
    /// Parses the API's spelling; an empty string is the default, `ClusterFirst`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "ClusterFirst" => Some(Self::ClusterFirst),
            "ClusterFirstWithHostNet" => Some(Self::ClusterFirstWithHostNet),
            "Default" => Some(Self::Default),
            "None" => Some(Self::None),
            _ => None,
        }
    }
}

/// One of `spec.dnsConfig.options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOption {
    /// Name, e.g. `ndots`.
    pub name: String,
    /// Value, e.g. `2`; `None` for flags such as `edns0`.
    pub value: Option<String>,
}

/// `spec.dnsConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodDnsConfig {
    /// Extra nameservers.
    pub nameservers: Vec<String>,
    /// Extra search domains.
    pub searches: Vec<String>,
    /// Options, overriding those of the same name.
    pub options: Vec<DnsOption>,
}

/// A parsed resolver configuration: what goes into a pod's `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line, each `name` or `name:value`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses a host `resolv.conf` as kubelet's `parseResolvConf`: comments start with
    /// `#` or `;`, the last `search` line wins and its entries lose a trailing dot
    /// (`.` alone is dropped), `options` accumulate with later values replacing earlier
    /// ones of the same name.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some((&key, rest)) = fields.split_first() else {
                continue;
            };
            match key {
                "nameserver" => {
                    if let Some(ns) = rest.first() {
                        conf.nameservers.push((*ns).to_string());
                    }
                }
                "search" => {
                    conf.searches = rest
                        .iter()
                        .filter(|s| **s != ".")
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                        .collect();
                }
                "options" => {
                    for opt in rest {
                        merge_option(&mut conf.options, opt);
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The file text: `search`, `nameserver`s, `options`, each line only when it has
    /// entries.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// Replaces an option of the same name in place, or appends it.
fn merge_option(options: &mut Vec<String>, opt: &str) {
    let name = opt.split_once(':').map_or(opt, |(n, _)| n);
    match options.iter_mut().find(|o| o.split_once(':').map_or(o.as_str(), |(n, _)| n) == name) {
        Some(existing) => *existing = opt.to_string(),
        None => options.push(opt.to_string()),
    }
}

fn omit_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// The cluster's DNS settings (kubelet's `--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The DNS service IPs, e.g. `10.96.0.10`.
    pub servers: Vec<IpAddr>,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self { servers: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))], domain: "cluster.local".to_string() }
    }
}

/// Computes a pod's resolver configuration as kubelet's `GetPodDNS`:
///
/// - `ClusterFirst` (pods not on the host network) and `ClusterFirstWithHostNet`:
///   the cluster DNS servers only; search `<ns>.svc.<domain> svc.<domain> <domain>`
///   followed by the host's search domains; options `ndots:5` (the host's options are
///   not used). With no cluster DNS configured, kubelet falls back to `Default`.
/// - `Default`: the host's file as parsed.
/// - `None`: empty, then `dnsConfig`.
///
/// `dnsConfig` is then appended (duplicates dropped; options replace by name) and the
/// result trimmed to 3 nameservers and kubelet's search limits. Kubelet builds the
/// merged options from a Go map, so their order there is unspecified; here it is the
/// base options in order, then new names in the order given.
pub fn pod_resolv_conf(
    policy: DnsPolicy,
    namespace: &str,
    cluster: &ClusterDns,
    host: &ResolvConf,
    dns_config: Option<&PodDnsConfig>,
) -> ResolvConf {
    let mut conf = match policy {
        DnsPolicy::None => ResolvConf::default(),
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet if !cluster.servers.is_empty() => {
            let searches = if cluster.domain.is_empty() {
                host.searches.clone()
            } else {
                let d = &cluster.domain;
                let mut s = vec![format!("{namespace}.svc.{d}"), format!("svc.{d}"), d.clone()];
                s.extend(host.searches.iter().cloned());
                omit_duplicates(s)
            };
            ResolvConf {
                nameservers: cluster.servers.iter().map(ToString::to_string).collect(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        _ => host.clone(),
    };
    if let Some(extra) = dns_config {
        let mut ns = conf.nameservers;
        ns.extend(extra.nameservers.iter().cloned());
        conf.nameservers = omit_duplicates(ns);
        let mut s = conf.searches;
        s.extend(extra.searches.iter().cloned());
        conf.searches = omit_duplicates(s);
        for opt in &extra.options {
            let text = match &opt.value {
                Some(v) if !v.is_empty() => format!("{}:{v}", opt.name),
                _ => opt.name.clone(),
            };
            merge_option(&mut conf.options, &text);
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches = fit_search_limits(conf.searches);
    conf
}

/// kubelet's `formDNSSearchFitsLimits`: keep at most 32 domains, then drop from the
/// end while the joined list is longer than 2048 characters.
fn fit_search_limits(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

/// One of `spec.hostAliases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    /// The address.
    pub ip: String,
    /// Names for it.
    pub hostnames: Vec<String>,
}

/// A pod's `/etc/hosts` as kubelet's `managedHostsFileContent` writes it: the
/// localhost and IPv6 boilerplate, one line per pod IP with the hostname (fully
/// qualified first when the pod has a subdomain), then host aliases.
///
/// `hostname` is `spec.hostname` or the pod name; `host_domain` is
/// `<subdomain>.<namespace>.svc.<cluster domain>` when `spec.subdomain` is set.
pub fn hosts_file(
    pod_ips: &[IpAddr],
    hostname: &str,
    host_domain: Option<&str>,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match host_domain {
            Some(d) if !d.is_empty() => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            _ => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
        }
    }
    out
}

/// A pod's `/etc/hostname`: the hostname and a newline.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterDns {
        ClusterDns::default()
    }

    #[test]
    fn cluster_first_matches_upstream_example() {
        // The seed's `kubectl exec ... cat /etc/resolv.conf` on a node whose own
        // resolv.conf has no search line.
        let host = ResolvConf::parse("nameserver 192.0.2.53\noptions edns0\n");
        let conf = pod_resolv_conf(DnsPolicy::ClusterFirst, "default", &cluster(), &host, None);
        assert_eq!(
            conf.render(),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn cluster_first_appends_host_search_without_duplicates() {
        let host =
            ResolvConf::parse("# generated\nsearch example.com. cluster.local .\nnameserver 192.0.2.53\n");
        let conf = pod_resolv_conf(DnsPolicy::ClusterFirst, "shop", &cluster(), &host, None);
        assert_eq!(
            conf.searches,
            ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com"]
        );
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_host() {
        let host = ResolvConf::parse("nameserver 192.0.2.53\n");
        let c = ClusterDns { servers: vec![], domain: "cluster.local".into() };
        let conf = pod_resolv_conf(DnsPolicy::ClusterFirst, "default", &c, &host, None);
        assert_eq!(conf, host);
    }

    #[test]
    fn default_copies_the_host() {
        let host = ResolvConf::parse(
            "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch corp.example\noptions timeout:2 rotate\n",
        );
        let conf = pod_resolv_conf(DnsPolicy::Default, "default", &cluster(), &host, None);
        assert_eq!(
            conf.render(),
            "search corp.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions timeout:2 rotate\n"
        );
    }

    #[test]
    fn none_uses_only_dns_config() {
        // The example from the Kubernetes docs, "Pod's DNS Config".
        let cfg = PodDnsConfig {
            nameservers: vec!["192.0.2.1".into()],
            searches: vec!["ns1.svc.cluster-domain.example".into(), "my.dns.search.suffix".into()],
            options: vec![
                DnsOption { name: "ndots".into(), value: Some("2".into()) },
                DnsOption { name: "edns0".into(), value: None },
            ],
        };
        let host = ResolvConf::parse("nameserver 203.0.113.9\nsearch host.example\n");
        let conf = pod_resolv_conf(DnsPolicy::None, "default", &cluster(), &host, Some(&cfg));
        assert_eq!(
            conf.render(),
            "search ns1.svc.cluster-domain.example my.dns.search.suffix\n\
             nameserver 192.0.2.1\n\
             options ndots:2 edns0\n"
        );
        assert_eq!(pod_resolv_conf(DnsPolicy::None, "default", &cluster(), &host, None).render(), "");
    }

    #[test]
    fn dns_config_merges_into_cluster_first() {
        let cfg = PodDnsConfig {
            nameservers: vec!["10.96.0.10".into(), "192.0.2.1".into()],
            searches: vec!["extra.example".into()],
            options: vec![DnsOption { name: "ndots".into(), value: Some("1".into()) }],
        };
        let conf = pod_resolv_conf(
            DnsPolicy::ClusterFirst,
            "default",
            &cluster(),
            &ResolvConf::default(),
            Some(&cfg),
        );
        assert_eq!(
            conf.render(),
            "search default.svc.cluster.local svc.cluster.local cluster.local extra.example\n\
             nameserver 10.96.0.10\n\
             nameserver 192.0.2.1\n\
             options ndots:1\n"
        );
    }

    #[test]
    fn limits_are_applied() {
        let cfg = PodDnsConfig {
            nameservers: (1..=5).map(|i| format!("192.0.2.{i}")).collect(),
            searches: (0..40).map(|i| format!("d{i}.example")).collect(),
            options: vec![],
        };
        let conf =
            pod_resolv_conf(DnsPolicy::None, "default", &cluster(), &ResolvConf::default(), Some(&cfg));
        assert_eq!(conf.nameservers.len(), 3);
        assert_eq!(conf.searches.len(), 32);
    }

    #[test]
    fn hosts_file_matches_upstream_example() {
        // From the Kubernetes docs, "Adding entries to Pod /etc/hosts with HostAliases".
        let ip: IpAddr = "10.200.0.4".parse().expect("ip");
        assert_eq!(
            hosts_file(&[ip], "nginx", None, &[]),
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.200.0.4\tnginx\n"
        );
        let aliases = [
            HostAlias { ip: "127.0.0.1".into(), hostnames: vec!["foo.local".into(), "bar.local".into()] },
            HostAlias { ip: "10.1.2.3".into(), hostnames: vec!["foo.remote".into(), "bar.remote".into()] },
        ];
        let text = hosts_file(&[ip], "hostaliases-pod", None, &aliases);
        assert!(text.ends_with(
            "10.200.0.4\thostaliases-pod\n\
             \n\
             # Entries added by HostAliases.\n\
             127.0.0.1\tfoo.local\tbar.local\n\
             10.1.2.3\tfoo.remote\tbar.remote\n"
        ));
    }

    #[test]
    fn hosts_file_with_subdomain_puts_fqdn_first() {
        let ip: IpAddr = "10.244.0.7".parse().expect("ip");
        let text =
            hosts_file(&[ip], "busybox-1", Some("busybox-subdomain.my-namespace.svc.cluster.local"), &[]);
        assert!(text.ends_with(
            "10.244.0.7\tbusybox-1.busybox-subdomain.my-namespace.svc.cluster.local\tbusybox-1\n"
        ));
        assert_eq!(hostname_file("busybox-1"), "busybox-1\n");
    }
}
