//! Turning a request line into what it asks for: which resource, namespace, name,
//! subresource and verb, as upstream's `RequestInfoFactory` does.

use std::collections::HashMap;

use http::Method;
use percent_encoding::percent_decode_str;
use pier_api::ResourceDef;

/// A request for a resource path (`/api/v1/namespaces/default/services/kubia`).
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub resource: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// What a path names.
#[derive(Debug)]
pub enum Target {
    /// A resource, collection or subresource.
    Resource(ResourceRequest),
    /// `/api`, `/apis`, `/api/v1`, `/apis/apps`, `/apis/apps/v1`.
    Discovery(DiscoveryPath),
    /// `/version`, `/healthz`, `/livez`, `/readyz`.
    Version,
    Health,
    /// `/openapi/v3` and `/openapi/v3/<gv path>`.
    OpenApiV3(Option<String>),
    OpenApiV2,
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DiscoveryPath {
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
}

/// Query parameters, decoded. kube-rs sends odd forms such as a leading `&`; empty
/// pairs are skipped rather than rejected.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key).map(String::as_str), Some("true") | Some("1"))
    }
}

fn decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_decode_str(&plus_as_space).decode_utf8_lossy().into_owned()
}

/// Namespace subresources that follow `namespaces/<name>` instead of a resource.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Resolves a path and method to its target.
pub fn route(method: &Method, path: &str, query: &Query) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Target::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Target::Health,
        ["healthz", ..] | ["livez", ..] | ["readyz", ..] => Target::Health,
        ["openapi", "v3"] => Target::OpenApiV3(None),
        ["openapi", "v3", rest @ ..] => Target::OpenApiV3(Some(rest.join("/"))),
        ["openapi", "v2"] => Target::OpenApiV2,
        ["api"] => Target::Discovery(DiscoveryPath::Api),
        ["apis"] => Target::Discovery(DiscoveryPath::Apis),
        ["api", "v1"] => Target::Discovery(DiscoveryPath::GroupVersion(String::new(), "v1".into())),
        ["apis", group] => Target::Discovery(DiscoveryPath::Group(group.to_string())),
        ["apis", group, version] => {
            Target::Discovery(DiscoveryPath::GroupVersion(group.to_string(), version.to_string()))
        }
        ["api", "v1", rest @ ..] => resource_target("", "v1", rest, method, query),
        ["apis", group, version, rest @ ..] => resource_target(group, version, rest, method, query),
        _ => Target::NotFound,
    }
}

fn resource_target(group: &str, version: &str, rest: &[&str], method: &Method, query: &Query) -> Target {
    let mut rest: Vec<String> = rest.iter().map(|s| decode(s)).collect();
    // The deprecated `/watch/` prefix is still served upstream.
    let mut watch_prefix = false;
    if rest.first().map(String::as_str) == Some("watch") {
        watch_prefix = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first().map(String::as_str) == Some("namespaces") && rest.len() >= 2 {
        let is_namespace_itself =
            rest.len() == 2 || (rest.len() == 3 && NAMESPACE_SUBRESOURCES.contains(&rest[2].as_str()));
        if !is_namespace_itself {
            namespace = Some(rest[1].clone());
            rest.drain(..2);
        }
    }
    let Some(plural) = rest.first() else { return Target::NotFound };
    if rest.len() > 3 {
        return Target::NotFound;
    }
    let Some(resource) = pier_api::registry::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
    else {
        return Target::NotFound;
    };
    if namespace.is_some() && !resource.is_namespaced() {
        return Target::NotFound;
    }
    let name = rest.get(1).cloned();
    let subresource = rest.get(2).cloned();
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", _) if watch_prefix || query.flag("watch") => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        // POST to a named object is how subresources such as `pods/exec` are reached.
        ("POST", true) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return Target::NotFound,
    };
    Target::Resource(ResourceRequest { resource, namespace, name, subresource, verb })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: Method, path: &str) -> ResourceRequest {
        match route(&method, path, &Query::default()) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_item() {
        let r = resource(Method::GET, "/api/v1/namespaces/default/services/kubia");
        assert_eq!(r.resource.plural, "services");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("kubia"));
        assert_eq!(r.verb, Verb::Get);
    }

    #[test]
    fn namespace_itself_and_its_status() {
        let r = resource(Method::GET, "/api/v1/namespaces/default");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("default"));
        let r = resource(Method::PUT, "/api/v1/namespaces/foo/finalize");
        assert_eq!(r.name.as_deref(), Some("foo"));
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
    }

    #[test]
    fn group_collection_and_subresource() {
        let r = resource(Method::GET, "/apis/apps/v1/deployments");
        assert_eq!(r.verb, Verb::List);
        assert!(r.namespace.is_none());
        let r = resource(Method::PATCH, "/apis/apps/v1/namespaces/ns/deployments/web/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(r.verb, Verb::Patch);
    }

    #[test]
    fn watch_by_query_tolerates_leading_ampersand() {
        let q = Query::parse(Some("&watch=true&resourceVersion=5&labelSelector=app%3Dkubia"));
        assert_eq!(q.get("labelSelector"), Some("app=kubia"));
        match route(&Method::GET, "/api/v1/pods", &q) {
            Target::Resource(r) => assert_eq!(r.verb, Verb::Watch),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_resource_is_not_found() {
        assert!(matches!(route(&Method::GET, "/api/v1/widgets", &Query::default()), Target::NotFound));
        assert!(matches!(
            route(&Method::GET, "/api/v1/namespaces/x/nodes", &Query::default()),
            Target::NotFound
        ));
    }
}
