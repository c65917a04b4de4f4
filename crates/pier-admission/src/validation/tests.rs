//! Tables of (object, upstream's messages). Objects are defaulted first, as the API
//! server does, so only the deliberate mistake shows.

use serde_json::{json, Value};

use crate::{apply_defaults, validate_create, validate_update};

fn errors(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut obj);
    validate_create(group, kind, &obj).iter().map(ToString::to_string).collect()
}

fn update_errors(group: &str, kind: &str, mut old: Value, mut new: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut old);
    apply_defaults(group, kind, &mut new);
    validate_update(group, kind, &old, &new).iter().map(ToString::to_string).collect()
}

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "kubia", "namespace": "default"}, "spec": spec})
}

fn pod_with(spec: Value) -> Value {
    json!({"metadata": {"name": "kubia", "namespace": "default"}, "spec": spec})
}

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

#[test]
fn valid_objects_from_the_notes_pass() {
    // The multi-port service, the manual endpoints, the ExternalName alias.
    let multi = svc(json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                     {"name": "https", "port": 443, "targetPort": 8443}],
                           "selector": {"app": "kubia"}, "sessionAffinity": "ClientIP"}));
    assert_eq!(errors("", "Service", multi), Vec::<String>::new());
    let external = json!({"metadata": {"name": "external-service", "namespace": "default"},
                          "spec": {"type": "ExternalName", "externalName": "someapi.somecompany.com",
                                   "ports": [{"port": 80}]}});
    assert_eq!(errors("", "Service", external), Vec::<String>::new());
    let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}], "selector": {"app": "kubia"}}));
    assert_eq!(errors("", "Service", headless), Vec::<String>::new());
    let ep = json!({"metadata": {"name": "external-service", "namespace": "default"},
                    "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "22.22.22.22"}],
                                 "ports": [{"port": 80}]}]});
    assert_eq!(errors("", "Endpoints", ep), Vec::<String>::new());
    let rc = json!({"metadata": {"name": "kubia", "namespace": "default"},
                    "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "kubia"}},
                             "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia",
                                      "ports": [{"containerPort": 8080}],
                                      "readinessProbe": {"exec": {"command": ["ls", "/var/ready"]}}}]}}}});
    assert_eq!(errors("", "ReplicationController", rc), Vec::<String>::new());
}

#[test]
fn service_table() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            svc(json!({"ports": [{"name": "http", "port": 80}, {"port": 443}]})),
            vec!["spec.ports[1].name: Required value".into()],
        ),
        (svc(json!({})), vec!["spec.ports: Required value".into()]),
        (
            svc(json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})),
            vec!["spec.ports[1].name: Duplicate value: \"http\"".into()],
        ),
        (
            svc(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})),
            vec!["spec.ports[1]: Duplicate value: {\"protocol\":\"TCP\",\"port\":80}".into()],
        ),
        (
            svc(json!({"ports": [{"port": 0, "targetPort": 8080}]})),
            vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into()],
        ),
        (
            svc(json!({"ports": [{"port": 80, "protocol": "HTTP"}]})),
            vec!["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()],
        ),
        (
            svc(json!({"ports": [{"port": 80, "targetPort": "Web--"}]})),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"Web--\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
                "spec.ports[0].targetPort: Invalid value: \"Web--\": must not contain consecutive hyphens".into(),
                "spec.ports[0].targetPort: Invalid value: \"Web--\": must not begin or end with a hyphen".into(),
            ],
        ),
        (
            svc(json!({"ports": [{"port": 80, "targetPort": 70000}]})),
            vec!["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()],
        ),
        (
            svc(json!({"ports": [{"port": 80, "nodePort": 30080}]})),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()],
        ),
        (
            svc(json!({"type": "Foo", "ports": [{"port": 80}]})),
            vec!["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()],
        ),
        (
            svc(json!({"type": "ExternalName"})),
            vec!["spec.externalName: Required value".into()],
        ),
        (
            svc(json!({"type": "ExternalName", "externalName": "Some_API.com"})),
            vec![format!("spec.externalName: Invalid value: \"Some_API.com\": {SUBDOMAIN_MSG}")],
        ),
        (
            svc(json!({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})),
            vec!["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"".into()],
        ),
        (
            svc(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 90000}},
                       "ports": [{"port": 80}]})),
            vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000: must be greater than 0 and less than 86400".into()],
        ),
        (
            svc(json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]})),
            vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services".into()],
        ),
        (
            svc(json!({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]})),
            vec!["spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
        ),
        (
            svc(json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]})),
            vec!["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services".into()],
        ),
        (
            svc(json!({"type": "NodePort", "externalTrafficPolicy": "Nearest", "ports": [{"port": 80}]})),
            vec!["spec.externalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\"".into()],
        ),
        (
            svc(json!({"loadBalancerSourceRanges": ["10.0.0.0/8", "nope"], "ports": [{"port": 80}]})),
            vec![
                "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'".into(),
                "spec.LoadBalancerSourceRanges[1]: Invalid value: \"nope\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".into(),
            ],
        ),
        (
            json!({"metadata": {"name": "Kubia_svc", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
            vec![format!("metadata.name: Invalid value: \"Kubia_svc\": {DNS1035_MSG}")],
        ),
        (
            json!({"metadata": {"namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
            vec!["metadata.name: Required value: name or generateName is required".into()],
        ),
        (
            json!({"metadata": {"name": "kubia", "namespace": "default", "labels": {"app": "-bad"}},
                   "spec": {"ports": [{"port": 80}], "selector": {"a/b/c": "x"}}}),
            vec![
                "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
                "spec.selector: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors("", "Service", obj.clone()), want, "for {obj}");
    }
}

#[test]
fn every_bad_field_is_reported() {
    let obj = svc(json!({"type": "Bogus", "sessionAffinity": "Sticky",
                         "ports": [{"port": 0}, {"port": 80, "protocol": "ICMP"}]}));
    let got = errors("", "Service", obj);
    assert_eq!(
        got,
        vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Required value",
            "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ]
    );
}

#[test]
fn service_updates() {
    let old = svc(json!({"clusterIP": "10.96.12.4", "ports": [{"port": 80}]}));
    let new = svc(json!({"clusterIP": "", "ports": [{"port": 80}]}));
    let got = update_errors("", "Service", old.clone(), new);
    assert_eq!(got, vec!["spec.clusterIP: Invalid value: \"\": field is immutable"]);
    let renamed = json!({"metadata": {"name": "other", "namespace": "default"},
                         "spec": {"clusterIP": "10.96.12.4", "ports": [{"port": 80}]}});
    assert_eq!(
        update_errors("", "Service", old.clone(), renamed),
        vec!["metadata.name: Invalid value: \"other\": field is immutable"]
    );
    // Switching to ExternalName with the IP still set: forbidden by the new type.
    let to_external =
        svc(json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.12.4"}));
    assert_eq!(
        update_errors("", "Service", old, to_external),
        vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
    );
}

#[test]
fn pod_table() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (pod_with(json!({})), vec!["spec.containers: Required value".into()]),
        (
            pod_with(json!({"containers": [{"image": "luksa/kubia"}, {"name": "Web", "image": ""}]})),
            vec![
                "spec.containers[0].name: Required value".into(),
                format!("spec.containers[1].name: Invalid value: \"Web\": {LABEL_MSG}"),
                "spec.containers[1].image: Required value".into(),
            ],
        ),
        (
            pod_with(json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}]})),
            vec!["spec.containers[1].name: Duplicate value: \"a\"".into()],
        ),
        (
            pod_with(json!({"restartPolicy": "Sometimes", "dnsPolicy": "Cluster",
                            "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "tcp"}]}]})),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
                "spec.containers[0].ports[0].protocol: Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into(),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into(),
                "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"".into(),
            ],
        ),
        (
            pod_with(json!({"containers": [{"name": "a", "image": "x",
                "readinessProbe": {"exec": {"command": ["ls"]}, "tcpSocket": {"port": 80}},
                "livenessProbe": {"periodSeconds": 5}}]})),
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type".into(),
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type".into(),
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors("", "Pod", obj.clone()), want, "for {obj}");
    }
}

#[test]
fn controllers() {
    let tmpl = json!({"metadata": {"labels": {"app": "kubia"}},
                      "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}});
    let rs = json!({"metadata": {"name": "kubia", "namespace": "default"},
                    "spec": {"selector": {"matchLabels": {"app": "other"}}, "template": tmpl}});
    assert_eq!(
        errors("apps", "ReplicaSet", rs),
        vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"kubia\"}: `selector` does not match template `labels`"]
    );
    let no_sel = json!({"metadata": {"name": "kubia", "namespace": "default"},
                        "spec": {"replicas": -1, "template": tmpl}});
    assert_eq!(
        errors("apps", "Deployment", no_sel),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.selector: Required value",
        ]
    );
    let rc = json!({"metadata": {"name": "kubia", "namespace": "default"},
                    "spec": {"selector": {"app": "x"}, "template": tmpl}});
    assert_eq!(
        errors("", "ReplicationController", rc),
        vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"kubia\"}: `selector` does not match template `labels`"]
    );
    let old = json!({"metadata": {"name": "kubia", "namespace": "default"},
                     "spec": {"selector": {"matchLabels": {"app": "kubia"}}, "template": tmpl}});
    let mut tmpl2 = tmpl.clone();
    tmpl2["metadata"]["labels"]["tier"] = json!("web");
    let new = json!({"metadata": {"name": "kubia", "namespace": "default"},
                     "spec": {"selector": {"matchLabels": {"app": "kubia", "tier": "web"}}, "template": tmpl2}});
    assert_eq!(
        update_errors("apps", "Deployment", old, new),
        vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"kubia\",\"tier\":\"web\"}}: field is immutable"]
    );
}

#[test]
fn config_and_secrets() {
    let cm =
        json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"bad key": "v", "..x": "v"}});
    assert_eq!(
        errors("", "ConfigMap", cm),
        vec![
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
        ]
    );
    let tls = json!({"metadata": {"name": "tls-secret", "namespace": "default"}, "type": "kubernetes.io/tls",
                     "data": {"tls.crt": "Zm9v"}});
    assert_eq!(errors("", "Secret", tls), vec!["data[tls.key]: Required value"]);
    let old = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "Opaque", "immutable": true, "data": {"a": "Yg=="}});
    let new = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls", "immutable": true, "data": {"a": "Yw=="}});
    assert_eq!(
        update_errors("", "Secret", old, new),
        vec![
            "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
            "data: Forbidden: field is immutable when `immutable` is set",
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value",
        ]
    );
}

#[test]
fn ingress_endpoints_namespace() {
    let ing = json!({"metadata": {"name": "kubia", "namespace": "default"},
        "spec": {"rules": [{"host": "kubia.example.com", "http": {"paths": [
            {"path": "/", "backend": {"service": {"name": "kubia-nodeport", "port": {"number": 80}}}},
            {"path": "foo", "pathType": "Prefix", "backend": {"service": {"name": "bar", "port": {}}}},
            {"path": "/x", "pathType": "Regex", "backend": {"service": {"name": "bar", "port": {"name": "http"}}}}
        ]}}, {"host": "10.0.0.1"}]}});
    assert_eq!(
        errors("networking.k8s.io", "Ingress", ing),
        vec![
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].path: Invalid value: \"foo\": must be an absolute path",
            "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
            "spec.rules[0].http.paths[2].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
            "spec.rules[1].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        ]
    );
    let ep = json!({"metadata": {"name": "e", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "x"}], "ports": [{"port": 80}, {"port": 81}]}]});
    assert_eq!(
        errors("", "Endpoints", ep),
        vec![
            "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[0].addresses[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].addresses[1].ip: Invalid value: \"x\": must be a valid IP address",
            "subsets[0].ports[0].name: Required value",
            "subsets[0].ports[1].name: Required value",
        ]
    );
    // The name is a valid label value, so only the name format fails.
    let ns = json!({"metadata": {"name": "Parth.Test"}});
    assert_eq!(
        errors("", "Namespace", ns),
        vec![format!("metadata.name: Invalid value: \"Parth.Test\": {LABEL_MSG}")]
    );
    let namespaced_ns = json!({"metadata": {"name": "ok", "namespace": "default"}});
    assert_eq!(
        errors("", "Namespace", namespaced_ns),
        vec!["metadata.namespace: Forbidden: not allowed on this type"]
    );
    let missing_ns = json!({"metadata": {"name": "cm"}});
    assert_eq!(errors("", "ConfigMap", missing_ns), vec!["metadata.namespace: Required value"]);
}
