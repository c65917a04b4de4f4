//! End-to-end: kubectl 1.32 and newer send protobuf bodies for its typed `create`
//! commands; every one of them must work against Pier. (kubectl 1.27-1.31 send JSON
//! for the same commands, which the other suites cover.)

use pier_testkit::kubectl_version;

#[test]
fn typed_create_commands_send_protobuf_and_work() {
    let mut c = pier_testkit::start_cluster!();
    c.kubectl = kubectl_version(33);
    let cases: &[(&[&str], &str)] = &[
        (&["create", "namespace", "shop"], "namespace/shop created"),
        (&["create", "configmap", "settings", "--from-literal=mode=fast"], "configmap/settings created"),
        (&["create", "secret", "generic", "creds", "--from-literal=password=s3cr3t"], "secret/creds created"),
        (
            &["create", "deployment", "web", "--image=luksa/kubia", "--replicas=2", "--port=8080"],
            "deployment.apps/web created",
        ),
        (&["create", "service", "clusterip", "web", "--tcp=80:8080"], "service/web created"),
        (
            &["create", "service", "nodeport", "web-np", "--tcp=80:8080", "--node-port=30123"],
            "service/web-np created",
        ),
        (
            &["create", "ingress", "kubia", "--rule=kubia.example.com/*=web:80"],
            "ingress.networking.k8s.io/kubia created",
        ),
        (&["create", "serviceaccount", "robot"], "serviceaccount/robot created"),
    ];
    for (args, expected) in cases {
        assert_eq!(c.kubectl(args).ok().trim(), *expected, "kubectl {args:?}");
    }
    let cm = c.kubectl(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]).ok().to_string();
    assert_eq!(cm, "fast");
    let pw = c.kubectl(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]).ok().to_string();
    assert_eq!(pw, "czNjcjN0", "base64 of s3cr3t");
    let deploy = c.kubectl(&["get", "deploy", "web", "-o", "json"]).json();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["image"], "luksa/kubia");
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);
    let np =
        c.kubectl(&["get", "svc", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}"]).ok().to_string();
    assert_eq!(np, "30123");
    let ing = c.kubectl(&["get", "ingress", "kubia"]).ok().to_string();
    assert!(ing.lines().nth(1).is_some_and(|l| l.contains("kubia.example.com") && l.contains("80")), "{ing}");
}
