//! The small part of Go's `net/url` that probes need: building the probe URL and following `Location`.

use crate::gofmt;

/// An absolute `http`/`https` URL, kept in the pieces Go's client looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: String,
    /// Host name or IP literal, without IPv6 brackets.
    pub(crate) host: String,
    /// Explicit port, if the URL has one.
    pub(crate) port: Option<u16>,
    /// Escaped path, possibly empty.
    pub(crate) path: String,
    /// Raw query without the `?`.
    pub(crate) query: Option<String>,
}

impl Url {
    /// Upstream's `formatURL`: the action's path (with any query) on `scheme://host:port`.
    pub(crate) fn for_action(scheme: &str, host: &str, port: u16, path: &str) -> Url {
        let path = path.split('#').next().unwrap_or_default();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path, None),
        };
        let mut path = escape_path(path);
        // Go prints a host-bearing URL with a relative path as if the path were rooted.
        if !path.is_empty() && !path.starts_with('/') {
            path.insert(0, '/');
        }
        Url { scheme: scheme.to_string(), host: host.to_string(), port: Some(port), path, query }
    }

    /// The port to connect to: explicit, or the scheme's default.
    pub(crate) fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// `host[:port]` as Go's `URL.Host` holds it, used for the `Host` header.
    pub(crate) fn authority(&self) -> String {
        match self.port {
            Some(port) => gofmt::join_host_port(&self.host, port),
            None if self.host.contains(':') => format!("[{}]", self.host),
            None => self.host.clone(),
        }
    }

    /// The request target: path (at least `/`) and query.
    pub(crate) fn request_target(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }

    /// Resolves a `Location` header value against this URL (RFC 3986 reference resolution).
    pub(crate) fn join(&self, location: &str) -> Option<Url> {
        let location = location.split('#').next().unwrap_or_default();
        if let Some((scheme, rest)) = location.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return None;
            }
            return Url::parse_authority_and_path(scheme, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse_authority_and_path(self.scheme.clone(), rest);
        }
        let (path, query) = match location.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None if location.is_empty() => return Some(self.clone()),
            None => (location, None),
        };
        let path = if path.is_empty() {
            self.path.clone()
        } else if path.starts_with('/') {
            escape_path(path)
        } else {
            let base = match self.path.rfind('/') {
                Some(at) => &self.path[..=at],
                None => "/",
            };
            format!("{base}{}", escape_path(path))
        };
        Some(Url { path: remove_dot_segments(&path), query, ..self.clone() })
    }

    fn parse_authority_and_path(scheme: String, rest: &str) -> Option<Url> {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = after.strip_prefix(':').filter(|p| !p.is_empty());
            (host.to_string(), port.map(str::parse::<u16>).transpose().ok()?)
        } else {
            match authority.rsplit_once(':') {
                Some((h, "")) => (h.to_string(), None),
                Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        Some(Url { scheme, host: host.to_ascii_lowercase(), port, path: escape_path(path), query })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Percent-encodes the bytes Go's `URL.EscapedPath` would, leaving existing escapes alone.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_upstream() {
        assert_eq!(Url::for_action("http", "10.244.0.5", 8080, "/").to_string(), "http://10.244.0.5:8080/");
        assert_eq!(Url::for_action("http", "10.244.0.5", 8080, "").to_string(), "http://10.244.0.5:8080");
        assert_eq!(Url::for_action("http", "10.244.0.5", 8080, "").request_target(), "/");
        let u = Url::for_action("https", "fd00::5", 443, "healthz?full=1");
        assert_eq!(u.to_string(), "https://[fd00::5]:443/healthz?full=1");
        assert_eq!(Url::for_action("http", "h", 1, "/a b").path, "/a%20b");
    }

    #[test]
    fn joins_locations() {
        let base = Url::for_action("http", "10.0.0.1", 80, "/a/b");
        assert_eq!(base.join("/c").map(|u| u.to_string()), Some("http://10.0.0.1:80/c".into()));
        assert_eq!(base.join("c?x=1").map(|u| u.to_string()), Some("http://10.0.0.1:80/a/c?x=1".into()));
        assert_eq!(base.join("../d").map(|u| u.to_string()), Some("http://10.0.0.1:80/d".into()));
        let other = base.join("https://example.com/x").expect("absolute");
        assert_eq!((other.host.as_str(), other.effective_port()), ("example.com", 443));
        assert_eq!(base.join("//[fd00::1]:81/y").map(|u| u.authority()), Some("[fd00::1]:81".into()));
    }
}
