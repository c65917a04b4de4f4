use super::*;

#[test]
fn parse_and_print() {
    // (input, canonical form)
    let cases = [
        ("", ""),
        ("metadata.name=foo", "metadata.name=foo"),
        ("metadata.name==foo", "metadata.name=foo"),
        ("status.phase!=Running", "status.phase!=Running"),
        // Terms are sorted as strings.
        ("status.phase!=Running,metadata.name=foo", "metadata.name=foo,status.phase!=Running"),
        ("a=,b=c", "a=,b=c"),
        ("a=b,", "a=b"),
        (",a=b", "a=b"),
        // Escaped characters survive the round trip.
        (r"a=x\,y\=z\\w", r"a=x\,y\=z\\w"),
        // Upstream drops a term with neither field nor value.
        ("=", ""),
        // Whitespace is part of the field and value.
        ("a = b", "a = b"),
    ];
    for (input, want) in cases {
        let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("parse {input:?} failed: {e}"));
        assert_eq!(sel.to_string(), want, "input {input:?}");
    }
}

#[test]
fn parse_values() {
    let sel = FieldSelector::parse(r"spec.x=a\,b\=c").unwrap();
    assert_eq!(
        sel.requirements(),
        &[FieldRequirement {
            field: "spec.x".into(),
            operator: FieldOperator::Equals,
            value: "a,b=c".into(),
        }]
    );
    // The term splits at the first operator, so the second `=` is part of the value.
    assert_eq!(
        FieldSelector::parse("a!==b").unwrap_err(),
        FieldSelectorError::UnescapedCharacter { character: '=' }
    );
    let sel = FieldSelector::parse("a!=b").unwrap();
    assert_eq!(sel.requirements()[0].operator, FieldOperator::NotEquals);
}

#[test]
fn errors() {
    let cases = [
        ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\,c,d=e\", r"invalid field selector: invalid escape sequence: \"),
        (r"a=\x", r"invalid field selector: invalid escape sequence: \x"),
    ];
    for (input, want) in cases {
        match FieldSelector::parse(input) {
            Ok(s) => panic!("parse {input:?} gave {s}, want error {want:?}"),
            Err(e) => assert_eq!(e.to_string(), want, "input {input:?}"),
        }
    }
}

#[test]
fn matching() {
    let pod = |name: &str, phase: Option<&str>| {
        let name = name.to_string();
        let phase = phase.map(str::to_string);
        move |f: &str| match f {
            "metadata.name" => Some(name.clone()),
            "status.phase" => phase.clone(),
            _ => None,
        }
    };
    // (selector, name, phase, matches)
    let cases = [
        ("", "a", Some("Running"), true),
        ("metadata.name=a", "a", Some("Running"), true),
        ("metadata.name=b", "a", Some("Running"), false),
        ("status.phase!=Running", "a", Some("Running"), false),
        ("status.phase!=Running", "a", Some("Pending"), true),
        // A missing field compares as the empty string.
        ("status.phase!=Running", "a", None, true),
        ("status.phase=", "a", None, true),
        ("status.phase==", "a", Some("Pending"), false),
        ("metadata.name=a,status.phase=Pending", "a", Some("Pending"), true),
        ("metadata.name=a,status.phase=Pending", "a", Some("Running"), false),
    ];
    for (sel, name, phase, want) in cases {
        let s = FieldSelector::parse(sel).unwrap();
        assert_eq!(s.matches(pod(name, phase)), want, "{sel} on {name}/{phase:?}");
    }
}

#[test]
fn supported_fields() {
    let sel = FieldSelector::parse("metadata.name=a,spec.nodeName=n,status.phase=x").unwrap();
    assert_eq!(sel.fields().collect::<Vec<_>>(), ["metadata.name", "spec.nodeName", "status.phase"]);
    let supported = ["metadata.name", "metadata.namespace", "spec.nodeName"];
    assert_eq!(
        sel.check_supported(|f| supported.contains(&f)).unwrap_err().to_string(),
        "field label not supported: status.phase"
    );
    assert!(FieldSelector::parse("metadata.name=a")
        .unwrap()
        .check_supported(|f| supported.contains(&f))
        .is_ok());
    assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n"));
    assert_eq!(sel.requires_exact_match("metadata.namespace"), None);
}

#[test]
fn escaping() {
    assert_eq!(escape_value(r"a\b,c=d"), r"a\\b\,c\=d");
    assert_eq!(unescape_value(r"a\\b\,c\=d").unwrap(), r"a\b,c=d");
    assert_eq!(unescape_value("plain").unwrap(), "plain");
}
