//! Defaulting goldens: the object a user writes, and what upstream stores.

use serde_json::json;

use super::{apply_defaults, image_tag};

#[test]
fn pod_golden() {
    let mut pod = json!({
        "metadata": {"name": "kubia", "namespace": "default"},
        "spec": {"containers": [{
            "name": "kubia", "image": "luksa/kubia",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "readinessProbe": {"httpGet": {"port": 8080}},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}
        }]}
    });
    apply_defaults("", "Pod", &mut pod);
    let want = json!({
        "metadata": {"name": "kubia", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "kubia", "image": "luksa/kubia",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}}],
                "readinessProbe": {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                                   "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5,
                                  "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always",
                "resources": {}
            }],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    });
    assert_eq!(pod, want);
    // Idempotent: a second pass changes nothing.
    let again = pod.clone();
    apply_defaults("", "Pod", &mut pod);
    assert_eq!(pod, again);
}

#[test]
fn image_pull_policy_follows_the_tag() {
    assert_eq!(image_tag("luksa/kubia").as_deref(), Some("latest"));
    assert_eq!(image_tag("luksa/kubia:latest").as_deref(), Some("latest"));
    assert_eq!(image_tag("localhost:5000/kubia").as_deref(), Some("latest"));
    assert_eq!(image_tag("localhost:5000/kubia:v1").as_deref(), Some("v1"));
    assert_eq!(image_tag("kubia@sha256:abc"), None);
    let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "nginx:1.25"}]}});
    apply_defaults("", "Pod", &mut pod);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn replication_controller_golden() {
    let mut rc = json!({
        "metadata": {"name": "kubia"},
        "spec": {"template": {"metadata": {"labels": {"app": "kubia"}},
                 "spec": {"containers": [{"name": "kubia", "image": "luksa/kubia"}]}}}
    });
    apply_defaults("", "ReplicationController", &mut rc);
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["spec"]["selector"], json!({"app": "kubia"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "kubia"}));
    let tspec = &rc["spec"]["template"]["spec"];
    assert_eq!(tspec["restartPolicy"], "Always");
    assert_eq!(tspec["dnsPolicy"], "ClusterFirst");
    // Templates do not get the Pod-only defaults.
    assert!(tspec.get("enableServiceLinks").is_none());
    assert!(tspec.get("priority").is_none());
}

#[test]
fn deployment_and_replica_set_golden() {
    let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}},
                      "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
    apply_defaults("apps", "Deployment", &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
    apply_defaults("apps", "Deployment", &mut recreate);
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    let mut rs = json!({"spec": {}});
    apply_defaults("apps", "ReplicaSet", &mut rs);
    assert_eq!(rs["spec"]["replicas"], 1);
}

#[test]
fn service_goldens() {
    let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"name": "b", "port": 443}]}});
    apply_defaults("", "Service", &mut svc);
    assert_eq!(
        svc,
        json!({"spec": {
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                      {"name": "b", "port": 443, "protocol": "TCP", "targetPort": 443}],
            "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster"
        }, "status": {"loadBalancer": {}}})
    );
    let mut affinity = json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}});
    apply_defaults("", "Service", &mut affinity);
    assert_eq!(affinity["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));
    let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    apply_defaults("", "Service", &mut lb);
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    let mut np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    apply_defaults("", "Service", &mut np);
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(np["spec"].get("allocateLoadBalancerNodePorts").is_none());
    let mut fixed = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}});
    apply_defaults("", "Service", &mut fixed);
    assert_eq!(fixed["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    assert_eq!(fixed["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(fixed["spec"]["ipFamilyPolicy"], "SingleStack");
    let mut ext = json!({"spec": {"type": "ExternalName", "externalName": "someapi.somecompany.com", "ports": [{"port": 80}]}});
    apply_defaults("", "Service", &mut ext);
    for absent in [
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "internalTrafficPolicy",
        "externalTrafficPolicy",
    ] {
        assert!(ext["spec"].get(absent).is_none(), "{absent}");
    }
}

#[test]
fn other_kinds() {
    let mut secret = json!({"data": {}});
    apply_defaults("", "Secret", &mut secret);
    assert_eq!(secret["type"], "Opaque");
    let mut ns = json!({"metadata": {"name": "parth-test-2"}});
    apply_defaults("", "Namespace", &mut ns);
    assert_eq!(
        ns,
        json!({"metadata": {"name": "parth-test-2", "labels": {"kubernetes.io/metadata.name": "parth-test-2"}},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    );
    let mut ep = json!({"subsets": [{"addresses": [{"ip": "11.11.11.11"}], "ports": [{"port": 80}]}]});
    apply_defaults("", "Endpoints", &mut ep);
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    let mut slice = json!({"addressType": "IPv4", "ports": [{"port": 8080}]});
    apply_defaults("discovery.k8s.io", "EndpointSlice", &mut slice);
    assert_eq!(slice["ports"][0], json!({"port": 8080, "name": "", "protocol": "TCP"}));
    let mut vol_pod = json!({"spec": {"containers": [], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}});
    apply_defaults("", "Pod", &mut vol_pod);
    assert_eq!(vol_pod["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(vol_pod["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
    // Kinds without defaults are untouched.
    let mut cm = json!({"data": {"a": "b"}});
    apply_defaults("", "ConfigMap", &mut cm);
    assert_eq!(cm, json!({"data": {"a": "b"}}));
}
