//! [`FieldSet`]: a set of [`Path`]s stored as a tree, and its `FieldsV1` encoding.
//!
//! As in upstream's `fieldpath.Set`, each level holds the elements that are members
//! themselves and the children below; a path can be both (`.` marks that in `FieldsV1`:
//! `"f:labels": {".": {}, "f:app": {}}` holds `.metadata.labels` and
//! `.metadata.labels.app`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::FieldsError;
use crate::path::{Path, PathElement};

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path`; the root (an empty path) is never a member.
    pub fn insert(&mut self, path: &Path) {
        let Some((last, parents)) = path.elements().split_last() else { return };
        let mut node = self;
        for e in parents {
            node = node.children.entry(e.clone()).or_default();
        }
        node.members.insert(last.clone());
    }

    /// Whether `path` itself is in the set.
    pub fn has(&self, path: &Path) -> bool {
        let Some((last, parents)) = path.elements().split_last() else { return false };
        let mut node = self;
        for e in parents {
            match node.children.get(e) {
                Some(c) => node = c,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    /// Whether `path` or anything below it is in the set.
    pub fn has_at_or_below(&self, path: &Path) -> bool {
        let Some((last, parents)) = path.elements().split_last() else { return !self.is_empty() };
        let mut node = self;
        for e in parents {
            match node.children.get(e) {
                Some(c) => node = c,
                None => return false,
            }
        }
        node.members.contains(last) || node.children.get(last).is_some_and(|c| !c.is_empty())
    }

    /// The paths in both sets.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (e, c) in &other.children {
            let merged = match out.children.get(e) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(e.clone(), merged);
        }
        out
    }

    /// The paths of `self` that are not in `other` (path by path: a member of `other`
    /// does not take away what lies below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (e, c) in &self.children {
            let rest = match other.children.get(e) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(e.clone(), rest);
            }
        }
        out
    }

    /// The paths in both `self` and `other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (e, c) in &self.children {
            if let Some(o) = other.children.get(e) {
                let both = c.intersection(o);
                if !both.is_empty() {
                    out.children.insert(e.clone(), both);
                }
            }
        }
        out
    }

    /// The set without the top-level elements `keep` rejects, and without anything below
    /// them.
    pub fn retain_top(&self, mut keep: impl FnMut(&PathElement) -> bool) -> FieldSet {
        let mut out = self.clone();
        out.members.retain(&mut keep);
        out.children.retain(|e, _| keep(e));
        out
    }

    /// Every path, members of a level before the paths below it, each level in
    /// `FieldsV1` key order (as upstream iterates sets, so conflicts list in its order).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&Path::root(), &mut out);
        out
    }

    fn collect(&self, prefix: &Path, out: &mut Vec<Path>) {
        for m in &self.members {
            out.push(prefix.child(m.clone()));
        }
        for (e, c) in &self.children {
            c.collect(&prefix.child(e.clone()), out);
        }
    }

    /// The members at this level.
    pub(crate) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    /// The subsets below this level.
    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// The `FieldsV1` JSON form: `{"f:spec": {"f:replicas": {}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut keys: BTreeMap<&PathElement, Value> = BTreeMap::new();
        for m in &self.members {
            keys.insert(m, Value::Object(Map::new()));
        }
        for (e, c) in &self.children {
            if c.is_empty() {
                continue;
            }
            let mut inner = Map::new();
            if self.members.contains(e) {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            if let Value::Object(sub) = c.to_fields_v1() {
                inner.extend(sub);
            }
            keys.insert(e, Value::Object(inner));
        }
        Value::Object(keys.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect())
    }

    /// Reads the `FieldsV1` JSON form.
    ///
    /// # Errors
    ///
    /// [`FieldsError`] when a level is not an object or a key is not a path element.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(map) = value else { return Err(FieldsError::NotAnObject) };
        let mut out = FieldSet::new();
        for (key, sub) in map {
            if key == "." {
                continue;
            }
            let e = PathElement::parse(key)?;
            let Value::Object(inner) = sub else { return Err(FieldsError::NotAnObject) };
            if inner.is_empty() || inner.contains_key(".") {
                out.members.insert(e.clone());
            }
            let child = FieldSet::from_fields_v1(sub)?;
            if !child.is_empty() {
                out.children.insert(e, child);
            }
        }
        Ok(out)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<T: IntoIterator<Item = Path>>(iter: T) -> Self {
        let mut set = FieldSet::new();
        for p in iter {
            set.insert(&p);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(names: &[&str]) -> Path {
        Path::fields(names)
    }

    #[test]
    fn fields_v1_round_trips() {
        let cases = [
            json!({}),
            json!({"f:spec": {"f:replicas": {}}}),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            json!({"f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}, "f:selector": {}}}),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}}),
            json!({"f:items": {"i:0": {"f:x": {}}}}),
        ];
        for case in cases {
            let set = FieldSet::from_fields_v1(&case).expect("decodes");
            assert_eq!(set.to_fields_v1(), case);
        }
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"spec": {}})).is_err());
    }

    #[test]
    fn set_algebra() {
        let a: FieldSet = [p(&["spec", "a"]), p(&["spec", "b"]), p(&["spec"])].into_iter().collect();
        let b: FieldSet = [p(&["spec", "b"]), p(&["spec", "c"])].into_iter().collect();
        assert_eq!(a.union(&b).paths().len(), 4);
        assert_eq!(a.difference(&b).paths(), [p(&["spec"]), p(&["spec", "a"])]);
        assert_eq!(a.intersection(&b).paths(), [p(&["spec", "b"])]);
        assert!(a.has(&p(&["spec"])) && !b.has(&p(&["spec"])));
        assert!(b.has_at_or_below(&p(&["spec"])));
        assert!(!b.has_at_or_below(&p(&["status"])));
        assert!(a.difference(&a).is_empty());
        let top = a
            .union(&[p(&["status", "x"])].into_iter().collect())
            .retain_top(|e| e.as_field() != Some("status"));
        assert_eq!(top, a);
    }
}
