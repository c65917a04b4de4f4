use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn parse_and_print() {
    // (input, canonical form): requirements sorted by key, values sorted.
    let cases = [
        ("", ""),
        ("   ", ""),
        ("x=a", "x=a"),
        ("x==a", "x==a"),
        ("x!=a", "x!=a"),
        ("x=a,y=b", "x=a,y=b"),
        ("y=b,x=a", "x=a,y=b"),
        (" x = a , y != b ", "x=a,y!=b"),
        ("x", "x"),
        ("!x", "!x"),
        ("! x", "!x"),
        ("x=", "x="),
        ("x=,z= ", "x=,z="),
        ("x in (a)", "x in (a)"),
        ("x in (b,a,b)", "x in (a,b)"),
        ("x notin (a, b)", "x notin (a,b)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        ("x in (a,)", "x in (,a)"),
        // `in` and `notin` are identifiers where a key or value is expected.
        ("in in (in)", "in in (in)"),
        ("notin notin (notin)", "notin notin (notin)"),
        ("x>1", "x>1"),
        ("x<10", "x<10"),
        ("example.com/app=kubia", "example.com/app=kubia"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("a\tin\n(b)", "a in (b)"),
        // Same key twice: written order kept.
        ("a!=1,a!=2", "a!=1,a!=2"),
    ];
    for (input, want) in cases {
        let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("parse {input:?} failed: {e}"));
        assert_eq!(sel.to_string(), want, "input {input:?}");
        // The canonical form parses to the same selector.
        assert_eq!(LabelSelector::parse(want).unwrap(), sel, "reparse of {want:?}");
    }
}

const KEY_NAME_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

#[test]
fn parse_errors() {
    let ops = "in, notin, =, ==, !=, gt, lt";
    // (input, upstream's error text)
    let cases: Vec<(&str, String)> = vec![
        ("a in x", "unable to parse requirement: found 'x' expected: '('".into()),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'".into()),
        ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'".into()),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
        ("a in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
        ("a b", format!("unable to parse requirement: found 'b', expected: {ops}")),
        ("a=b c", "found 'c', expected: ',' or 'end of string'".into()),
        ("a=b,", "found '', expected: identifier after ','".into()),
        ("a=b,,c", "found ',', expected: identifier after ','".into()),
        (",a", "found ',', expected: !, identifier, or 'end of string'".into()),
        ("=a", "found '=', expected: !, identifier, or 'end of string'".into()),
        ("!", "unable to parse requirement: found '', expected: identifier".into()),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'".into()),
        ("a=(", "unable to parse requirement: found '(', expected: identifier".into()),
        ("!a=b", "found '=', expected: ',' or 'end of string'".into()),
        ("a==b==c", "found '==', expected: ',' or 'end of string'".into()),
        (
            "-a=b",
            format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {KEY_NAME_ERR}"),
        ),
        (
            "a=b$",
            format!("unable to parse requirement: values[0][a]: Invalid value: \"b$\": {VALUE_ERR}"),
        ),
        (
            "a in (ok,x$,y$)",
            format!(
                "unable to parse requirement: [values[1][a]: Invalid value: \"x$\": {VALUE_ERR}, values[2][a]: Invalid value: \"y$\": {VALUE_ERR}]"
            ),
        ),
        (
            "a>b",
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
        ),
        (
            "a</b",
            format!("unable to parse requirement: [values[0]: Invalid value: \"/b\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][a]: Invalid value: \"/b\": {VALUE_ERR}]"),
        ),
        (
            "/a",
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty".into(),
        ),
    ];
    for (input, want) in cases {
        match LabelSelector::parse(input) {
            Ok(s) => panic!("parse {input:?} gave {s:?}, want error {want:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "input {input:?}"),
        }
    }
}

#[test]
fn matching() {
    let l = labels(&[("app", "kubia"), ("tier", "web"), ("n", "5"), ("empty", "")]);
    // (selector, matches l)
    let cases = [
        ("", true),
        ("app=kubia", true),
        ("app==kubia", true),
        ("app=other", false),
        ("app!=other", true),
        ("app!=kubia", false),
        ("missing!=x", true),
        ("missing=x", false),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("tier in (web,api)", true),
        ("tier in (api)", false),
        ("missing in (a)", false),
        ("tier notin (web)", false),
        ("tier notin (api)", true),
        ("missing notin (a)", true),
        ("empty=", true),
        ("empty in ()", true),
        ("missing=", false),
        ("n>4", true),
        ("n>5", false),
        ("n<6", true),
        ("app>1", false),
        ("missing<1", false),
        ("app=kubia,tier=web", true),
        ("app=kubia,tier=api", false),
    ];
    for (sel, want) in cases {
        let s = LabelSelector::parse(sel).unwrap();
        assert_eq!(s.matches(&l), want, "{sel}");
        // The same through the JSON form of the labels.
        let j = serde_json::to_value(&l).unwrap();
        assert_eq!(s.matches(&j), want, "{sel} on JSON");
        let h: HashMap<String, String> = l.clone().into_iter().collect();
        assert_eq!(s.matches(&h), want, "{sel} on HashMap");
    }
}

#[test]
fn matches_object_reads_metadata_labels() {
    let sel = LabelSelector::parse("app=kubia").unwrap();
    assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "kubia"}}})));
    assert!(!sel.matches_object(&json!({"metadata": {"name": "x"}})));
    assert!(LabelSelector::parse("!app").unwrap().matches_object(&json!({})));
    assert!(LabelSelector::everything().matches_object(&json!({})));
}

#[test]
fn from_label_selector_json() {
    // (metav1.LabelSelector, canonical form, labels, matches)
    let cases = [
        (json!({}), "", labels(&[]), true),
        (json!({"matchLabels": {}}), "", labels(&[("a", "b")]), true),
        (json!({"matchLabels": {"app": "kubia"}}), "app=kubia", labels(&[("app", "kubia")]), true),
        (
            json!({"matchLabels": {"app": "kubia", "a": "b"}}),
            "a=b,app=kubia",
            labels(&[("app", "kubia")]),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}),
            "tier in (api,web)",
            labels(&[("tier", "api")]),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
            "tier notin (web)",
            labels(&[]),
            true,
        ),
        (json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}), "tier", labels(&[]), false),
        (
            json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist", "values": []}]}),
            "!canary,z=1",
            labels(&[("z", "1")]),
            true,
        ),
    ];
    for (input, want, l, matches) in cases {
        let sel = LabelSelector::from_label_selector_json(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(sel.to_string(), want, "{input}");
        assert_eq!(sel.matches(&l), matches, "{input} on {l:?}");
    }
    // A missing selector selects nothing.
    let nothing = LabelSelector::from_label_selector_json(&json!(null)).unwrap();
    assert!(nothing.is_nothing());
    assert!(!nothing.is_empty());
    assert!(!nothing.matches(&labels(&[])));
    assert_eq!(nothing.to_string(), "");
}

#[test]
fn from_label_selector_json_errors() {
    let cases = [
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Foo", "values": ["x"]}]}),
            "\"Foo\" is not a valid label selector operator".to_string(),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty".to_string(),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
                .to_string(),
        ),
        (json!({"matchLabels": {"a": "b c"}}), format!("values[0][a]: Invalid value: \"b c\": {VALUE_ERR}")),
        (json!({"matchLabels": {"-a": "b"}}), format!("key: Invalid value: \"-a\": {KEY_NAME_ERR}")),
        (
            json!({"matchLabels": {"a": 1}}),
            "invalid label selector: matchLabels.a must be a string".to_string(),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            "invalid label selector: matchExpressions[0].values must be an array of strings".to_string(),
        ),
    ];
    for (input, want) in cases {
        match LabelSelector::from_label_selector_json(&input) {
            Ok(s) => panic!("{input} gave {s}, want error {want:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "{input}"),
        }
    }
}

#[test]
fn from_set() {
    let sel = LabelSelector::from_set_json(&json!({"tier": "web", "app": "kubia"})).unwrap();
    assert_eq!(sel.to_string(), "app=kubia,tier=web");
    assert!(sel.matches(&labels(&[("app", "kubia"), ("tier", "web"), ("x", "y")])));
    assert!(!sel.matches(&labels(&[("app", "kubia")])));
    assert_eq!(sel.requires_exact_match("app"), Some("kubia"));
    assert_eq!(sel.requires_exact_match("x"), None);

    // An empty map matches everything; a Service treats it as "no selector" itself.
    let empty = LabelSelector::from_set_json(&json!({})).unwrap();
    assert!(empty.is_empty());
    assert!(empty.matches(&labels(&[("a", "b")])));
    assert!(LabelSelector::from_set_json(&json!(null)).unwrap().is_empty());
    assert!(LabelSelector::from_set_json(&json!(["a"])).is_err());

    let from_map = LabelSelector::from_set(&labels(&[("app", "kubia")]));
    assert_eq!(from_map.to_string(), "app=kubia");
}

#[test]
fn requirement_new_validates() {
    assert!(Requirement::new("a", Operator::Equals, vec!["b".into()]).is_ok());
    assert!(Requirement::new("a", Operator::Equals, vec![]).is_err());
    assert!(Requirement::new("a", Operator::In, vec![]).is_err());
    assert!(Requirement::new("a", Operator::GreaterThan, vec!["x".into()]).is_err());
    let r = Requirement::new("a", Operator::In, vec!["y".into(), "x".into()]).unwrap();
    assert_eq!(r.to_string(), "a in (x,y)");
    assert_eq!(r.values(), ["y", "x"]);
}
