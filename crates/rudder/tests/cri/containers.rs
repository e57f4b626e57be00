//! What happens to containers: crashes and back-off, failed pulls, probes, their environment,
//! lifecycle hooks, volumes, /etc/hosts and DNS, limits and security contexts, and containers
//! that outlive a killed or cut-off agent.

use super::*;

#[test]
fn crashing_containers_back_off_and_failed_pulls_say_why() {
    let (s, _dir, log, _agent) = cluster("crash-node");
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("crasher", "echo crash; exit 1", "Always"),
    )
    .ok();
    // Nothing listens on port 9 of loopback: the pull fails at once.
    let mut unpullable: Value = serde_json::from_str(&pod("unpullable", "true", "Always")).unwrap();
    unpullable["spec"]["containers"][0]["image"] = json!("127.0.0.1:9/nothing:1");
    let mut never: Value = serde_json::from_str(&pod("never", "true", "Always")).unwrap();
    never["spec"]["containers"][0]["image"] = json!("rudder.local/absent:1");
    never["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    for p in [&unpullable, &never] {
        s.kubectl_stdin(&["apply", "-f", "-"], &p.to_string()).ok();
    }

    // The first exit is restarted at once, the second waits 10 s, the third 20 s.
    eventually("crasher backs off for 20 s", &log, || {
        waiting(&s, "crasher").1.starts_with("back-off 20s ")
    });
    let p = get(&s, "pod/crasher");
    let st = &p["status"]["containerStatuses"][0];
    let (reason, message) = waiting(&s, "crasher");
    assert_eq!(reason, "CrashLoopBackOff", "{st}");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        message,
        format!("back-off 20s restarting failed container=main pod=crasher_default({uid})")
    );
    assert_eq!(st["restartCount"], json!(2), "{st}");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], json!(1), "{st}");
    assert_eq!(
        st["lastState"]["terminated"]["reason"],
        json!("Error"),
        "{st}"
    );
    assert_eq!(p["status"]["phase"], json!("Running"), "{p}");
    // Backing off, the container's log is the last crash's, as is the previous one's.
    assert_eq!(s.kubectl(&["logs", "crasher"]).ok(), "crash\n");
    assert_eq!(
        s.kubectl(&["logs", "crasher", "--previous"]).ok(),
        "crash\n"
    );
    // kubectl shows what a kubelet's events say.
    let described = s.kubectl(&["describe", "pod", "crasher"]).ok();
    for line in [
        "Back-off restarting failed container main in pod crasher_default",
        "Created container: main",
        "Started container main",
        &format!("Container image \"{BUSYBOX}\" already present on machine"),
    ] {
        assert!(described.contains(line), "{line:?} not in:\n{described}");
    }

    eventually("unpullable backs off", &log, || {
        waiting(&s, "unpullable").0 == "ImagePullBackOff"
    });
    assert_eq!(
        waiting(&s, "unpullable").1,
        "Back-off pulling image \"127.0.0.1:9/nothing:1\""
    );
    let described = s.kubectl(&["describe", "pod", "unpullable"]).ok();
    assert!(
        described.contains("Failed to pull image \"127.0.0.1:9/nothing:1\""),
        "{described}"
    );
    eventually("never refused", &log, || {
        waiting(&s, "never").0 == "ErrImageNeverPull"
    });
    assert_eq!(
        waiting(&s, "never"),
        (
            "ErrImageNeverPull".to_string(),
            "Container image \"rudder.local/absent:1\" is not present with pull policy of Never"
                .to_string()
        )
    );
    let table = s.kubectl(&["get", "pods"]).ok();
    for (pod, status) in [
        ("crasher", "CrashLoopBackOff"),
        ("unpullable", "ImagePullBackOff"),
        ("never", "ErrImageNeverPull"),
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(pod) && l.contains(status)),
            "{pod} not {status}:\n{table}"
        );
    }
    s.kubectl(&["delete", "pod", "--all", "--timeout=60s"]).ok();
}

#[test]
fn probes_decide_readiness_and_restart_unhealthy_containers() {
    let (s, _dir, log, _agent) = cluster("probe-node");
    let exec_probe = |file: &str| {
        json!({"exec": {"command": ["cat", file]},
                                         "periodSeconds": 1, "failureThreshold": 1})
    };
    // Ready from the second to the fifth second, then not.
    let mut toggling: Value = serde_json::from_str(&pod(
        "toggling",
        "sleep 2; touch /ready; sleep 3; rm /ready; sleep 3600",
        "Always",
    ))
    .unwrap();
    toggling["spec"]["containers"][0]["readinessProbe"] = exec_probe("/ready");
    // Alive for two seconds after each start.
    let mut dying: Value = serde_json::from_str(&pod(
        "dying",
        "touch /alive; sleep 2; rm /alive; sleep 3600",
        "Always",
    ))
    .unwrap();
    dying["spec"]["containers"][0]["livenessProbe"] = exec_probe("/alive");
    for p in [&toggling, &dying] {
        s.kubectl_stdin(&["apply", "-f", "-"], &p.to_string()).ok();
    }
    let ready = |s: &RudderServer| {
        get(s, "pod/toggling")["status"]["containerStatuses"][0]["ready"] == json!(true)
    };
    eventually("toggling running", &log, || running(&s, "toggling"));
    eventually("toggling ready", &log, || ready(&s));
    let p = get(&s, "pod/toggling");
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], json!("True"), "{p}");
    eventually("toggling unready again", &log, || !ready(&s));
    assert_eq!(
        get(&s, "pod/toggling")["status"]["containerStatuses"][0]["restartCount"],
        json!(0)
    );

    eventually("dying restarted by its liveness probe", &log, || {
        get(&s, "pod/dying")["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    });
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=dying",
        ])
        .ok();
    for what in [
        "Liveness probe failed: cat: can't open '/alive': No such file or directory",
        "Container main failed liveness probe, will be restarted",
    ] {
        assert!(events.contains(what), "{what:?} not in:\n{events}");
    }
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=toggling",
        ])
        .ok();
    assert!(events.contains("Readiness probe failed"), "{events}");
    s.kubectl(&["delete", "pod", "--all", "--timeout=60s"]).ok();
}

#[test]
fn containers_get_their_environment_from_config_secrets_and_the_pod() {
    let (s, _dir, log, _agent) = cluster("env-node");
    s.kubectl(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ])
    .ok();
    let mut envy: Value = serde_json::from_str(&pod(
        "envy",
        "echo $(GREETING) $GREETING $PW $POD $MEM $CM_greeting $KUBERNETES_SERVICE_HOST; sleep 3600",
        "Always",
    ))
    .unwrap();
    envy["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "64Mi"}});
    envy["spec"]["containers"][0]["envFrom"] =
        json!([{"prefix": "CM_", "configMapRef": {"name": "settings"}}]);
    envy["spec"]["containers"][0]["env"] = json!([
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]);
    let mut later: Value =
        serde_json::from_str(&pod("later", "echo $LATE; sleep 3600", "Always")).unwrap();
    later["spec"]["containers"][0]["env"] = json!([
        {"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "k"}}},
    ]);
    for p in [&envy, &later] {
        s.kubectl_stdin(&["apply", "-f", "-"], &p.to_string()).ok();
    }
    eventually("envy running", &log, || running(&s, "envy"));
    let cluster_ip = s
        .kubectl(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .ok();
    eventually("envy's output", &log, || {
        !s.kubectl(&["logs", "envy"]).stdout().is_empty()
    });
    assert_eq!(
        s.kubectl(&["logs", "envy"]).ok(),
        format!("hello hello s3cret envy 64 hello {cluster_ip}\n")
    );

    // A ConfigMap that does not exist yet holds the container back, saying which.
    eventually("later waits for its ConfigMap", &log, || {
        waiting(&s, "later").0 == "CreateContainerConfigError"
    });
    assert_eq!(waiting(&s, "later").1, "configmap \"later\" not found");
    s.kubectl(&["create", "configmap", "later", "--from-literal=k=arrived"])
        .ok();
    eventually("later runs once it exists", &log, || {
        s.kubectl(&["logs", "later"]).stdout() == "arrived\n"
    });
    s.kubectl(&["delete", "pod", "--all", "--timeout=60s"]).ok();
}

#[test]
fn lifecycle_hooks_run_at_start_and_before_stop() {
    let (s, _dir, log, _agent) = cluster("hook-node");
    // The preStop hook calls the test, which records what it is asked.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap();
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let mut hooked: Value = serde_json::from_str(&pod(
        "hooked",
        "trap '' TERM; while true; do sleep 1; done",
        "Always",
    ))
    .unwrap();
    hooked["spec"]["terminationGracePeriodSeconds"] = json!(3);
    hooked["spec"]["containers"][0]["lifecycle"] = json!({
        "postStart": {"exec": {"command": ["sh", "-c", "echo post-start > /marker"]}},
        "preStop": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/pre-stop"}},
    });
    let mut failing: Value =
        serde_json::from_str(&pod("failing-hook", "sleep 3600", "Always")).unwrap();
    failing["spec"]["containers"][0]["lifecycle"] =
        json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}});
    for p in [&hooked, &failing] {
        s.kubectl_stdin(&["apply", "-f", "-"], &p.to_string()).ok();
    }
    eventually("hooked running", &log, || running(&s, "hooked"));
    eventually(
        "the failed postStart hook restarts its container",
        &log,
        || {
            get(&s, "pod/failing-hook")["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        },
    );
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=failing-hook",
        ])
        .ok();
    assert!(events.contains("FailedPostStartHook"), "{events}");
    // The container ignores SIGTERM: it goes when the grace period is over, after its
    // preStop hook has been called.
    s.kubectl(&["delete", "pod", "hooked", "--timeout=60s"])
        .ok();
    let request = asked.join().unwrap();
    assert!(
        request.starts_with("GET /pre-stop HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("user-agent: kube-probe/"),
        "{request}"
    );
    s.kubectl(&["delete", "pod", "--all", "--timeout=60s"]).ok();
}

#[test]
fn volumes_hosts_and_dns_reach_the_containers() {
    in_new_netns(|| {
        // ConfigMap changes reach volumes within the sync frequency (the kubelet's, 1m).
        let (s, _dir, log, _agent) = cluster_with("vol-node", &["--sync-frequency", "2s"], |_| {});
        let host_dir = tempfile::tempdir().unwrap();
        let host_path = host_dir.path().join("made");
        let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
             "data": {"greeting": "hello\n", "other": "x"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
             "stringData": {"password": "s3cret"}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "vol", "labels": {"app": "vol"}},
             "spec": {"terminationGracePeriodSeconds": 1,
                      "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["alias.example"]}],
                      "volumes": [
                          {"name": "cfg", "configMap": {"name": "cfg"}},
                          {"name": "picked", "configMap": {"name": "cfg", "defaultMode": 0o400,
                              "items": [{"key": "greeting", "path": "deep/hi.txt"}]}},
                          {"name": "sec", "secret": {"secretName": "sec"}},
                          {"name": "scratch", "emptyDir": {}},
                          {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                          {"name": "host", "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}},
                          {"name": "info", "downwardAPI": {"items": [
                              {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                              {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                          {"name": "all", "projected": {"sources": [
                              {"configMap": {"name": "cfg", "items": [{"key": "other", "path": "other"}]}},
                              {"secret": {"name": "sec"}},
                              {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
                      "containers": [
                          {"name": "writer", "image": BUSYBOX,
                           "command": ["sh", "-c", "echo shared > /scratch/note; echo on-host > /host/file; sleep 3600"],
                           "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                            {"name": "host", "mountPath": "/host"}]},
                          {"name": "reader", "image": BUSYBOX, "command": ["sleep", "3600"],
                           "volumeMounts": [
                               {"name": "cfg", "mountPath": "/cfg"},
                               {"name": "picked", "mountPath": "/picked"},
                               {"name": "cfg", "mountPath": "/one/greeting", "subPath": "greeting"},
                               {"name": "sec", "mountPath": "/sec"},
                               {"name": "scratch", "mountPath": "/scratch", "readOnly": true},
                               {"name": "mem", "mountPath": "/mem"},
                               {"name": "info", "mountPath": "/info"},
                               {"name": "all", "mountPath": "/all"}]}]}}]});
        s.kubectl_stdin(&["apply", "-f", "-"], &objects.to_string())
            .ok();
        eventually("vol Running", &log, || {
            get(&s, "pod/vol")["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["state"]["running"].is_object()))
        });
        let cat = |path: &str| {
            s.kubectl(&["exec", "vol", "-c", "reader", "--", "cat", path])
                .ok()
        };
        assert_eq!(cat("/cfg/greeting"), "hello\n");
        assert_eq!(cat("/cfg/other"), "x");
        assert_eq!(cat("/picked/deep/hi.txt"), "hello\n");
        assert_eq!(cat("/one/greeting"), "hello\n");
        assert_eq!(cat("/sec/password"), "s3cret");
        assert_eq!(cat("/info/labels"), "app=\"vol\"\n");
        assert_eq!(cat("/info/name"), "vol");
        assert_eq!(cat("/all/other"), "x");
        assert_eq!(cat("/all/password"), "s3cret");
        assert_eq!(cat("/all/ns"), "default");
        eventually("the writer's note", &log, || {
            s.kubectl(&["exec", "vol", "-c", "reader", "--", "cat", "/scratch/note"])
                .stdout()
                == "shared\n"
        });
        assert_eq!(
            std::fs::read_to_string(host_path.join("file")).unwrap(),
            "on-host\n"
        );
        // Read-only where they must be.
        for path in ["/cfg/new", "/sec/new", "/scratch/new"] {
            let run = s.kubectl(&["exec", "vol", "-c", "reader", "--", "touch", path]);
            assert!(!run.out.status.success(), "{path} is writable");
        }
        s.kubectl(&["exec", "vol", "-c", "reader", "--", "touch", "/mem/ok"])
            .ok();
        let mounts = cat("/proc/mounts");
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(" /mem tmpfs ") && l.contains("size=8192k")),
            "{mounts}"
        );
        assert!(
            mounts.lines().any(|l| l.contains(" /sec tmpfs ")),
            "{mounts}"
        );
        // /etc/hosts and resolv.conf.
        let ip = get(&s, "pod/vol")["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_string();
        let hosts = cat("/etc/hosts");
        assert!(hosts.contains(&format!("{ip}\tvol\n")), "{hosts}");
        assert!(hosts.contains("10.9.9.9\talias.example\n"), "{hosts}");
        let resolv = cat("/etc/resolv.conf");
        assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
        assert!(
            resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
            "{resolv}"
        );
        assert!(resolv.contains("options ndots:5"), "{resolv}");

        // An update of the ConfigMap reaches the running container.
        s.kubectl(&[
            "patch",
            "configmap",
            "cfg",
            "-p",
            r#"{"data":{"greeting":"updated\n"}}"#,
        ])
        .ok();
        eventually("the volume updated", &log, || {
            s.kubectl(&["exec", "vol", "-c", "reader", "--", "cat", "/cfg/greeting"])
                .stdout()
                == "updated\n"
        });

        // A ConfigMap that is not there holds the pod back, saying why, until it is.
        let waiting = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "volumes": [{"name": "v", "configMap": {"name": "later"}}],
                     "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
                                     "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}});
        s.kubectl_stdin(&["apply", "-f", "-"], &waiting.to_string())
            .ok();
        eventually("FailedMount", &log, || {
            s.kubectl(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=waits,reason=FailedMount",
                "-o",
                "json",
            ])
            .stdout()
            .contains("configmap \\\"later\\\" not found")
        });
        assert!(
            get(&s, "pod/waits")["status"]["containerStatuses"][0]["state"]["running"].is_null()
        );
        s.kubectl(&["create", "configmap", "later", "--from-literal=k=v"])
            .ok();
        eventually("waits Running", &log, || running(&s, "waits"));

        // Deleting the pods unmounts and removes their volumes.
        let uid = get(&s, "pod/vol")["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        s.kubectl(&["delete", "pod", "vol", "waits", "--wait=false"])
            .ok();
        eventually("the pods gone", &log, || {
            s.kubectl(&["get", "pods", "-o", "name"])
                .stdout()
                .is_empty()
        });
        let pod_dir = _dir.path().join("agent/pods").join(&uid);
        eventually("the pod's directory removed", &log, || !pod_dir.exists());
        let host_mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!host_mounts.contains(&uid), "{host_mounts}");
    });
}

#[test]
fn limits_security_contexts_and_oom_kills() {
    let (s, _dir, log, _agent) = cluster("limits-node");
    let pods = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "limited"},
         "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
                  "securityContext": {"runAsUser": 1234, "runAsGroup": 4321},
                  "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
                                  "securityContext": {"readOnlyRootFilesystem": true,
                                                      "allowPrivilegeEscalation": false},
                                  "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                                                "limits": {"cpu": "250m", "memory": "64Mi"}}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
         "spec": {"hostNetwork": true, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                  "containers": [{"name": "main", "image": BUSYBOX, "command": ["tail", "/dev/zero"],
                                  "resources": {"limits": {"memory": "16Mi"}}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rootless"},
         "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 1,
                  "securityContext": {"runAsNonRoot": true},
                  "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]}}]});
    s.kubectl_stdin(&["apply", "-f", "-"], &pods.to_string())
        .ok();
    eventually("limited Running", &log, || running(&s, "limited"));
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "limited", "--"];
        all.extend(args);
        s.kubectl(&all)
    };
    assert_eq!(exec(&["id", "-u"]).ok(), "1234\n");
    assert_eq!(exec(&["id", "-g"]).ok(), "4321\n");
    assert!(!exec(&["touch", "/written"]).out.status.success());
    // The container sees its own cgroup (v1: one hierarchy per controller; v2: one).
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    if v1 {
        assert_eq!(
            exec(&["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).ok(),
            format!("{}\n", 64 << 20)
        );
        assert_eq!(
            exec(&["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]).ok(),
            "25000\n"
        );
        assert_eq!(
            exec(&["cat", "/sys/fs/cgroup/cpu/cpu.shares"]).ok(),
            "102\n"
        );
    } else {
        assert_eq!(
            exec(&["cat", "/sys/fs/cgroup/memory.max"]).ok(),
            format!("{}\n", 64 << 20)
        );
        assert_eq!(
            exec(&["cat", "/sys/fs/cgroup/cpu.max"]).ok(),
            "25000 100000\n"
        );
    }
    let uid = get(&s, "pod/limited")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let cgroup = exec(&["cat", "/proc/self/cgroup"]).ok();
    // With a cgroup namespace (v2) the container's own path is "/".
    assert!(
        !v1 || cgroup.contains(&format!("/kubepods/burstable/pod{uid}/")),
        "{cgroup}"
    );
    assert!(exec(&["cat", "/proc/kcore"])
        .fails()
        .contains("/proc/kcore"));

    eventually("hog OOMKilled", &log, || {
        get(&s, "pod/hog")["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
            == "OOMKilled"
    });
    let hog = get(&s, "pod/hog");
    assert_eq!(
        hog["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    assert_eq!(hog["status"]["phase"], "Failed");

    // Deleting the pod removes its cgroup too.
    s.kubectl(&["delete", "pod", "limited", "--timeout=60s"])
        .ok();
    let pod_cgroup = if v1 {
        format!("/sys/fs/cgroup/memory/kubepods/burstable/pod{uid}")
    } else {
        format!("/sys/fs/cgroup/kubepods/burstable/pod{uid}")
    };
    eventually("the pod's cgroup removed", &log, || {
        !std::path::Path::new(&pod_cgroup).exists()
    });

    eventually("rootless refused", &log, || {
        waiting(&s, "rootless").0 == "CreateContainerConfigError"
    });
    let (_, message) = waiting(&s, "rootless");
    assert!(
        message.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"rootless_default("
        ),
        "{message}"
    );
}

#[test]
fn containers_outlive_a_killed_agent_and_are_adopted() {
    let s = RudderServer::start(bin(), &["--disable-agent"]).unwrap();
    let token = s.node_token().unwrap();
    let (dir, log, agent) = start_agent(&s, &token, "phoenix", &[], |_| {});
    eventually("the default service account", &log, || {
        s.kubectl(&["get", "serviceaccount", "default", "-o", "name"])
            .stdout()
            .contains("serviceaccount/default")
    });
    start_pod(
        &s,
        &log,
        &pod("survivor", "echo started; sleep 3600", "Always"),
    );
    let before = get(&s, "pod/survivor")["status"]["containerStatuses"][0].clone();
    // kill -9: no chance to stop anything. Its Drop (which cleans up) must not run either.
    let mut agent = std::mem::ManuallyDrop::new(agent);
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let (_, again) = run_agent(&s, &token, "phoenix", dir.path(), &[]);
    // Images by hand, into the node's containerd (the airgap way besides the images folder).
    let archive = dir.path().join("extra.tar");
    std::fs::write(
        &archive,
        image::busybox_archive(
            "rudder.local/test/extra:7",
            std::fs::read("/bin/busybox").unwrap(),
            &["sh"],
        )
        .unwrap(),
    )
    .unwrap();
    let rudder = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rudder {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    eventually("the agent's containerd back", &log, || {
        CriView::of(dir.path()).sandboxes().len() == 1
    });
    rudder(&["images", "import", archive.to_str().unwrap()]);
    let list = rudder(&["images", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("rudder.local/test/extra ") && l.contains(" 7 ")),
        "{list}"
    );
    assert!(list.contains("rudder.local/test/busybox "), "{list}");
    eventually("the agent back", &log, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("node registered")
            .count()
            >= 2
    });
    // The same container, never restarted, and still reachable.
    eventually("the pod's status written again", &log, || {
        s.kubectl(&["exec", "survivor", "--", "echo", "alive"])
            .stdout()
            == "alive\n"
    });
    let after = get(&s, "pod/survivor")["status"]["containerStatuses"][0].clone();
    assert_eq!(after["containerID"], before["containerID"]);
    assert_eq!(after["restartCount"], 0);
    assert_eq!(
        after["state"]["running"]["startedAt"],
        before["state"]["running"]["startedAt"]
    );
    assert_eq!(s.kubectl(&["logs", "survivor"]).ok(), "started\n");
    drop(again);
}

/// A containerd of the test's own, for agents given `--container-runtime-endpoint`: on drop,
/// the pods it runs are removed through the CRI and it is stopped.
struct OwnContainerd {
    rt: tokio::runtime::Runtime,
    containerd: Option<rudder_agent::containerd::Containerd>,
    _dir: tempfile::TempDir,
}

impl OwnContainerd {
    fn start() -> OwnContainerd {
        use rudder_agent::containerd::{Containerd, Layout, Settings};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("rudder-cri-containerd-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let layout = Layout::new(dir.path().join("containerd"));
        let settings = Settings::for_this_machine(image::PAUSE_IMAGE);
        let containerd = rt.block_on(Containerd::start(layout, &settings)).unwrap();
        OwnContainerd {
            rt,
            containerd: Some(containerd),
            _dir: dir,
        }
    }

    fn socket(&self) -> PathBuf {
        self.containerd.as_ref().unwrap().layout().socket()
    }
}

impl Drop for OwnContainerd {
    fn drop(&mut self) {
        let socket = self.socket();
        let mut containerd = self.containerd.take().unwrap();
        self.rt.block_on(async {
            if let Ok(cri) = Cri::connect(&socket).await {
                let _ = cri.remove_all_sandboxes().await;
            }
            containerd.stop(Duration::from_secs(10)).await;
        });
    }
}

#[test]
fn containers_outlive_a_stopped_agent_and_are_adopted() {
    // A containerd that outlives the agent: what the agent does to its pods as it stops is
    // all that decides whether they survive (the agent's own containerd stops with it).
    let containerd = OwnContainerd::start();
    let socket = containerd.socket();
    let endpoint = ["--container-runtime-endpoint", socket.to_str().unwrap()];
    let s = RudderServer::start(bin(), &["--disable-agent"]).unwrap();
    let token = s.node_token().unwrap();
    let (dir, log, agent) = start_agent(&s, &token, "stopped", &endpoint, |_| {});
    eventually("the default service account", &log, || {
        s.kubectl(&["get", "serviceaccount", "default", "-o", "name"])
            .stdout()
            .contains("serviceaccount/default")
    });
    let names = ["kept-1", "kept-2"];
    for name in names {
        start_pod(&s, &log, &pod(name, "sleep 3600", "Always"));
    }
    let status =
        |name: &str| get(&s, &format!("pod/{name}"))["status"]["containerStatuses"][0].clone();
    let before: Vec<Value> = names.iter().map(|n| status(n)).collect();
    // SIGTERM, as a service manager stops it. (Its Drop, which removes every pod, must not
    // run.)
    let mut agent = std::mem::ManuallyDrop::new(agent);
    rudder_testkit::terminate(&mut agent.0, Duration::from_secs(30));
    let stopped = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(stopped.contains("shutting down"), "{stopped}");
    let running = || {
        CriView::at(&socket)
            .containers()
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .count()
    };
    assert_eq!(running(), names.len(), "{stopped}");
    let (_, again) = run_agent(&s, &token, "stopped", dir.path(), &endpoint);
    for (name, before) in names.iter().zip(&before) {
        eventually(&format!("{name} reachable"), &log, || {
            s.kubectl(&["exec", name, "--", "echo", "alive"]).stdout() == "alive\n"
        });
        let after = status(name);
        assert_eq!(after["containerID"], before["containerID"], "{name}");
        assert_eq!(after["restartCount"], 0, "{name}");
    }
    assert_eq!(running(), names.len());
    drop(again);
}

#[test]
fn an_agent_cut_off_from_the_server_stops_its_containers_until_it_is_back() {
    let (s, dir, log, _agent) = cluster("fenced");
    start_pod(&s, &log, &pod("guarded", "sleep 3600", "Always"));
    let view = CriView::of(dir.path());
    let running = |view: &CriView| {
        view.containers()
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .count()
    };
    assert_eq!(running(&view), 1);
    // The server stops answering (SIGSTOP): the Lease runs out, and the container stops.
    let pid = i32::try_from(s.pid()).unwrap();
    // SAFETY: kill(2) on the server process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&view) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = running(&view) == 0;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(stopped, "the container still runs with the lease expired");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("the node lease ran out"), "{said}");
    // Back in touch: the pod runs again (a restart, after the back-off).
    eventually("guarded running again", &log, || running(&view) == 1);
}
