//! End-to-end: bad input gets upstream's status codes and messages, as kubectl (or,
//! for bodies kubectl will not send, curl with the admin certificate) shows them, and
//! nothing half-written reaches the store.

use pier_testkit::{Cluster, CurlOutput};

fn cluster() -> Cluster {
    pier_testkit::start_cluster!()
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Upstream's `transformDecodeError` for a body it cannot even read a kind from.
const UNRECOGNIZED: &str = "the object provided is unrecognized (must be of type ConfigMap): ";

#[track_caller]
fn assert_status(out: &CurlOutput, code: u16, reason: &str) -> String {
    assert_eq!(out.code, code, "{} {}", out.body, out.stderr);
    let status = out.json();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["code"], code, "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    status["message"].as_str().unwrap_or_default().to_string()
}

/// Only the configmaps the cluster makes itself are there.
#[track_caller]
fn assert_no_configmap(c: &Cluster, name: &str) {
    let err = c.kubectl(&["get", "cm", name]).err().to_string();
    assert_eq!(err.trim(), format!("Error from server (NotFound): configmaps \"{name}\" not found"));
}

#[test]
fn malformed_json_is_a_400_with_the_parse_error() {
    let c = cluster();
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"broken""#;
    let out = c.curl("POST", CONFIGMAPS, Some("application/json"), Some(body));
    let msg = assert_status(&out, 400, "BadRequest");
    assert!(msg.contains("couldn't get version/kind; json parse error: "), "{msg}");
    assert!(msg.starts_with(UNRECOGNIZED), "upstream wraps decode errors: {msg}");
    assert_no_configmap(&c, "broken");

    // The same through kubectl's raw mode, which sends the file as it is.
    let dir = pier_testkit::tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.json");
    std::fs::write(&file, body).expect("write");
    let file = file.display().to_string();
    let err = c.kubectl(&["create", "--raw", CONFIGMAPS, "-f", &file]).err().to_string();
    assert!(
        err.starts_with(&format!(
            "Error from server (BadRequest): {UNRECOGNIZED}couldn't get version/kind; json parse error: "
        )),
        "{err}"
    );
    assert_no_configmap(&c, "broken");
}

#[test]
fn malformed_yaml_and_protobuf_are_400s() {
    let c = cluster();
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: [\n";
    let out = c.curl("POST", CONFIGMAPS, Some("application/yaml"), Some(yaml));
    let msg = assert_status(&out, 400, "BadRequest");
    assert!(msg.contains("did not find expected key"), "{msg}");
    assert!(msg.starts_with(UNRECOGNIZED), "upstream wraps decode errors: {msg}");
    assert_no_configmap(&c, "broken");

    let out = c.curl("POST", CONFIGMAPS, Some("application/vnd.kubernetes.protobuf"), Some(b"not protobuf"));
    let msg = assert_status(&out, 400, "BadRequest");
    assert!(
        msg.contains(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        ),
        "{msg}"
    );
    // The envelope, then garbage.
    let out =
        c.curl("POST", CONFIGMAPS, Some("application/vnd.kubernetes.protobuf"), Some(b"k8s\0\x0a\xff\xff"));
    assert_status(&out, 400, "BadRequest");
    let rest = c.kubectl(&["get", "cm", "-o", "name"]).ok().to_string();
    assert!(!rest.contains("broken"), "{rest}");
}

#[test]
fn an_invalid_object_is_a_422_naming_every_bad_field() {
    let c = cluster();
    let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"multi"},"spec":{"ports":[{"port":80},{"port":70000}]}}"#;
    let err = c.kubectl_stdin(&["create", "-f", "-"], svc).err().to_string();
    assert_eq!(
        err.trim_end(),
        "The Service \"multi\" is invalid: \n\
         * spec.ports[0].name: Required value\n\
         * spec.ports[1].name: Required value\n\
         * spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive\n\
         * spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
    );
    let out =
        c.curl("POST", "/api/v1/namespaces/default/services", Some("application/json"), Some(svc.as_bytes()));
    let msg = assert_status(&out, 422, "Invalid");
    assert_eq!(
        msg,
        "Service \"multi\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value, \
         spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive, \
         spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive]"
    );
    let status = out.json();
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["spec.ports[0].name", "spec.ports[1].name", "spec.ports[1].port", "spec.ports[1].targetPort"]
    );
    assert_eq!(status["details"]["kind"], "Service");
    assert_eq!(status["details"]["name"], "multi");
    let err = c.kubectl(&["get", "svc", "multi"]).err().to_string();
    assert!(err.contains("services \"multi\" not found"), "{err}");

    // Nor was a cluster IP leaked: the whole range is as before (the next service
    // still gets an address and `kubernetes` keeps .1).
    let ok = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"multi"},"spec":{"ports":[{"name":"a","port":80},{"name":"b","port":81}]}}"#;
    assert_eq!(c.kubectl_stdin(&["create", "-f", "-"], ok).ok().trim(), "service/multi created");

    // An invalid update leaves the stored object as it was.
    let before = c.kubectl(&["get", "svc", "multi", "-o", "json"]).json();
    let err = c
        .kubectl(&[
            "patch",
            "svc",
            "multi",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/1/port","value":70000}]"#,
        ])
        .err()
        .to_string();
    assert_eq!(
        err.trim_end(),
        "The Service \"multi\" is invalid: spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
    );
    let after = c.kubectl(&["get", "svc", "multi", "-o", "json"]).json();
    assert_eq!(before, after);
}

#[test]
fn unknown_resource_type() {
    let c = cluster();
    let err = c.kubectl(&["get", "widgets"]).err().to_string();
    assert_eq!(err.trim(), "error: the server doesn't have a resource type \"widgets\"");
    let out = c.curl("GET", "/api/v1/widgets", None, None);
    let msg = assert_status(&out, 404, "NotFound");
    assert_eq!(msg, "the server could not find the requested resource");
}

#[test]
fn replace_with_a_stale_resource_version_is_a_409() {
    let c = cluster();
    c.kubectl(&["create", "configmap", "settings", "--from-literal=mode=slow"]).ok();
    let mut stale = c.kubectl(&["get", "cm", "settings", "-o", "json"]).json();
    // Someone else writes first.
    assert_eq!(
        c.kubectl(&["label", "cm", "settings", "owner=ops"]).ok().trim(),
        "configmap/settings labeled"
    );
    let current = c.kubectl(&["get", "cm", "settings", "-o", "json"]).json();
    stale["data"]["mode"] = "fast".into();
    let err = c.kubectl_stdin(&["replace", "-f", "-"], &stale.to_string()).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on \
         configmaps \"settings\": the object has been modified; please apply your changes to the latest \
         version and try again"
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "settings", "-o", "json"]).json(),
        current,
        "the losing write changed nothing"
    );

    // With the current version the same replace goes through.
    let mut fresh = current.clone();
    fresh["data"]["mode"] = "fast".into();
    assert_eq!(
        c.kubectl_stdin(&["replace", "-f", "-"], &fresh.to_string()).ok().trim(),
        "configmap/settings replaced"
    );
    let now = c.kubectl(&["get", "cm", "settings", "-o", "json"]).json();
    assert_eq!(now["data"]["mode"], "fast");
    assert_eq!(now["metadata"]["labels"]["owner"], "ops");
}

#[test]
fn an_oversized_body_is_a_413() {
    let c = cluster();
    let big = "a".repeat(4 * 1024 * 1024);
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{big}"}}}}"#
    );
    // Over HTTP/1.1: curl 7.88 reports the HTTP/2 stream reset (NO_ERROR) that follows
    // a response sent before the whole body was read as an error; kubectl (HTTP/2,
    // below) reads the response as it should.
    let out =
        c.curl_with(&["--http1.1"], "POST", CONFIGMAPS, Some("application/json"), Some(body.as_bytes()));
    let msg = assert_status(&out, 413, "RequestEntityTooLarge");
    assert_eq!(msg, "Request entity too large: limit is 3145728");
    assert_no_configmap(&c, "big");

    let err = c.kubectl_stdin(&["create", "-f", "-"], &body).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (RequestEntityTooLarge): error when creating \"STDIN\": Request entity too large: limit is 3145728"
    );
    assert_no_configmap(&c, "big");

    // An update that is too large leaves the object as it was.
    c.kubectl(&["create", "configmap", "small", "--from-literal=a=b"]).ok();
    let before = c.kubectl(&["get", "cm", "small", "-o", "json"]).json();
    let body = body.replace("\"name\":\"big\"", "\"name\":\"small\"");
    let out = c.curl_with(
        &["--http1.1"],
        "PUT",
        &format!("{CONFIGMAPS}/small"),
        Some("application/json"),
        Some(body.as_bytes()),
    );
    assert_status(&out, 413, "RequestEntityTooLarge");
    assert_eq!(c.kubectl(&["get", "cm", "small", "-o", "json"]).json(), before);
}

#[test]
fn bad_selectors_are_400s() {
    let c = cluster();
    let err = c.kubectl(&["get", "pods", "-l", "a in x"]).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): Unable to find \"/v1, Resource=pods\" that match label selector \
         \"a in x\", field selector \"\": unable to parse requirement: found 'x' expected: '('"
    );
    let err = c.kubectl(&["get", "pods", "--field-selector", "foo=bar"]).err().to_string();
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): Unable to find \"/v1, Resource=pods\" that match label selector \
         \"\", field selector \"foo=bar\": field label not supported: foo"
    );
    let err = c.kubectl(&["get", "svc", "--field-selector", "spec.ports=80"]).err().to_string();
    assert!(err.contains("field label not supported: spec.ports"), "{err}");
    // Supported ones work.
    let out = c
        .kubectl(&["get", "svc", "--field-selector", "metadata.name=kubernetes", "-o", "name"])
        .ok()
        .to_string();
    assert_eq!(out.trim(), "service/kubernetes");
    let out =
        c.kubectl(&["get", "svc", "-A", "-l", "component in (apiserver)", "-o", "name"]).ok().to_string();
    assert_eq!(out.trim(), "service/kubernetes");
}
