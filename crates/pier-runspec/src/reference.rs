//! Image references and the patterns that match them.
//!
//! References are normalised the way Docker and containerd do: `busybox` is
//! `docker.io/library/busybox:latest`, `index.docker.io/x/y` is `docker.io/x/y`, and a digest is kept
//! apart from the tag.

/// A normalised image reference: `name` is fully qualified (`docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry and repository, e.g. `docker.io/luksa/kubia`.
    pub name: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if given.
    pub digest: Option<String>,
}

impl Reference {
    /// Normalises `image`. Never fails: odd input just yields an odd name that matches nothing.
    pub fn parse(image: &str) -> Self {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (image, None),
        };
        let (name, tag) = split_tag(rest);
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Reference { name: qualify(name), tag, digest }
    }
}

/// Splits `name:tag`, where the tag is after the last `:` that follows the last `/` (so a registry port
/// is not taken for a tag).
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&reference[..at], Some(&reference[at + 1..]))
        }
        None => (reference, None),
    }
}

/// Adds the default registry (`docker.io`) and the `library/` namespace of official images.
fn qualify(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    let is_registry = first.contains(['.', ':']) || first == "localhost";
    match rest {
        Some(rest) if is_registry => {
            let registry = if first == "index.docker.io" || first == "registry-1.docker.io" {
                "docker.io"
            } else {
                first
            };
            if registry == "docker.io" && !rest.contains('/') {
                format!("docker.io/library/{rest}")
            } else {
                format!("{registry}/{rest}")
            }
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

/// A pattern in the image table: a reference in which `*` matches any run of characters.
///
/// A pattern that starts with `*` is matched against the fully qualified name as written (`*/kubia`
/// matches `docker.io/parthghetia/kubia` and `quay.io/x/kubia`); any other pattern is normalised like a
/// reference first. Without a tag or digest it matches every tag; with one, only that tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Pattern {
    /// Parses a table pattern.
    pub fn parse(pattern: &str) -> Self {
        let (rest, digest) = match pattern.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (pattern, None),
        };
        let (name, tag) = split_tag(rest);
        let name = if name.starts_with('*') { name.to_string() } else { qualify(name) };
        Pattern { name, tag: tag.map(str::to_string), digest }
    }

    /// Whether `reference` matches.
    pub fn matches(&self, reference: &Reference) -> bool {
        if !glob(&self.name, &reference.name) {
            return false;
        }
        if let Some(digest) = &self.digest {
            if reference.digest.as_deref() != Some(digest.as_str()) {
                return false;
            }
        }
        match (&self.tag, &reference.tag) {
            (None, _) => true,
            (Some(want), Some(have)) => glob(want, have),
            (Some(_), None) => false,
        }
    }

    /// How specific the pattern is, for choosing among several matches: a tag or digest beats none, a
    /// name without wildcards beats one with, and then more literal characters win.
    pub fn specificity(&self) -> (bool, bool, usize) {
        let literal = self.name.chars().filter(|c| *c != '*').count();
        (self.tag.is_some() || self.digest.is_some(), !self.name.contains('*'), literal)
    }
}

/// `*`-only glob matching over whole strings.
fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s)
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(r("busybox").name, "docker.io/library/busybox");
        assert_eq!(r("busybox").tag.as_deref(), Some("latest"));
        assert_eq!(r("docker.io/busybox:1.36").name, "docker.io/library/busybox");
        assert_eq!(r("docker.io/busybox:1.36").tag.as_deref(), Some("1.36"));
        assert_eq!(r("index.docker.io/luksa/kubia").name, "docker.io/luksa/kubia");
        assert_eq!(r("luksa/kubia:v2").name, "docker.io/luksa/kubia");
        assert_eq!(r("localhost:5000/app").name, "localhost:5000/app");
        assert_eq!(r("localhost:5000/app").tag.as_deref(), Some("latest"));
        assert_eq!(r("registry.k8s.io/pause:3.10").name, "registry.k8s.io/pause");
        let digest = r("busybox@sha256:abc");
        assert_eq!((digest.tag, digest.digest.as_deref()), (None, Some("sha256:abc")));
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse;
        assert!(p("busybox").matches(&r("docker.io/library/busybox:1.36")));
        assert!(p("busybox").matches(&r("busybox@sha256:abc")));
        assert!(p("busybox:latest").matches(&r("busybox")));
        assert!(!p("busybox:latest").matches(&r("busybox:1.36")));
        assert!(p("*/kubia").matches(&r("parthghetia/kubia")));
        assert!(p("*/kubia").matches(&r("quay.io/someone/kubia:v9")));
        assert!(!p("*/kubia").matches(&r("luksa/kubia-unhealthy")));
        assert!(p("*/kubia:v2").matches(&r("luksa/kubia:v2")));
        assert!(!p("*/kubia:v2").matches(&r("luksa/kubia")));
        assert!(p("registry.k8s.io/pause").matches(&r("registry.k8s.io/pause:3.10")));
        assert!(p("example.com/*").matches(&r("example.com/a/b:1")));
        assert!(p("busybox@sha256:abc").matches(&r("busybox@sha256:abc")));
        assert!(!p("busybox@sha256:abc").matches(&r("busybox:1")));
        assert!(p("*/kubia:v2").specificity() > p("luksa/kubia").specificity());
        assert!(p("luksa/kubia").specificity() > p("*/kubia").specificity());
    }
}
