//! Decoding protobuf bodies built the way client-go builds them, and bodies captured from kubectl.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as networking;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use pier_protobuf::{decode, encode, DecodedObject, ProtobufError};
use prost::Message as _;
use serde_json::{json, Value};

/// Wraps an object's message the way client-go's protobuf serializer does.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn decoded(body: &[u8]) -> DecodedObject {
    decode(body).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn int(v: i32) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(0), int_val: Some(v), str_val: Some(String::new()) })
}

fn named(v: &str) -> Option<IntOrString> {
    Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some(v.into()) })
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: Some(v.into()) }
}

/// ObjectMeta as a Go client writes it: every value field present, zero or not.
fn meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(namespace.into()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    })
}

fn assert_json(actual: &Value, expected: &Value) {
    assert_eq!(
        actual,
        expected,
        "\nactual:   {}\nexpected: {}",
        serde_json::to_string_pretty(actual).unwrap_or_default(),
        serde_json::to_string_pretty(expected).unwrap_or_default()
    );
}

#[test]
fn kubectl_bodies_decode_to_the_json_kubectl_sends() {
    for case in [
        "secret_generic",
        "configmap",
        "deployment",
        "deployment_multi",
        "svc_clusterip",
        "svc_nodeport",
        "svc_lb",
        "svc_extname",
        "svc_headless",
        "ingress",
        "namespace",
        "sa",
    ] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/test_data/kubectl");
        let pb = std::fs::read(format!("{dir}/{case}.pb")).expect("fixture");
        let json = std::fs::read(format!("{dir}/{case}.json")).expect("fixture");
        let expected: Value = serde_json::from_slice(&json).expect("fixture json");
        let got = decode(&pb).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_json(&got.object, &expected);
        // Go's encoding/json order, so the bytes match too.
        assert_eq!(serde_json::to_string(&got.object).ok(), serde_json::to_string(&expected).ok(), "{case}");
    }
}

#[test]
fn tls_secret_with_binary_data() {
    let secret = core::Secret {
        metadata: meta("tls1", "default"),
        data: BTreeMap::from([
            ("tls.crt".to_string(), b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            ("tls.key".to_string(), vec![0, 159, 146, 150, 255]),
        ]),
        r#type: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    let got = decoded(&envelope("v1", "Secret", secret.encode_to_vec()));
    assert_eq!((got.api_version.as_str(), got.kind.as_str()), ("v1", "Secret"));
    assert_json(
        &got.object,
        &json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "tls1", "namespace": "default", "creationTimestamp": null},
            "data": {"tls.crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", "tls.key": "AJ+Slv8="},
            "type": "kubernetes.io/tls"
        }),
    );
}

#[test]
fn configmap_with_data_binary_data_and_immutable_false() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("cm".into()),
            labels: strings(&[("app", "web")]),
            annotations: strings(&[("note", "")]),
            creation_timestamp: Some(meta::Time { seconds: Some(1_704_164_645), nanos: Some(0) }),
            ..Default::default()
        }),
        // A pointer field: a present false is kept.
        immutable: Some(false),
        data: strings(&[("b", "2"), ("a", "1")]),
        binary_data: BTreeMap::from([("bin".to_string(), vec![1, 2, 3])]),
    };
    let got = decoded(&envelope("v1", "ConfigMap", cm.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {
                "name": "cm",
                "creationTimestamp": "2024-01-02T03:04:05Z",
                "labels": {"app": "web"},
                "annotations": {"note": ""}
            },
            "immutable": false,
            "data": {"a": "1", "b": "2"},
            "binaryData": {"bin": "AQID"}
        }),
    );
}

#[test]
fn deployment_with_full_pod_template() {
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.25".into()),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        ports: vec![core::ContainerPort {
            name: Some("http".into()),
            host_port: Some(0),
            container_port: Some(8080),
            protocol: Some("TCP".into()),
            host_ip: Some(String::new()),
        }],
        env: vec![
            core::EnvVar { name: Some("MODE".into()), value: Some("fast".into()), value_from: None },
            core::EnvVar {
                name: Some("PASSWORD".into()),
                value: Some(String::new()),
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        // Embedded inline in Go: `name` moves up next to `key` in JSON.
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("creds".into()),
                        }),
                        key: Some("password".into()),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([("memory".to_string(), quantity("128Mi"))]),
            requests: BTreeMap::from([("cpu".to_string(), quantity("250m"))]),
            claims: vec![],
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: named("http"),
                    host: Some(String::new()),
                    scheme: Some("HTTP".into()),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            timeout_seconds: Some(0),
            period_seconds: Some(0),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            termination_grace_period_seconds: None,
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction { port: int(8080), host: Some(String::new()) }),
                ..Default::default()
            }),
            period_seconds: Some(3),
            ..Default::default()
        }),
        termination_message_path: Some(String::new()),
        image_pull_policy: Some("IfNotPresent".into()),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: meta("web", "default"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: strings(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: strings(&[("app", "web")]),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    volumes: vec![core::Volume {
                        name: Some("cache".into()),
                        // VolumeSource is inline too.
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource {
                                medium: Some(String::new()),
                                size_limit: Some(quantity("1Gi")),
                            }),
                            ..Default::default()
                        }),
                    }],
                    containers: vec![container],
                    restart_policy: Some("Always".into()),
                    termination_grace_period_seconds: Some(30),
                    dns_policy: Some("ClusterFirst".into()),
                    host_network: Some(false),
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int(0),
                    max_surge: named("25%"),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(0),
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let got = decoded(&envelope("apps/v1", "Deployment", deployment.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}],
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.25",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "fast"},
                                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                            ],
                            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}},
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                "initialDelaySeconds": 5
                            },
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 3},
                            "imagePullPolicy": "IfNotPresent"
                        }],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "automountServiceAccountToken": false
                    }
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 0
            },
            "status": {}
        }),
    );
}

#[test]
fn service_with_named_target_port() {
    let service = core::Service {
        metadata: meta("web", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: named("http"),
                    node_port: Some(0),
                    app_protocol: None,
                },
                core::ServicePort {
                    name: Some("metrics".into()),
                    protocol: Some("TCP".into()),
                    port: Some(9090),
                    target_port: int(9090),
                    node_port: Some(30090),
                    app_protocol: Some("http".into()),
                },
            ],
            selector: strings(&[("app", "web")]),
            cluster_ip: Some(String::new()),
            r#type: Some("NodePort".into()),
            session_affinity: Some(String::new()),
            external_traffic_policy: Some("Cluster".into()),
            ip_families: vec!["IPv4".into()],
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let got = decoded(&envelope("v1", "Service", service.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "protocol": "TCP", "appProtocol": "http", "port": 9090,
                     "targetPort": 9090, "nodePort": 30090}
                ],
                "selector": {"app": "web"},
                "type": "NodePort",
                "externalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"]
            },
            "status": {"loadBalancer": {}}
        }),
    );
}

#[test]
fn ingress_with_rules_and_tls() {
    let backend = |name: &str, port: networking::ServiceBackendPort| networking::IngressBackend {
        service: Some(networking::IngressServiceBackend { name: Some(name.into()), port: Some(port) }),
        resource: None,
    };
    let ingress = networking::Ingress {
        metadata: meta("ing", "default"),
        spec: Some(networking::IngressSpec {
            ingress_class_name: Some("pier".into()),
            default_backend: None,
            tls: vec![networking::IngressTls {
                hosts: vec!["foo.example".into()],
                secret_name: Some("foo-tls".into()),
            }],
            rules: vec![networking::IngressRule {
                host: Some("foo.example".into()),
                ingress_rule_value: Some(networking::IngressRuleValue {
                    http: Some(networking::HttpIngressRuleValue {
                        paths: vec![
                            networking::HttpIngressPath {
                                path: Some("/".into()),
                                path_type: Some("Prefix".into()),
                                backend: Some(backend(
                                    "web",
                                    networking::ServiceBackendPort {
                                        name: Some(String::new()),
                                        number: Some(80),
                                    },
                                )),
                            },
                            networking::HttpIngressPath {
                                path: Some("/api".into()),
                                path_type: Some("Exact".into()),
                                backend: Some(backend(
                                    "api",
                                    networking::ServiceBackendPort {
                                        name: Some("http".into()),
                                        number: Some(0),
                                    },
                                )),
                            },
                        ],
                    }),
                }),
            }],
        }),
        status: Some(networking::IngressStatus::default()),
    };
    let got = decoded(&envelope("networking.k8s.io/v1", "Ingress", ingress.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "Ingress",
            "apiVersion": "networking.k8s.io/v1",
            "metadata": {"name": "ing", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ingressClassName": "pier",
                "tls": [{"hosts": ["foo.example"], "secretName": "foo-tls"}],
                "rules": [{
                    "host": "foo.example",
                    "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                        {"path": "/api", "pathType": "Exact",
                         "backend": {"service": {"name": "api", "port": {"name": "http"}}}}
                    ]}
                }]
            },
            "status": {}
        }),
    );
}

#[test]
fn namespace() {
    let ns = core::Namespace {
        metadata: meta("team-a", ""),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus { phase: Some(String::new()), conditions: vec![] }),
    };
    let got = decoded(&envelope("v1", "Namespace", ns.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "team-a", "creationTimestamp": null},
            "spec": {},
            "status": {}
        }),
    );
}

#[test]
fn event_micro_time_and_lease() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: meta("ev", "default"),
        event_time: Some(meta::MicroTime { seconds: Some(1_704_164_645), nanos: Some(123_456_789) }),
        reporting_controller: Some("pier".into()),
        ..Default::default()
    };
    let got = decoded(&envelope("events.k8s.io/v1", "Event", event.encode_to_vec()));
    assert_eq!(got.object["eventTime"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(got.object["reportingController"], "pier");

    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: meta("node-1", "kube-node-lease"),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: Some("node-1".into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime { seconds: Some(0), nanos: Some(5_000) }),
            ..Default::default()
        }),
    };
    let got = decoded(&envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec()));
    assert_json(
        &got.object["spec"],
        &json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "1970-01-01T00:00:00.000005Z"}),
    );
}

#[test]
fn delete_options_under_any_group_version() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Background".into()),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let got = decoded(&envelope("apps/v1", "DeleteOptions", opts.encode_to_vec()));
    assert_json(
        &got.object,
        &json!({
            "kind": "DeleteOptions",
            "apiVersion": "apps/v1",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Background",
            "dryRun": ["All"]
        }),
    );
}

#[test]
fn every_supported_kind_round_trips_through_encode() {
    for (api_version, kind) in pier_protobuf::supported_kinds() {
        let object =
            json!({"kind": kind, "apiVersion": api_version, "metadata": {"name": "x", "labels": {"a": "b"}}});
        let body = encode(&object).unwrap_or_else(|e| panic!("{kind}: {e}"));
        // Scale has metadata; DeleteOptions has none and drops it, like a Go client would.
        let got = decoded(&body).object;
        if kind == "DeleteOptions" {
            assert_json(&got, &json!({"kind": kind, "apiVersion": api_version}));
        } else {
            assert_json(&got, &object);
        }
        assert!(pier_protobuf::schema_name(api_version, kind).is_some());
    }
}

#[test]
fn encode_round_trips_a_rich_object() {
    let pod = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "p",
            "creationTimestamp": null,
            "deletionTimestamp": "2024-01-02T03:04:05Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
                                 "controller": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {}}, "time": "2024-01-02T03:04:05Z"}]
        },
        "spec": {
            "containers": [{"name": "c", "image": "busybox",
                            "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
                            "resources": {"requests": {"cpu": "100m"}}}],
            "securityContext": {"supplementalGroups": [1, -2]},
            "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": -1}]
        },
        "status": {"phase": "Running", "podIPs": [{"ip": "10.244.0.5"}], "hostIP": "172.30.0.10"}
    });
    let body = encode(&pod).expect("encode");
    assert_json(&decoded(&body).object, &pod);
}

fn err(body: &[u8]) -> ProtobufError {
    match decode(body) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn malformed_input_is_a_typed_error() {
    assert_eq!(err(b""), ProtobufError::MissingMagic);
    assert_eq!(err(b"{\"kind\":\"Pod\"}"), ProtobufError::MissingMagic);
    assert_eq!(err(b"k8s\0").to_string(), "protobuf envelope has no kind in its typeMeta");

    let cm = core::ConfigMap {
        metadata: meta("cm", "default"),
        data: strings(&[("a", "b")]),
        ..Default::default()
    };
    let body = envelope("v1", "ConfigMap", cm.encode_to_vec());
    // Every truncation of a valid body fails cleanly (or, cut at a field boundary of the
    // envelope, decodes to less).
    for len in 0..body.len() {
        let _ = decode(&body[..len]);
    }
    let raw = cm.encode_to_vec();
    let truncated = envelope("v1", "ConfigMap", raw[..raw.len() - 1].to_vec());
    assert!(matches!(err(&truncated), ProtobufError::Truncated { .. }), "{}", err(&truncated));

    // metadata (field 1) sent as a varint.
    let wrong = envelope("v1", "ConfigMap", vec![0x08, 0x01]);
    assert_eq!(
        err(&wrong).to_string(),
        "wrong wire type for ConfigMap.metadata: expected 2 (length-delimited), found 0 (varint)"
    );

    // Field number 0 is never valid.
    assert!(matches!(err(&envelope("v1", "ConfigMap", vec![0x02, 0x00])), ProtobufError::InvalidKey { .. }));

    assert_eq!(
        err(&envelope("batch/v1", "Job", vec![])),
        ProtobufError::UnknownKind { api_version: "batch/v1".into(), kind: "Job".into() }
    );

    let bad_utf8 = core::ConfigMap { metadata: meta("cm", ""), ..Default::default() };
    let mut raw = bad_utf8.encode_to_vec();
    // metadata.name = "cm" starts at byte 4 of the raw message: 0a <len> 0a 02 'c' 'm'.
    raw[4] = 0xff;
    assert!(matches!(err(&envelope("v1", "ConfigMap", raw)), ProtobufError::InvalidUtf8 { .. }));

    let mut gzip = envelope("v1", "ConfigMap", vec![]);
    gzip.truncate(gzip.len() - 4);
    gzip.extend([0x1a, 0x04]);
    gzip.extend(b"gzip");
    assert_eq!(err(&gzip), ProtobufError::UnsupportedContentEncoding("gzip".into()));
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::ConfigMap { metadata: meta("cm", "default"), ..Default::default() }.encode_to_vec();
    // Field 99 as varint, fixed64, bytes, fixed32.
    raw.extend([0x98, 0x06, 0x01]);
    raw.extend([0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    raw.extend([0x9a, 0x06, 0x01, 0x00]);
    raw.extend([0x9d, 0x06, 1, 2, 3, 4]);
    let got = decoded(&envelope("v1", "ConfigMap", raw));
    assert_eq!(got.object["metadata"]["name"], "cm");
}

#[test]
fn corrupted_bodies_never_panic() {
    let secret = core::Secret {
        metadata: meta("s", "default"),
        data: BTreeMap::from([("k".to_string(), vec![1, 2, 3])]),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let body = envelope("v1", "Secret", secret.encode_to_vec());
    // xorshift: deterministic, no extra dependency.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut mutated = body.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % mutated.len();
            mutated[i] = next() as u8;
        }
        let cut = (next() as usize) % (mutated.len() + 1);
        let _ = decode(&mutated[..cut.max(4)]);
    }
}
