//! Tests across modules: environments, the image table and processes, as a user would see them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, Pod, PodSpec, ResourceFieldSelector, ResourceRequirements, Secret, SecretEnvSource,
    SecretKeySelector, Service, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::services::tests::service;
use crate::*;

fn pod(containers: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("1234-uid".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into()), ("tier".into(), "a\"b".into())])),
            annotations: Some(BTreeMap::from([("note".into(), "hi".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            service_account_name: Some("default".into()),
            enable_service_links: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(v.into()), ..Default::default() }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar { name: name.into(), value_from: Some(source), ..Default::default() }
}

fn field(name: &str, path: &str) -> EnvVar {
    from(
        name,
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        },
    )
}

fn objects() -> PodObjects {
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some("settings".into()), ..Default::default() },
        data: Some(BTreeMap::from([("LEVEL".into(), "debug".into()), ("COLOR".into(), "blue".into())])),
        ..Default::default()
    };
    let secret = Secret {
        metadata: ObjectMeta { name: Some("creds".into()), ..Default::default() },
        data: Some(BTreeMap::from([("password".into(), ByteString(b"s3cret".to_vec()))])),
        ..Default::default()
    };
    PodObjects {
        config_maps: BTreeMap::from([("settings".into(), cm)]),
        secrets: BTreeMap::from([("creds".into(), secret)]),
    }
}

struct World {
    objects: PodObjects,
    services: Vec<Service>,
    allocatable: BTreeMap<String, Quantity>,
    pod_ips: Vec<String>,
    host_ips: Vec<String>,
}

impl World {
    fn new() -> Self {
        World {
            objects: objects(),
            services: vec![
                service("default", "kubernetes", "10.96.0.1", &[(Some("https"), 443, Some("TCP"))]),
                service("shop", "kubia", "10.96.0.10", &[(None, 80, None)]),
            ],
            allocatable: BTreeMap::from([
                ("cpu".into(), Quantity("2".into())),
                ("memory".into(), Quantity("4Gi".into())),
            ]),
            pod_ips: vec!["10.244.0.5".into(), "fd00::5".into()],
            host_ips: vec!["192.168.1.2".into()],
        }
    }

    fn env(&self, pod: &Pod) -> Result<Environment, EnvError> {
        let facts = PodFacts {
            node_name: "pier-node",
            host_ips: &self.host_ips,
            pod_ips: &self.pod_ips,
            services: &self.services,
            allocatable: &self.allocatable,
            objects: &self.objects,
        };
        container_env(pod, &pod.spec.as_ref().unwrap().containers[0], &facts)
    }
}

fn container(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
    Container {
        name: "main".into(),
        image: Some("busybox".into()),
        env: Some(env),
        env_from: Some(env_from),
        ..Default::default()
    }
}

#[test]
fn env_order_override_and_expansion() {
    let env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource { name: "settings".into(), optional: None }),
        prefix: Some("CFG_".into()),
        secret_ref: None,
    }];
    let c = container(
        vec![
            value("A", "one"),
            value("B", "$(A)-two-$(KUBIA_SERVICE_HOST)-$(CFG_LEVEL)"),
            value("C", "$$(A) $(LATER) $(NOPE)"),
            value("LATER", "x"),
            value("A", "again"),
            value("KUBIA_SERVICE_PORT", "mine"),
            EnvVar { name: "EMPTY".into(), ..Default::default() },
        ],
        env_from,
    );
    let env = World::new().env(&pod(vec![c])).unwrap();
    let first: Vec<(&str, &str)> = env.iter().take(7).collect();
    assert_eq!(
        first,
        vec![
            ("CFG_COLOR", "blue"),
            ("CFG_LEVEL", "debug"),
            ("A", "again"),
            ("B", "one-two-10.96.0.10-debug"),
            ("C", "$(A) $(LATER) $(NOPE)"),
            ("LATER", "x"),
            ("KUBIA_SERVICE_PORT", "mine"),
        ]
    );
    assert_eq!(env.get("EMPTY"), Some(""));
    // Service variables follow, and never override the container's own.
    assert_eq!(env.get("KUBIA_SERVICE_HOST"), Some("10.96.0.10"));
    assert_eq!(env.get("KUBIA_PORT_80_TCP_ADDR"), Some("10.96.0.10"));
    assert_eq!(env.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    assert_eq!(env.iter().filter(|(k, _)| *k == "KUBIA_SERVICE_PORT").count(), 1);
    assert_eq!(env.to_strings()[0], "CFG_COLOR=blue");
}

#[test]
fn service_links_disabled_keeps_only_master_service() {
    let mut p = pod(vec![container(vec![], vec![])]);
    p.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env = World::new().env(&p).unwrap();
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    assert_eq!(env.get("KUBIA_SERVICE_HOST"), None);
}

#[test]
fn env_from_secret_and_keys() {
    let c = container(
        vec![
            from(
                "PASS",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "COLOR",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "COLOR".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "MAYBE",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "nope".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ),
            from(
                "GONE",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "missing".into(),
                        key: "k".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ),
        ],
        vec![
            EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: "creds".into(), optional: None }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "absent".into(), optional: Some(true) }),
                ..Default::default()
            },
        ],
    );
    let env = World::new().env(&pod(vec![c])).unwrap();
    assert_eq!(env.get("password"), Some("s3cret"));
    assert_eq!(env.get("PASS"), Some("s3cret"));
    assert_eq!(env.get("COLOR"), Some("blue"));
    assert_eq!(env.get("MAYBE"), None);
    assert_eq!(env.get("GONE"), None);
}

#[test]
fn missing_objects_fail_with_upstream_messages() {
    let world = World::new();
    let cm_key = |name: &str, key: &str| {
        from(
            "X",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional: None,
                }),
                ..Default::default()
            },
        )
    };
    let secret_key = |name: &str, key: &str| {
        from(
            "X",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional: None,
                }),
                ..Default::default()
            },
        )
    };
    let cases = [
        (container(vec![cm_key("x", "k")], vec![]), r#"configmap "x" not found"#),
        (container(vec![cm_key("settings", "k")], vec![]), "couldn't find key k in ConfigMap shop/settings"),
        (container(vec![secret_key("x", "k")], vec![]), r#"secret "x" not found"#),
        (container(vec![secret_key("creds", "k")], vec![]), "couldn't find key k in Secret shop/creds"),
        (
            container(
                vec![],
                vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource { name: "x".into(), optional: Some(false) }),
                    ..Default::default()
                }],
            ),
            r#"configmap "x" not found"#,
        ),
        (
            container(
                vec![],
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource { name: "y".into(), optional: None }),
                    ..Default::default()
                }],
            ),
            r#"secret "y" not found"#,
        ),
        (container(vec![field("X", "spec.nope")], vec![]), "field label not supported: spec.nope"),
        (container(vec![field("X", "status.phase")], vec![]), "unsupported fieldPath: status.phase"),
    ];
    for (c, want) in cases {
        let err = world.env(&pod(vec![c])).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert_eq!(err.reason(), "CreateContainerConfigError");
    }
}

#[test]
fn downward_api_fields() {
    let c = container(
        vec![
            field("NAME", "metadata.name"),
            field("NS", "metadata.namespace"),
            field("UID", "metadata.uid"),
            field("APP", "metadata.labels['app']"),
            field("NOTE", "metadata.annotations['note']"),
            field("NOLABEL", "metadata.labels['missing']"),
            field("LABELS", "metadata.labels"),
            field("NODE", "spec.nodeName"),
            field("SA", "spec.serviceAccountName"),
            field("HOST", "status.hostIP"),
            field("HOSTS", "status.hostIPs"),
            field("IP", "status.podIP"),
            field("IPS", "status.podIPs"),
        ],
        vec![],
    );
    let env = World::new().env(&pod(vec![c])).unwrap();
    let want = [
        ("NAME", "web-1"),
        ("NS", "shop"),
        ("UID", "1234-uid"),
        ("APP", "web"),
        ("NOTE", "hi"),
        ("NOLABEL", ""),
        ("LABELS", "app=\"web\"\ntier=\"a\\\"b\""),
        ("NODE", "pier-node"),
        ("SA", "default"),
        ("HOST", "192.168.1.2"),
        ("HOSTS", "192.168.1.2"),
        ("IP", "10.244.0.5"),
        ("IPS", "10.244.0.5,fd00::5"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k), Some(v), "{k}");
    }
}

#[test]
fn resource_fields_with_divisors_and_allocatable() {
    let res = |name: &str, resource: &str, divisor: Option<&str>, container: Option<&str>| {
        from(
            name,
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: resource.into(),
                    divisor: divisor.map(|d| Quantity(d.into())),
                    container_name: container.map(Into::into),
                }),
                ..Default::default()
            },
        )
    };
    let mut main = container(
        vec![
            res("CPU_REQ", "requests.cpu", None, None),
            res("CPU_REQ_M", "requests.cpu", Some("1m"), None),
            res("MEM_LIMIT_MI", "limits.memory", Some("1Mi"), None),
            res("CPU_LIMIT", "limits.cpu", None, None),
            res("SIDE_MEM", "limits.memory", None, Some("side")),
            res("MEM_REQ", "requests.memory", None, None),
        ],
        vec![],
    );
    main.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
        ..Default::default()
    });
    let side = Container { name: "side".into(), ..Default::default() };
    let env = World::new().env(&pod(vec![main, side])).unwrap();
    assert_eq!(env.get("CPU_REQ"), Some("1"));
    assert_eq!(env.get("CPU_REQ_M"), Some("250"));
    assert_eq!(env.get("MEM_LIMIT_MI"), Some("64"));
    // No CPU limit: the node's allocatable stands in.
    assert_eq!(env.get("CPU_LIMIT"), Some("2"));
    assert_eq!(env.get("SIDE_MEM"), Some((4u64 << 30).to_string().as_str()));
    assert_eq!(env.get("MEM_REQ"), Some("0"));

    let bad = container(vec![res("X", "limits.gpu", None, None)], vec![]);
    assert_eq!(
        World::new().env(&pod(vec![bad])).unwrap_err().to_string(),
        "unsupported container resource : limits.gpu"
    );
    let bad = container(vec![res("X", "limits.cpu", None, Some("ghost"))], vec![]);
    assert_eq!(World::new().env(&pod(vec![bad])).unwrap_err().to_string(), "container ghost not found");
}

#[test]
fn references_cover_env_and_volumes() {
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, SecretVolumeSource};
    let c = container(
        vec![from(
            "P",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "k".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        )],
        vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: "settings".into(), optional: None }),
            ..Default::default()
        }],
    );
    let mut p = pod(vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![
        Volume {
            name: "v1".into(),
            config_map: Some(ConfigMapVolumeSource { name: "files".into(), ..Default::default() }),
            ..Default::default()
        },
        Volume {
            name: "v2".into(),
            secret: Some(SecretVolumeSource { secret_name: Some("tls".into()), ..Default::default() }),
            ..Default::default()
        },
    ]);
    let refs = referenced_objects(&p);
    assert_eq!(refs.config_maps.into_iter().collect::<Vec<_>>(), ["files", "settings"]);
    assert_eq!(refs.secrets.into_iter().collect::<Vec<_>>(), ["creds", "tls"]);
}

fn table() -> ImageTable {
    ImageTable::builtin("/var/lib/pier".as_ref(), "/usr/bin/pier".as_ref())
}

fn run(c: &Container, env: &Environment) -> Result<Process, ImageError> {
    process_for(c, env, &table())
}

fn image(name: &str) -> Container {
    Container { name: "c".into(), image: Some(name.into()), ..Default::default() }
}

#[test]
fn builtin_images() {
    let env = Environment::new();
    let cases: &[(&str, &[&str])] = &[
        ("luksa/kubia", &["/usr/bin/pier", "app", "kubia"]),
        ("docker.io/luksa/kubia:latest", &["/usr/bin/pier", "app", "kubia"]),
        ("parthghetia/kubia", &["/usr/bin/pier", "app", "kubia"]),
        ("luksa/kubia:v1", &["/usr/bin/pier", "app", "kubia", "--version", "v1"]),
        ("someone/kubia:v3", &["/usr/bin/pier", "app", "kubia", "--version", "v3"]),
        ("luksa/kubia-unhealthy", &["/usr/bin/pier", "app", "kubia-unhealthy"]),
        ("someone/kubia-unhealthy:latest", &["/usr/bin/pier", "app", "kubia-unhealthy"]),
        ("registry.k8s.io/pause:3.10", &["/usr/bin/pier", "app", "pause"]),
        ("pier/udp-echo", &["/usr/bin/pier", "app", "udp-echo"]),
        ("docker.io/pier/udp-echo:latest", &["/usr/bin/pier", "app", "udp-echo"]),
        ("busybox", &["sh"]),
        ("busybox:1.36@sha256:abcd", &["sh"]),
        ("alpine:3.20", &["sh"]),
        ("debian", &["sh"]),
        ("ubuntu:24.04", &["sh"]),
        ("tutum/dnsutils", &["sleep", "infinity"]),
    ];
    for (name, argv) in cases {
        let p = run(&image(name), &env).unwrap();
        assert_eq!(p.argv, *argv, "{name}");
        assert_eq!(p.working_dir, "/");
        assert_eq!(p.env.get("PATH"), Some(DEFAULT_PATH));
    }
    let curl = run(&image("curlimages/curl"), &env).unwrap();
    assert_eq!(curl.argv[..2], ["/bin/sh", "-c"]);
    assert_eq!(curl.argv.last().map(String::as_str), Some("curl"));
}

#[test]
fn curl_entrypoint_behaves_like_the_real_image() {
    // The real image runs `curl ARGS` when the first argument is an option and `ARGS` when it is a command.
    let mut c = image("curlimages/curl");
    c.args = Some(vec!["echo".into(), "hello".into()]);
    let p = run(&c, &Environment::new()).unwrap();
    let out = std::process::Command::new(&p.argv[0]).args(&p.argv[1..]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    c.args = Some(vec!["--version-that-does-not-exist".into()]);
    let p = run(&c, &Environment::new()).unwrap();
    let script = &p.argv[2];
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script.replace("set -- curl", "set -- echo would-run-curl"), "x", "--flag"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "would-run-curl --flag\n");
}

#[test]
fn command_and_args_semantics() {
    let env: Environment = [("NAME", "world"), ("PATH", "/bin")].into_iter().collect();
    // args only: ENTRYPOINT + args.
    let mut c = image("luksa/kubia");
    c.args = Some(vec!["--port".into(), "$(NAME)".into()]);
    assert_eq!(run(&c, &env).unwrap().argv, ["/usr/bin/pier", "app", "kubia", "--port", "world"]);
    // command only: image CMD is not used.
    let mut c = image("busybox");
    c.command = Some(vec!["echo".into(), "hi $(NAME) $$(NAME) $(MISSING)".into()]);
    assert_eq!(run(&c, &env).unwrap().argv, ["echo", "hi world $(NAME) $(MISSING)"]);
    // both.
    c.args = Some(vec!["a".into(), "$(NAME)".into()]);
    assert_eq!(run(&c, &env).unwrap().argv, ["echo", "hi world $(NAME) $(MISSING)", "a", "world"]);
    // args replaces CMD.
    let mut c = image("busybox");
    c.args = Some(vec!["-c".into(), "true".into()]);
    assert_eq!(run(&c, &env).unwrap().argv, ["-c", "true"]);
    // Container env overrides the image's; working dir from the container.
    let mut c = image("busybox");
    c.working_dir = Some("/tmp".into());
    let p = run(&c, &env).unwrap();
    assert_eq!(p.working_dir, "/tmp");
    assert_eq!(p.env.iter().collect::<Vec<_>>(), [("PATH", "/bin"), ("NAME", "world")]);
}

#[test]
fn unknown_images() {
    let env = Environment::new();
    let err = run(&image("foo/bar:1"), &env).unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    assert_eq!(
        err.to_string(),
        "image \"foo/bar:1\" is not in Pier's image table: give the container a command, or map the image in /var/lib/pier/images.yaml"
    );
    let mut c = image("foo/bar:1");
    c.args = Some(vec!["x".into()]);
    assert!(matches!(run(&c, &env), Err(ImageError::NotInTable { .. })));
    c.command = Some(vec!["sleep".into()]);
    let p = run(&c, &env).unwrap();
    assert_eq!(p.argv, ["sleep", "x"]);
    assert_eq!(p.env.get("PATH"), Some(DEFAULT_PATH));
    assert_eq!(p.working_dir, "/");
}

#[test]
fn table_file_extends_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images.yaml"),
        r#"
images:
  - image: example.com/team/web
    entrypoint: ["python3", "-m", "http.server"]
    cmd: ["8080"]
    workingDir: /srv
    env: ["PATH=/opt/bin", "GREETING=hello=there"]
  - image: busybox
    cmd: ["{pier}", "app", "pause"]
"#,
    )
    .unwrap();
    let table = ImageTable::load(dir.path(), "/x/pier".as_ref()).unwrap();
    let web = table.lookup("example.com/team/web:2").unwrap();
    assert_eq!(web.entrypoint, ["python3", "-m", "http.server"]);
    assert_eq!(web.cmd, ["8080"]);
    assert_eq!(web.working_dir.as_deref(), Some("/srv"));
    assert_eq!(
        web.env,
        [("PATH".to_string(), "/opt/bin".to_string()), ("GREETING".into(), "hello=there".into())]
    );
    assert_eq!(table.lookup("busybox:1.36").unwrap().cmd, ["/x/pier", "app", "pause"]);
    assert_eq!(table.lookup("luksa/kubia").unwrap().entrypoint, ["/x/pier", "app", "kubia"]);
    let c = image("example.com/team/web");
    let p = process_for(&c, &Environment::new(), &table).unwrap();
    assert_eq!((p.argv.len(), p.working_dir.as_str()), (4, "/srv"));
}

#[test]
fn missing_table_file_is_fine_and_broken_one_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ImageTable::load(dir.path(), "/x/pier".as_ref()).is_ok());
    let cases = [
        ("images:\n  - image: a\n    cmds: [x]\n", "images[0]: unknown field `cmds`"),
        (
            "images:\n  - image: a\n  - image: b\n    env: [\"NOEQUALS\"]\n",
            "images[1].env: env entry \"NOEQUALS\" is not NAME=value",
        ),
        ("images:\n  - cmd: [x]\n", "images[0]: missing field `image`"),
        ("images: [\n", "line 2"),
    ];
    for (text, want) in cases {
        std::fs::write(dir.path().join("images.yaml"), text).unwrap();
        let err = ImageTable::load(dir.path(), "/x/pier".as_ref()).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
        assert!(err.contains("images.yaml"), "{err}");
        assert!(err.contains("line "), "{err}");
    }
}
