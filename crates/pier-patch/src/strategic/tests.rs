use serde_json::json;

use super::*;

// ===== a fake schema: list strategies looked up by path =====

/// A schema position named by its path, e.g. `spec.template.spec.containers[].env`. Every
/// field exists; lists are replaced unless [`STRATEGIES`] names them.
#[derive(Debug, Clone)]
struct Fake(String);

/// (path suffix, strategy): a pattern matches a path equal to it or ending in `.pattern`.
const STRATEGIES: &[(&str, Option<&str>)] = &[
    // (pattern, Some(merge key) | None for a merged list of scalars)
    ("metadata.finalizers", None),
    ("mergingIntList", None),
    ("mergingList", Some("name")),
    ("containers", Some("name")),
    ("initContainers", Some("name")),
    ("containers[].env", Some("name")),
    ("containers[].ports", Some("containerPort")),
    ("containers[].volumeMounts", Some("mountPath")),
    ("volumes", Some("name")),
    // A Service's ports (a Pod's container ports match the longer pattern first).
    ("spec.ports", Some("port")),
    ("status.conditions", Some("type")),
];

impl Fake {
    fn root() -> Self {
        Fake(String::new())
    }

    fn matches(&self, pattern: &str) -> bool {
        self.0 == pattern || self.0.ends_with(&format!(".{pattern}"))
    }
}

impl PatchSchema for Fake {
    fn field(&self, name: &str) -> Option<Self> {
        Some(Fake(if self.0.is_empty() { name.to_string() } else { format!("{}.{name}", self.0) }))
    }

    fn elements(&self) -> Option<Self> {
        Some(Fake(format!("{}[]", self.0)))
    }

    fn list_strategy(&self) -> ListStrategy {
        // The most specific (longest) matching pattern wins.
        let found = STRATEGIES.iter().filter(|(p, _)| self.matches(p)).max_by_key(|(p, _)| p.len());
        match found {
            Some((_, Some(key))) => ListStrategy::MergeByKey { key: key.to_string() },
            Some((_, None)) => ListStrategy::MergePrimitives,
            None => ListStrategy::Replace,
        }
    }

    fn retain_keys(&self) -> bool {
        self.matches("spec.strategy") || self.matches("volumes")
    }
}

// ===== helpers =====

/// Applies `patch` to `original` and compares with `want`, printing all three on mismatch.
fn check(name: &str, original: &Value, patch: &Value, want: &Value) {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match strategic_merge_patch(original, patch, &Fake::root()) {
        Ok(got) if &got == want => {}
        Ok(got) => panic!(
            "case {name:?}\n--- original\n{}\n--- patch\n{}\n--- want\n{}\n--- got\n{}",
            pretty(original),
            pretty(patch),
            pretty(want),
            pretty(&got)
        ),
        Err(e) => panic!(
            "case {name:?}\n--- original\n{}\n--- patch\n{}\n--- want\n{}\n--- error\n{e}",
            pretty(original),
            pretty(patch),
            pretty(want)
        ),
    }
}

fn check_err(name: &str, original: &Value, patch: &Value, want: &str) {
    match strategic_merge_patch(original, patch, &Fake::root()) {
        Ok(got) => panic!("case {name:?}: want error {want:?}, got {got}"),
        Err(e) => assert_eq!(e.to_string(), want, "case {name:?}"),
    }
}

// ===== maps =====

#[test]
fn maps() {
    // (name, original, patch, expected)
    let cases = [
        ("add field", json!({"name": 1}), json!({"value": "a"}), json!({"name": 1, "value": "a"})),
        (
            "change field",
            json!({"name": 1, "value": "a"}),
            json!({"value": "b"}),
            json!({"name": 1, "value": "b"}),
        ),
        ("delete field", json!({"name": 1, "value": "a"}), json!({"value": null}), json!({"name": 1})),
        ("delete absent field", json!({"name": 1}), json!({"value": null}), json!({"name": 1})),
        ("nil original", json!(null), json!({"a": 1}), json!({"a": 1})),
        ("nil patch", json!({"a": 1}), json!(null), json!({"a": 1})),
        ("empty patch", json!({"a": 1}), json!({}), json!({"a": 1})),
        (
            "nested add and delete",
            json!({"a": {"b": 1, "c": 2}, "d": 3}),
            json!({"a": {"c": null, "e": 4}}),
            json!({"a": {"b": 1, "e": 4}, "d": 3}),
        ),
        ("new map loses its nulls", json!({}), json!({"a": {"b": null, "c": 1}}), json!({"a": {"c": 1}})),
        ("type change replaces", json!({"a": {"b": 1}}), json!({"a": "x"}), json!({"a": "x"})),
        (
            "$patch delete in a map empties it",
            json!({"a": {"b": 1}, "c": 2}),
            json!({"a": {"$patch": "delete"}}),
            json!({"a": {}, "c": 2}),
        ),
        (
            "$patch replace in a map",
            json!({"a": {"b": 1, "c": 2}}),
            json!({"a": {"$patch": "replace", "d": 3}}),
            json!({"a": {"d": 3}}),
        ),
        (
            "$patch replace at the root",
            json!({"a": 1, "b": 2}),
            json!({"$patch": "replace", "c": 3}),
            json!({"c": 3}),
        ),
        (
            "a new member that is a directive is dropped",
            json!({"x": 1}),
            json!({"a": {"$patch": "delete"}}),
            json!({"x": 1}),
        ),
        (
            "labels: add, change, remove",
            json!({"metadata": {"name": "kubia", "labels": {"app": "kubia", "tier": "web", "rel": "a"}}}),
            json!({"metadata": {"labels": {"tier": null, "rel": "b", "env": "prod"}}}),
            json!({"metadata": {"name": "kubia", "labels": {"app": "kubia", "rel": "b", "env": "prod"}}}),
        ),
    ];
    for (name, original, patch, want) in cases {
        check(name, &original, &patch, &want);
    }
}

// ===== lists =====

#[test]
fn lists() {
    let cases = [
        (
            "replace list of scalars (no strategy)",
            json!({"args": ["a", "b"]}),
            json!({"args": ["c"]}),
            json!({"args": ["c"]}),
        ),
        (
            "replace list of maps (no strategy)",
            json!({"tolerations": [{"key": "a"}]}),
            json!({"tolerations": [{"key": "b"}]}),
            json!({"tolerations": [{"key": "b"}]}),
        ),
        ("delete list", json!({"args": ["a"], "x": 1}), json!({"args": null}), json!({"x": 1})),
        // Merged lists of scalars are sets; upstream orders the patch's values by the
        // patch, and slots the others in by their original order.
        (
            "merge int list, patch order wins",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1, 2]}),
            json!({"mergingIntList": [3, 1, 2]}),
        ),
        (
            "merge int list, partial patch",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]}),
            json!({"mergingIntList": [2, 3, 1]}),
        ),
        (
            "merge int list, no duplicates",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]}),
            json!({"mergingIntList": [1, 2, 3]}),
        ),
        (
            "finalizers: a new value goes first, as upstream",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
        ),
        (
            "$deleteFromPrimitiveList",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        (
            "$deleteFromPrimitiveList of a missing list adds nothing",
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"name": "x"}}),
        ),
        (
            "$deleteFromPrimitiveList with $setElementOrder",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"$setElementOrder/mergingIntList": [3, 1], "$deleteFromPrimitiveList/mergingIntList": [2]}),
            json!({"mergingIntList": [3, 1]}),
        ),
        (
            "merge by key: merge into an element",
            json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2", "value": "b"}]}),
            json!({"mergingList": [{"name": "2", "value": "c", "other": "d"}]}),
            json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2", "value": "c", "other": "d"}]}),
        ),
        (
            "merge by key: a new element goes first, as upstream",
            json!({"mergingList": [{"name": "1"}, {"name": "2"}]}),
            json!({"mergingList": [{"name": "3", "value": "x"}]}),
            json!({"mergingList": [{"name": "3", "value": "x"}, {"name": "1"}, {"name": "2"}]}),
        ),
        (
            "merge by key: delete a field of an element",
            json!({"mergingList": [{"name": "1", "value": "a", "other": "b"}]}),
            json!({"mergingList": [{"name": "1", "value": null}]}),
            json!({"mergingList": [{"name": "1", "other": "b"}]}),
        ),
        (
            "merge by key: $patch delete an element",
            json!({"mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}),
            json!({"mergingList": [{"$patch": "delete", "name": "2"}]}),
            json!({"mergingList": [{"name": "1"}, {"name": "3"}]}),
        ),
        (
            "merge by key: $patch delete removes duplicates too",
            json!({"mergingList": [{"name": "1", "v": 1}, {"name": "2"}, {"name": "1", "v": 2}]}),
            json!({"mergingList": [{"$patch": "delete", "name": "1"}]}),
            json!({"mergingList": [{"name": "2"}]}),
        ),
        (
            "merge by key: $patch replace the whole list",
            json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2"}]}),
            json!({"mergingList": [{"name": "3"}, {"$patch": "replace"}]}),
            json!({"mergingList": [{"name": "3"}]}),
        ),
        (
            "merge by key: delete all elements",
            json!({"mergingList": [{"name": "1"}]}),
            json!({"mergingList": [{"$patch": "delete", "name": "1"}]}),
            json!({"mergingList": []}),
        ),
        (
            "merge by key: empty lists",
            json!({"mergingList": []}),
            json!({"mergingList": []}),
            json!({"mergingList": []}),
        ),
        (
            "merge by key: the list is new",
            json!({}),
            json!({"mergingList": [{"name": "1", "x": null}, {"$patch": "delete", "name": "2"}]}),
            json!({"mergingList": [{"name": "1"}]}),
        ),
        (
            "merge by key: nested merge lists",
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}),
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "9"}]}]}),
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "9"}, {"name": "Y", "value": "2"}]}]}),
        ),
        // $setElementOrder (upstream's custom cases).
        (
            "$setElementOrder names an element missing from the list",
            json!({"mergingList": [{"name": "1"}, {"name": "3"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
                   "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]}),
            json!({"mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]}),
        ),
        (
            "$setElementOrder of an int list names a missing value",
            json!({"mergingIntList": [1, 3]}),
            json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
            json!({"mergingIntList": [3, 1]}),
        ),
        (
            "$setElementOrder keeps unnamed server elements near their neighbours",
            json!({"mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "3"}, {"name": "1"}]}),
            json!({"mergingList": [{"name": "2"}, {"name": "3"}, {"name": "1"}]}),
        ),
        (
            "$setElementOrder with a new element at the end",
            json!({"mergingList": [{"name": "1"}, {"name": "2"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                   "mergingList": [{"name": "3"}]}),
            json!({"mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}),
        ),
        (
            "$setElementOrder for a list the original lacks",
            json!({}),
            json!({"$setElementOrder/mergingList": [{"name": "2"}, {"name": "1"}],
                   "mergingList": [{"name": "2"}, {"name": "1"}]}),
            json!({"mergingList": [{"name": "2"}, {"name": "1"}]}),
        ),
    ];
    for (name, original, patch, want) in cases {
        check(name, &original, &patch, &want);
    }
}

#[test]
fn retain_keys() {
    let cases = [
        (
            "retainKeys drops keys not listed",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "retainKeys in a merged list element (volume source change)",
            json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
            json!({"spec": {"$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                            "volumes": [{"$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/tmp"}, "name": "data"}]}}),
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/tmp"}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
        ),
        (
            "retainKeys with no change",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"]}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
    ];
    for (name, original, patch, want) in cases {
        check(name, &original, &patch, &want);
    }
}

#[test]
fn errors() {
    let cases: &[(&str, Value, Value, &str, u16)] = &[
        (
            "unknown $patch in a map",
            json!({"a": {"b": 1}}),
            json!({"a": {"$patch": "foo", "c": 1}}),
            "unknown patch type: foo in map: map[$patch:foo c:1]",
            500,
        ),
        (
            "unknown $patch in a list",
            json!({"mergingList": [{"name": "1"}]}),
            json!({"mergingList": [{"$patch": "frob", "name": "1"}]}),
            "unknown patch type: frob in map: map[$patch:frob name:1]",
            500,
        ),
        (
            "$patch merge in a list",
            json!({"mergingList": [{"name": "1"}]}),
            json!({"mergingList": [{"$patch": "merge"}]}),
            "merging lists cannot yet be specified in the patch",
            500,
        ),
        (
            "missing merge key",
            json!({"mergingList": [{"name": "1", "value": "a"}]}),
            json!({"mergingList": [{"value": "b"}]}),
            "map: map[value:b] does not contain declared merge key: name",
            500,
        ),
        (
            "missing merge key in a delete directive",
            json!({"mergingList": [{"name": "1"}]}),
            json!({"mergingList": [{"$patch": "delete", "value": "b"}]}),
            "map: map[$patch:delete value:b] does not contain declared merge key: name",
            500,
        ),
        (
            "container without a name",
            json!({"spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}}),
            json!({"spec": {"containers": [{"image": "nginx", "ports": [{"containerPort": 80}]}]}}),
            "map: map[image:nginx ports:[map[containerPort:80]]] does not contain declared merge key: name",
            500,
        ),
        (
            "order mismatch",
            json!({"mergingList": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                   "mergingList": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]}),
            "The order in patch list:\n[map[name:3 value:3] map[name:1 value:1]]\n doesn't match $setElementOrder list:\n[map[name:1] map[name:2] map[name:3]]\n",
            500,
        ),
        (
            "int order mismatch",
            json!({"mergingIntList": [1, 3, 2]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
            "The order in patch list:\n[3 1]\n doesn't match $setElementOrder list:\n[1 2 3]\n",
            500,
        ),
        (
            "retainKeys not a list",
            json!({"a": {"b": 1}}),
            json!({"a": {"$retainKeys": "b"}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "patch sets a key retainKeys does not list",
            json!({"a": {"b": 1}}),
            json!({"a": {"$retainKeys": ["b"], "c": 1}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "bad $deleteFromPrimitiveList key",
            json!({"mergingIntList": [1]}),
            json!({"$deleteFromPrimitiveListmergingIntList": [1]}),
            "invalid patch format of primitive list",
            400,
        ),
        (
            "bad $setElementOrder key",
            json!({"mergingIntList": [1]}),
            json!({"$setElementOrder": [1]}),
            "invalid patch format of setElementOrder list",
            400,
        ),
        (
            "$setElementOrder not a list",
            json!({"mergingIntList": [1]}),
            json!({"$setElementOrder/mergingIntList": {"a": 1}}),
            "expected a []interface {}, but received a map[string]interface {}",
            500,
        ),
        (
            "list of lists",
            json!({"mergingIntList": [[1]]}),
            json!({"mergingIntList": [[2]]}),
            "lists of lists are not supported",
            422,
        ),
        (
            "mixed element types",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": ["a"]}),
            "list element types are not identical: [[1 2] [a]]",
            500,
        ),
        (
            "merged list of maps without a key",
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"metadata": {"finalizers": [{"a": 2}]}}),
            "cannot merge lists without merge key for struct",
            500,
        ),
        (
            "patch not an object",
            json!({}),
            json!([1]),
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
            400,
        ),
        ("original not an object", json!([1]), json!({}), "invalid JSON document", 400),
    ];
    for (name, original, patch, want, status) in cases {
        check_err(name, original, patch, want);
        let err = strategic_merge_patch(original, patch, &Fake::root()).unwrap_err();
        assert_eq!(err.status_code(), *status, "case {name:?}");
    }
}

// ===== what `kubectl apply` sends =====

/// A Service as the API server stores it, with two ports.
fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubia",
            "namespace": "default",
            "uid": "5f1e",
            "resourceVersion": "100",
            "labels": {"app": "kubia"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20"],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "selector": {"app": "kubia"},
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
            ]
        },
        "status": {"loadBalancer": {}}
    })
}

/// A Deployment as the API server stores it.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "kubia", "namespace": "default", "generation": 1,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "kubia"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "kubia"}},
                "spec": {
                    "containers": [{
                        "name": "nodejs",
                        "image": "luksa/kubia:v1",
                        "imagePullPolicy": "IfNotPresent",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log"
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {"replicas": 3, "readyReplicas": 3}
    })
}

/// Returns `base` with `edit` applied by JSON merge patch (to state expectations briefly).
fn with(base: Value, edit: Value) -> Value {
    crate::json_merge_patch(&base, &edit)
}

#[test]
fn kubectl_apply_service() {
    let last_applied = "{\"new\":true}\n";
    let cases = [
        (
            "remove a port",
            json!({
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
                "spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"$patch": "delete", "port": 443}]}
            }),
            with(
                service(),
                json!({
                    "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
                    "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
                }),
            ),
        ),
        (
            "add a port at the end",
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}, {"port": 8081}],
                            "ports": [{"name": "metrics", "port": 8081, "targetPort": 9090}]}}),
            with(
                service(),
                json!({"spec": {"ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
                    {"name": "metrics", "port": 8081, "targetPort": 9090}
                ]}}),
            ),
        ),
        (
            "change a port's targetPort",
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                            "ports": [{"port": 80, "targetPort": 9090}]}}),
            with(
                service(),
                json!({"spec": {"ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
                ]}}),
            ),
        ),
        (
            "replace one port by another",
            json!({"spec": {"$setElementOrder/ports": [{"port": 8080}, {"port": 443}],
                            "ports": [{"name": "http", "port": 8080, "targetPort": 8080},
                                      {"$patch": "delete", "port": 80}]}}),
            with(
                service(),
                json!({"spec": {"ports": [
                    {"name": "http", "port": 8080, "targetPort": 8080},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
                ]}}),
            ),
        ),
        (
            "add a label",
            json!({"metadata": {"labels": {"tier": "backend"}}}),
            with(service(), json!({"metadata": {"labels": {"app": "kubia", "tier": "backend"}}})),
        ),
        (
            "remove a label and change the selector",
            json!({"metadata": {"labels": {"app": null}}, "spec": {"selector": {"app": null, "run": "kubia"}}}),
            with(
                service(),
                json!({"metadata": {"labels": {"app": null}}, "spec": {"selector": {"app": null, "run": "kubia"}}}),
            ),
        ),
        (
            "session affinity",
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
            with(service(), json!({"spec": {"sessionAffinity": "ClientIP"}})),
        ),
    ];
    for (name, patch, want) in cases {
        check(name, &service(), &patch, &want);
    }
}

#[test]
fn kubectl_apply_deployment() {
    let container = |edit: Value| {
        let base = deployment()["spec"]["template"]["spec"]["containers"][0].clone();
        with(base, edit)
    };
    let with_containers = |containers: Value| {
        with(deployment(), json!({"spec": {"template": {"spec": {"containers": containers}}}}))
    };
    let cases = [
        (
            "change an image",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"image": "luksa/kubia:v2", "name": "nodejs"}]
            }}}}),
            with_containers(json!([container(json!({"image": "luksa/kubia:v2"}))])),
        ),
        (
            "delete an env var",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"$setElementOrder/env": [{"name": "A"}],
                                "env": [{"$patch": "delete", "name": "B"}],
                                "name": "nodejs"}]
            }}}}),
            with_containers(json!([container(json!({"env": [{"name": "A", "value": "1"}]}))])),
        ),
        (
            "add an env var in the middle and change another",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                                "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "22"}],
                                "name": "nodejs"}]
            }}}}),
            with_containers(json!([container(json!({"env": [
                {"name": "A", "value": "1"}, {"name": "C", "value": "3"}, {"name": "B", "value": "22"}
            ]}))])),
        ),
        (
            "add a container port",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                                "name": "nodejs",
                                "ports": [{"containerPort": 9090, "name": "metrics"}]}]
            }}}}),
            with_containers(json!([container(json!({"ports": [
                {"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics"}
            ]}))])),
        ),
        (
            "remove a container port",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"$setElementOrder/ports": [],
                                "name": "nodejs",
                                "ports": [{"$patch": "delete", "containerPort": 8080}]}]
            }}}}),
            with_containers(json!([container(json!({"ports": []}))])),
        ),
        (
            "add a sidecar after the main container",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}, {"name": "sidecar"}],
                "containers": [{"image": "busybox", "name": "sidecar", "args": ["sleep", "3600"]}]
            }}}}),
            with_containers(json!([
                container(json!({})),
                {"image": "busybox", "name": "sidecar", "args": ["sleep", "3600"]}
            ])),
        ),
        (
            "scale, relabel the template, change the strategy",
            json!({"spec": {
                "replicas": 5,
                "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
                "template": {"metadata": {"labels": {"rel": "canary"}}}
            }}),
            {
                let mut d = with(
                    deployment(),
                    json!({"spec": {"replicas": 5,
                    "template": {"metadata": {"labels": {"rel": "canary"}}}}}),
                );
                d["spec"]["strategy"] = json!({"type": "Recreate"});
                d
            },
        ),
        (
            "switch a volume from emptyDir to a configMap",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "data"}],
                "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
            }}}}),
            with(
                deployment(),
                json!({"spec": {"template": {"spec": {"volumes": [
                    {"name": "data", "configMap": {"name": "cfg"}}
                ]}}}}),
            ),
        ),
        (
            "set container args (a replaced list)",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nodejs"}],
                "containers": [{"args": ["--port", "9090"], "name": "nodejs"}]
            }}}}),
            with_containers(json!([container(json!({"args": ["--port", "9090"]}))])),
        ),
    ];
    for (name, patch, want) in cases {
        check(name, &deployment(), &patch, &want);
    }
}

#[test]
fn kubectl_patch_without_order() {
    // `kubectl patch` sends bare strategic patches, without `$setElementOrder`.
    let cases = [
        (
            "add a container (goes first, as upstream)",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}}),
            {
                let d = deployment();
                let main = d["spec"]["template"]["spec"]["containers"][0].clone();
                with(
                    d,
                    json!({"spec": {"template": {"spec": {"containers": [
                        {"name": "sidecar", "image": "busybox"}, main
                    ]}}}}),
                )
            },
        ),
        (
            "set an image by name",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nodejs", "image": "luksa/kubia:v3"}]}}}}),
            {
                let d = deployment();
                let mut main = d["spec"]["template"]["spec"]["containers"][0].clone();
                main["image"] = json!("luksa/kubia:v3");
                with(d, json!({"spec": {"template": {"spec": {"containers": [main]}}}}))
            },
        ),
    ];
    for (name, patch, want) in cases {
        check(name, &deployment(), &patch, &want);
    }
}

#[test]
fn leftover_directives_are_removed() {
    // A new element carrying directives is stored without them.
    check(
        "directives in a new element",
        &json!({"containers": [{"name": "a"}]}),
        &json!({"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "$setElementOrder/env": [{"name": "X"}],
                                "env": [{"name": "X", "value": "1"}]}]}),
        &json!({"containers": [{"name": "a"}, {"name": "b", "env": [{"name": "X", "value": "1"}]}]}),
    );
}
