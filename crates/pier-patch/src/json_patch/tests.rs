use serde_json::json;

use super::*;

/// (document, patch, expected document)
fn applies() -> Vec<(Value, Value, Value)> {
    vec![
        // RFC 6902 appendix A.
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "remove", "path": "/baz"}]),
            json!({"foo": "bar"}),
        ),
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            json!({"baz": "boo", "foo": "bar"}),
        ),
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        (
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
            json!([{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}]),
            json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
            json!({"foo": "bar", "child": {"grandchild": {}}}),
        ),
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
        (
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": 10}, {"op": "remove", "path": "/~1"}]),
            json!({"~1": 10}),
        ),
        (
            json!({"a": {"b": 1}}),
            json!([{"op": "copy", "from": "/a", "path": "/c"}]),
            json!({"a": {"b": 1}, "c": {"b": 1}}),
        ),
        // Whole-document replace and test.
        (json!({"a": 1}), json!([{"op": "replace", "path": "", "value": {"b": 2}}]), json!({"b": 2})),
        (json!({"a": 1}), json!([{"op": "test", "path": "", "value": {"a": 1}}]), json!({"a": 1})),
        // Upstream (json-patch v4) deviations from the RFC.
        (json!({"a": 1}), json!([{"op": "replace", "path": "/b", "value": 2}]), json!({"a": 1, "b": 2})),
        (json!({"l": [1, 2, 3]}), json!([{"op": "remove", "path": "/l/-1"}]), json!({"l": [1, 2]})),
        (json!({"l": [1, 2]}), json!([{"op": "add", "path": "/l/-1", "value": 9}]), json!({"l": [1, 2, 9]})),
        (json!({"a": 1}), json!([{"op": "test", "path": "/missing", "value": null}]), json!({"a": 1})),
        (json!({"a": 1}), json!([{"op": "add", "path": "/b"}]), json!({"a": 1, "b": null})),
        (json!({"a": 1}), json!(null), json!({"a": 1})),
        (json!({"a": 1}), json!([]), json!({"a": 1})),
        // kubectl-style: set a label with an escaped key, scale, drop an annotation.
        (
            json!({"metadata": {"labels": {"app": "kubia"}, "annotations": {"x": "y"}}, "spec": {"replicas": 1}}),
            json!([
                {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "kubia"},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "remove", "path": "/metadata/annotations/x"}
            ]),
            json!({"metadata": {"labels": {"app": "kubia", "app.kubernetes.io/name": "kubia"}, "annotations": {}}, "spec": {"replicas": 3}}),
        ),
        (
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}}),
            json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "x:2"}]),
            json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}}),
        ),
    ]
}

#[test]
fn json_patch_applies() {
    for (doc, patch, want) in applies() {
        match json_patch(&doc, &patch) {
            Ok(got) => {
                assert_eq!(got, want, "\n doc:   {doc}\n patch: {patch}\n want:  {want}\n got:   {got}")
            }
            Err(e) => panic!("\n doc:   {doc}\n patch: {patch}\n want:  {want}\n error: {e}"),
        }
    }
}

#[test]
fn json_patch_errors() {
    // (document, patch, upstream's message, HTTP status)
    let cases = [
        (json!({}), json!({"op": "add"}), "json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400),
        (json!({}), json!(["add"]), "json: cannot unmarshal string into Go value of type jsonpatch.Operation", 400),
        (json!({}), json!([{"op": "frob", "path": "/a"}]), "Unexpected kind: frob", 422),
        (json!({}), json!([{"path": "/a"}]), "Unexpected kind: unknown", 422),
        (json!({}), json!([{"op": "add", "value": 1}]), "add operation failed to decode path: missing value", 422),
        (json!({}), json!([{"op": "replace", "value": 1}]), "replace operation failed to decode path: operation missing path field: missing value", 422),
        (json!({}), json!([{"op": "test", "path": 5}]), "test operation failed to decode path: json: cannot unmarshal number into Go value of type string", 422),
        (json!({}), json!([{"op": "move", "path": "/a"}]), "move operation failed to decode from: operation, missing from field: missing value", 422),
        (json!({"a": {}}), json!([{"op": "add", "path": "/x/y", "value": 1}]), "add operation does not apply: doc is missing path: \"/x/y\": missing value", 422),
        (json!({"a": 1}), json!([{"op": "add", "path": "/a/b", "value": 1}]), "add operation does not apply: doc is missing path: \"/a/b\": missing value", 422),
        (json!({}), json!([{"op": "remove", "path": "/a"}]), "error in remove for path: '/a': Unable to remove nonexistent key: a: missing value", 422),
        (json!({"l": [1]}), json!([{"op": "remove", "path": "/l/5"}]), "error in remove for path: '/l/5': Unable to access invalid index: 5: invalid index referenced", 422),
        (json!({"l": [1]}), json!([{"op": "add", "path": "/l/x", "value": 1}]), "error in add for path: '/l/x': value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax", 422),
        (json!({"l": [1]}), json!([{"op": "add", "path": "/l/3", "value": 1}]), "error in add for path: '/l/3': Unable to access invalid index: 3: invalid index referenced", 422),
        (json!({"l": [1]}), json!([{"op": "replace", "path": "/l/1", "value": 1}]), "replace operation does not apply: doc is missing key: /l/1: missing value", 422),
        (json!({}), json!([{"op": "replace", "path": "/x/y", "value": 1}]), "replace operation does not apply: doc is missing path: /x/y: missing value", 422),
        (json!({"a": 1}), json!([{"op": "test", "path": "/a", "value": 2}]), "testing value /a failed: test failed", 422),
        (json!({"a": 1}), json!([{"op": "test", "path": "/b", "value": 2}]), "testing value /b failed: test failed", 422),
        (json!({}), json!([{"op": "test", "path": "/x/y", "value": 2}]), "test operation does not apply: is missing path: /x/y: missing value", 422),
        (json!({}), json!([{"op": "move", "from": "/a", "path": "/b"}]), "error in move for path: 'a': Unable to remove nonexistent key: a: missing value", 422),
        (json!({"a": 1}), json!([{"op": "move", "from": "/a", "path": "/x/y"}]), "move operation does not apply: doc is missing destination path: /x/y: missing value", 422),
        (json!({}), json!([{"op": "copy", "from": "/x/y", "path": "/b"}]), "copy operation does not apply: doc is missing from path: /x/y: missing value", 422),
        (json!({"l": []}), json!([{"op": "copy", "from": "/l/0", "path": "/b"}]), "error in copy for from: '/l/0': Unable to access invalid index: 0: invalid index referenced", 422),
        (json!({"a": 1}), json!([{"op": "replace", "path": "", "value": 1}]), "replace operation value must be object or array: %!w(<nil>)", 422),
        (json!({}), json!([{"op": "add", "path": "", "value": 1}]), "add operation does not apply: doc is missing path: \"\": missing value", 422),
        (json!("s"), json!([]), "json: cannot unmarshal string into Go value of type jsonpatch.partialDoc", 422),
    ];
    for (doc, patch, want, status) in cases {
        match json_patch(&doc, &patch) {
            Ok(got) => panic!("\n doc:   {doc}\n patch: {patch}\n want error: {want}\n got:   {got}"),
            Err(e) => {
                assert_eq!(e.to_string(), want, "doc {doc} patch {patch}");
                assert_eq!(e.status_code(), status, "{want}");
            }
        }
    }
}

#[test]
fn json_patch_is_atomic() {
    let doc = json!({"a": 1, "l": [1, 2]});
    let patch = json!([
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "add", "path": "/l/-", "value": 3},
        {"op": "test", "path": "/a", "value": 1}
    ]);
    assert_eq!(json_patch(&doc, &patch), Err(PatchError::TestFailed { path: "/a".into() }));
    // The input is untouched (it is only borrowed), and nothing half-applied is returned.
    assert_eq!(doc, json!({"a": 1, "l": [1, 2]}));
}
