//! The everyday kubectl commands against the built `rudder server`, asserting on what kubectl
//! prints: describe (with the events it finds through field selectors), create/apply/edit/
//! patch/label/annotate/delete from files, `get -w`, discovery and config commands, the
//! `kubectl create` generators, `apply -k`, output formats, server-side dry run, the `-o wide`
//! columns of upstream's printers, and a core subset on every kubectl 1.27–1.33.
//! Complements `kubectl.rs`. Each test starts its own server; no agent runs, so nodes, pod
//! status and events are written with kubectl as their components would write them.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rudder_testkit::{Kubectl, RudderServer, KUBECTL_DEFAULT_MINOR};
use serde_json::{json, Value};

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

/// A server that also runs its controllers (no agent, no scheduler): for what the namespace
/// controller and the garbage collector finish (a deleted namespace goes once emptied).
fn server_with_controllers() -> RudderServer {
    RudderServer::start(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &["--disable-agent", "--disable-scheduler"],
    )
    .expect("start rudder server")
}

/// Path of a fixture under `tests/data`.
fn data(rel: &str) -> String {
    manifest_dir()
        .join("tests/data")
        .join(rel)
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// A table as kubectl prints it: header names (which may hold single spaces, "LAST SEEN") and
/// each row's cells, cut at the header's column offsets so that empty cells stay in place.
#[derive(Debug)]
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    #[track_caller]
    fn parse(out: &str) -> Table {
        let mut lines = out.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().unwrap_or_else(|| panic!("no header:\n{out}"));
        let mut starts = Vec::new();
        let mut headers = Vec::new();
        let mut i = 0;
        while i < header.len() {
            if header.as_bytes()[i] == b' ' {
                i += 1;
                continue;
            }
            let end = header[i..].find("  ").map_or(header.len(), |e| i + e);
            starts.push(i);
            headers.push(header[i..end].to_string());
            i = end;
        }
        let rows = lines
            .map(|l| {
                (0..starts.len())
                    .map(|c| {
                        let from = starts[c].min(l.len());
                        let to = starts.get(c + 1).map_or(l.len(), |&e| e.min(l.len()));
                        l.get(from..to).unwrap_or("").trim().to_string()
                    })
                    .collect()
            })
            .collect();
        Table { headers, rows }
    }

    fn headers(&self) -> Vec<&str> {
        self.headers.iter().map(String::as_str).collect()
    }

    /// The cell in column `col` of the row whose first cell is `key`.
    #[track_caller]
    fn cell(&self, key: &str, col: &str) -> &str {
        let c = self
            .headers
            .iter()
            .position(|h| h == col)
            .unwrap_or_else(|| panic!("no column {col} in {:?}", self.headers));
        let row = self
            .rows
            .iter()
            .find(|r| r[0] == key)
            .unwrap_or_else(|| panic!("no row {key} in {self:?}"));
        &row[c]
    }

    fn column(&self, col: &str) -> Vec<&str> {
        let c = self.headers.iter().position(|h| h == col).unwrap();
        self.rows.iter().map(|r| r[c].as_str()).collect()
    }
}

/// The value of the first `Key:` line of `describe` output (at any indentation).
#[track_caller]
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}: in\n{out}"))
        .trim()
}

/// The `Events:` rows of `describe` output, each as its (Type, Reason, From, Message) with the
/// Age column (which depends on the clock) left out.
fn describe_events(out: &str) -> Vec<(String, String, String, String)> {
    let Some(section) = out.split("\nEvents:").nth(1) else {
        return Vec::new();
    };
    let mut lines = section.lines().skip(1);
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let col = |name: &str| header.find(name).expect("events header");
    let (age, from, message) = (col("Age"), col("From"), col("Message"));
    lines
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let head: Vec<&str> = l[..age].split_whitespace().collect();
            (
                head[0].to_string(),
                head[1].to_string(),
                l[from..message].trim().to_string(),
                l[message..].trim().to_string(),
            )
        })
        .collect()
}

fn ev(kind: &str, reason: &str, from: &str, message: &str) -> (String, String, String, String) {
    (
        kind.to_string(),
        reason.to_string(),
        from.to_string(),
        message.to_string(),
    )
}

/// A core/v1 Event about `object` (`{apiVersion, kind, name, namespace?, uid}`), as a
/// component would record it.
fn event(
    name: &str,
    object: Value,
    type_: &str,
    reason: &str,
    message: &str,
    source: Value,
) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": object,
        "type": type_,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:05:00Z",
        "count": 3,
    })
    .to_string()
}

fn uid_of(s: &RudderServer, args: &[&str]) -> String {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    let uid = s.kubectl(&a).ok();
    assert_eq!(uid.len(), 36, "a uid: {uid}");
    uid
}

/// Pod status as the node agent would report it for a running pod.
const POD_STATUS: &str = r#"{"status":{"phase":"Running","hostIP":"192.168.5.10","podIP":"10.42.0.5","podIPs":[{"ip":"10.42.0.5"}],"startTime":"2024-01-01T00:00:00Z","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2024-01-01T00:00:00Z"}],"containerStatuses":[{"name":"main","ready":true,"started":true,"restartCount":2,"image":"docker.io/library/nginx:1.27","imageID":"docker.io/library/nginx@sha256:0123","containerID":"containerd://abc123","state":{"running":{"startedAt":"2024-01-01T00:00:00Z"}},"lastState":{}}]}}"#;

/// The cluster of `tests/data/kubectl/cluster.yaml` plus the Deployment of
/// `deployment.yaml`, a running pod status and a ReplicaSet controlled by the Deployment (as
/// its controller would create it). Returns the ReplicaSet's name.
fn populate(s: &RudderServer) -> String {
    let out = s
        .kubectl(&["create", "-f", &data("kubectl/cluster.yaml")])
        .ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "node/node-1 created",
            "lease.coordination.k8s.io/node-1 created",
            "pod/web-0 created",
            "service/web created"
        ]
    );
    let out = s
        .kubectl(&["create", "-f", &data("kubectl/deployment.yaml")])
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web created");
    let out = s
        .kubectl(&[
            "patch",
            "pod",
            "web-0",
            "--subresource=status",
            "--type=merge",
            "-p",
            POD_STATUS,
        ])
        .ok();
    assert_eq!(out.trim(), "pod/web-0 patched");
    let dep = parse_json(&s.kubectl(&["get", "deploy", "web", "-o", "json"]).ok());
    let hash = "5d8f9c7b6";
    let mut template = dep["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let rs_name = format!("web-{hash}");
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name,
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": dep["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
            "template": template
        }
    });
    s.kubectl_stdin(&["create", "-f", "-"], &rs.to_string())
        .ok();
    rs_name
}

#[test]
fn describe_prints_upstreams_sections_and_finds_events() {
    let s = server();
    let rs_name = populate(&s);
    let pod_uid = uid_of(&s, &["pod", "web-0"]);
    let dep_uid = uid_of(&s, &["deploy", "web"]);
    let svc_uid = uid_of(&s, &["svc", "web"]);
    let events = [
        event(
            "web-0.1",
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web-0", "namespace": "default",
                   "uid": pod_uid, "fieldPath": "spec.containers{main}"}),
            "Warning",
            "BackOff",
            "Back-off restarting failed container main in pod web-0_default",
            json!({"component": "kubelet", "host": "node-1"}),
        ),
        // The same name and kind but another uid: an earlier pod's; describe must not show it.
        event(
            "web-0.0",
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web-0", "namespace": "default",
                   "uid": "00000000-0000-0000-0000-000000000000"}),
            "Normal",
            "Killing",
            "Stopping container main",
            json!({"component": "kubelet"}),
        ),
        event(
            "web.1",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                   "namespace": "default", "uid": dep_uid}),
            "Normal",
            "ScalingReplicaSet",
            &format!("Scaled up replica set {rs_name} from 0 to 2"),
            json!({"component": "deployment-controller"}),
        ),
        event(
            "web.2",
            json!({"apiVersion": "v1", "kind": "Service", "name": "web", "namespace": "default",
                   "uid": svc_uid}),
            "Warning",
            "FailedToUpdateEndpoint",
            "Failed to update endpoint default/web",
            json!({"component": "endpoint-controller"}),
        ),
        // The kubelet records node events with the node's name as the uid.
        event(
            "node-1.1",
            json!({"kind": "Node", "name": "node-1", "uid": "node-1"}),
            "Normal",
            "NodeReady",
            "Node node-1 status is now: NodeReady",
            json!({"component": "kubelet", "host": "node-1"}),
        ),
    ];
    for e in &events {
        s.kubectl_stdin(&["create", "-f", "-"], e).ok();
    }

    // The field selector describe uses for a pod's events.
    let selected = s
        .kubectl(&[
            "get",
            "events",
            "-o",
            "name",
            "--field-selector",
            &format!("involvedObject.uid={pod_uid},involvedObject.name=web-0,involvedObject.namespace=default,involvedObject.kind=Pod"),
        ])
        .ok();
    assert_eq!(selected.trim(), "event/web-0.1");
    let warnings = s
        .kubectl(&[
            "get",
            "events",
            "-o",
            "name",
            "--field-selector",
            "type=Warning,involvedObject.kind!=Service",
        ])
        .ok();
    assert_eq!(warnings.trim(), "event/web-0.1");

    // describe pod
    let out = s.kubectl(&["describe", "pod", "web-0"]).ok();
    assert_eq!(field(&out, "Name"), "web-0");
    assert_eq!(field(&out, "Namespace"), "default");
    assert_eq!(field(&out, "Service Account"), "default");
    assert_eq!(field(&out, "Node"), "node-1/192.168.5.10");
    assert_eq!(field(&out, "Labels"), "app=web");
    assert_eq!(field(&out, "Status"), "Running");
    assert_eq!(field(&out, "IP"), "10.42.0.5");
    assert_eq!(field(&out, "Container ID"), "containerd://abc123");
    assert_eq!(field(&out, "Image"), "nginx:1.27");
    assert_eq!(field(&out, "Port"), "80/TCP");
    assert_eq!(field(&out, "State"), "Running");
    assert_eq!(field(&out, "Ready"), "True");
    assert_eq!(field(&out, "Restart Count"), "2");
    assert!(
        out.contains("    Limits:\n      cpu:     200m\n      memory:  128Mi\n    Requests:\n      cpu:        100m\n      memory:     64Mi\n"),
        "{out}"
    );
    assert_eq!(field(&out, "QoS Class"), "Burstable");
    assert_eq!(
        field(&out, "Tolerations"),
        "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s"
    );
    assert_eq!(
        describe_events(&out),
        [ev(
            "Warning",
            "BackOff",
            "kubelet",
            "Back-off restarting failed container main in pod web-0_default"
        )]
    );

    // describe deployment
    let out = s.kubectl(&["describe", "deployment", "web"]).ok();
    assert_eq!(field(&out, "Selector"), "app=web");
    assert_eq!(
        field(&out, "Replicas"),
        "2 desired | 0 updated | 0 total | 0 available | 0 unavailable"
    );
    assert_eq!(field(&out, "StrategyType"), "RollingUpdate");
    assert_eq!(field(&out, "MinReadySeconds"), "0");
    assert_eq!(
        field(&out, "RollingUpdateStrategy"),
        "25% max unavailable, 25% max surge"
    );
    assert!(out.contains("Pod Template:\n  Labels:  app=web\n  Containers:\n   nginx:\n    Image:         nginx:1.27\n"), "{out}");
    assert_eq!(field(&out, "OldReplicaSets"), "<none>");
    assert_eq!(
        field(&out, "NewReplicaSet"),
        format!("{rs_name} (0/2 replicas created)")
    );
    assert_eq!(
        describe_events(&out),
        [ev(
            "Normal",
            "ScalingReplicaSet",
            "deployment-controller",
            &format!("Scaled up replica set {rs_name} from 0 to 2")
        )]
    );

    // describe replicaset: its controller and the pods it selects.
    let out = s.kubectl(&["describe", "rs", &rs_name]).ok();
    assert_eq!(field(&out, "Controlled By"), "Deployment/web");
    assert_eq!(field(&out, "Replicas"), "0 current / 2 desired");
    assert_eq!(
        field(&out, "Pods Status"),
        "0 Running / 0 Waiting / 0 Succeeded / 0 Failed"
    );

    // describe service
    let out = s.kubectl(&["describe", "service", "web"]).ok();
    let ip = s
        .kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    assert_eq!(field(&out, "Selector"), "app=web");
    assert_eq!(field(&out, "Type"), "ClusterIP");
    assert_eq!(field(&out, "IP Family Policy"), "SingleStack");
    assert_eq!(field(&out, "IP Families"), "IPv4");
    assert_eq!(field(&out, "IP"), ip);
    assert_eq!(field(&out, "IPs"), ip);
    assert_eq!(field(&out, "Port"), "http  80/TCP");
    assert_eq!(field(&out, "TargetPort"), "8080/TCP");
    assert_eq!(field(&out, "Session Affinity"), "None");
    assert_eq!(field(&out, "Internal Traffic Policy"), "Cluster");
    assert_eq!(
        describe_events(&out),
        [ev(
            "Warning",
            "FailedToUpdateEndpoint",
            "endpoint-controller",
            "Failed to update endpoint default/web"
        )]
    );

    // describe namespace: quotas and limit ranges.
    s.kubectl(&["create", "namespace", "team"]).ok();
    s.kubectl_stdin(
        &["create", "-n", "team", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: defaults}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 200m}\n    defaultRequest: {cpu: 100m}\n",
    )
    .ok();
    let out = s.kubectl(&["describe", "namespace", "team"]).ok();
    assert_eq!(field(&out, "Name"), "team");
    assert_eq!(field(&out, "Labels"), "kubernetes.io/metadata.name=team");
    assert_eq!(field(&out, "Status"), "Active");
    assert!(out.contains("\nNo resource quota.\n"), "{out}");
    let limits = out.split("Resource Limits\n").nth(1).expect("limits");
    let limits = Table::parse(limits);
    assert_eq!(
        limits.headers(),
        [
            "Type",
            "Resource",
            "Min",
            "Max",
            "Default Request",
            "Default Limit",
            "Max Limit/Request Ratio"
        ]
    );
    assert_eq!(
        limits.rows[1],
        ["Container", "cpu", "-", "-", "100m", "200m", "-"]
    );
    let out = s.kubectl(&["describe", "namespace", "default"]).ok();
    assert!(
        out.contains("No resource quota.\n\nNo LimitRange resource."),
        "{out}"
    );

    // describe node: conditions, addresses, capacity, system info, its pods, lease and events.
    let out = s.kubectl(&["describe", "node", "node-1"]).ok();
    assert_eq!(field(&out, "Roles"), "control-plane");
    // TaintNodesByCondition taints a new node until the node lifecycle controller (not yet
    // built) sees it ready.
    assert_eq!(
        field(&out, "Taints"),
        "node.kubernetes.io/not-ready:NoSchedule"
    );
    assert_eq!(field(&out, "Unschedulable"), "false");
    assert_eq!(field(&out, "HolderIdentity"), "node-1");
    let conditions = out
        .split("Conditions:\n")
        .nth(1)
        .and_then(|c| c.split("Addresses:").next())
        .expect("conditions");
    let conditions = Table::parse(conditions);
    assert_eq!(
        conditions.headers(),
        [
            "Type",
            "Status",
            "LastHeartbeatTime",
            "LastTransitionTime",
            "Reason",
            "Message"
        ]
    );
    assert_eq!(conditions.cell("Ready", "Status"), "True");
    assert_eq!(conditions.cell("Ready", "Reason"), "KubeletReady");
    assert_eq!(field(&out, "InternalIP"), "192.168.5.10");
    assert_eq!(field(&out, "Hostname"), "node-1");
    assert!(
        out.contains("Capacity:\n  cpu:     4\n  memory:  8Gi\n  pods:    110\n"),
        "{out}"
    );
    assert_eq!(field(&out, "Kernel Version"), "6.1.0-18-amd64");
    assert_eq!(field(&out, "OS Image"), "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(
        field(&out, "Container Runtime Version"),
        "containerd://1.7.24"
    );
    assert_eq!(field(&out, "Kubelet Version"), "v1.33.0");
    assert_eq!(field(&out, "PodCIDR"), "10.42.0.0/24");
    assert_eq!(field(&out, "Non-terminated Pods"), "(1 in total)");
    let pods = out
        .split("Non-terminated Pods:")
        .nth(1)
        .and_then(|p| p.split_once('\n'))
        .and_then(|(_, rest)| rest.split("Allocated resources:").next())
        .expect("pods");
    let pods = Table::parse(pods);
    assert_eq!(
        pods.headers(),
        [
            "Namespace",
            "Name",
            "CPU Requests",
            "CPU Limits",
            "Memory Requests",
            "Memory Limits",
            "Age"
        ]
    );
    assert_eq!(
        pods.rows[1][..6],
        [
            "default",
            "web-0",
            "100m (2%)",
            "200m (5%)",
            "64Mi (0%)",
            "128Mi (1%)"
        ]
    );
    assert_eq!(
        describe_events(&out),
        [ev(
            "Normal",
            "NodeReady",
            "kubelet",
            "Node node-1 status is now: NodeReady"
        )]
    );
}

#[test]
fn wide_tables_have_upstreams_columns() {
    let s = server();
    let rs_name = populate(&s);
    s.kubectl(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=password=x",
    ])
    .ok();
    s.kubectl_stdin(
        &["create", "-f", "-"],
        &event(
            "web-0.1",
            json!({"apiVersion": "v1", "kind": "Pod", "name": "web-0", "namespace": "default",
                   "fieldPath": "spec.containers{main}"}),
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
            json!({"component": "kubelet", "host": "node-1"}),
        ),
    )
    .ok();
    let get = |args: &[&str]| {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        Table::parse(&s.kubectl(&a).ok())
    };

    let t = get(&["pods"]);
    assert_eq!(t.headers(), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let t = get(&["pods", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let row = &t.rows[0];
    assert_eq!(row[..4], ["web-0", "1/1", "Running", "2"]);
    assert_eq!(row[5..], ["10.42.0.5", "node-1", "<none>", "<none>"]);

    let t = get(&["deploy"]);
    assert_eq!(
        t.headers(),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let t = get(&["deploy", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(t.rows[0][..4], ["web", "0/2", "0", "0"]);
    assert_eq!(t.rows[0][5..], ["nginx", "nginx:1.27", "app=web"]);

    let t = get(&["rs"]);
    assert_eq!(t.headers(), ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let t = get(&["rs", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(t.rows[0][..4], [rs_name.as_str(), "2", "0", "0"]);
    let selector = format!("app=web,pod-template-hash={}", &rs_name[4..]);
    assert_eq!(t.rows[0][5..], ["nginx", "nginx:1.27", selector.as_str()]);

    let t = get(&["svc"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let t = get(&["svc", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    assert_eq!(t.cell("kubernetes", "SELECTOR"), "<none>");
    assert_eq!(t.cell("web", "SELECTOR"), "app=web");
    assert_eq!(t.cell("web", "PORT(S)"), "80/TCP");
    assert_eq!(t.cell("web", "EXTERNAL-IP"), "<none>");

    let t = get(&["nodes"]);
    assert_eq!(t.headers(), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let t = get(&["nodes", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    assert_eq!(t.rows[0][..3], ["node-1", "Ready", "control-plane"]);
    assert_eq!(
        t.rows[0][4..],
        [
            "v1.33.0",
            "192.168.5.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "containerd://1.7.24"
        ]
    );
    // A cordoned node.
    assert_eq!(
        s.kubectl(&["cordon", "node-1"]).ok().trim(),
        "node/node-1 cordoned"
    );
    assert_eq!(
        get(&["nodes"]).cell("node-1", "STATUS"),
        "Ready,SchedulingDisabled"
    );

    for args in [&["ns"][..], &["ns", "-o", "wide"]] {
        let t = get(args);
        assert_eq!(t.headers(), ["NAME", "STATUS", "AGE"]);
        assert_eq!(t.cell("kube-system", "STATUS"), "Active");
    }
    for args in [&["cm"][..], &["cm", "-o", "wide"]] {
        let t = get(args);
        assert_eq!(t.headers(), ["NAME", "DATA", "AGE"]);
        assert_eq!(t.cell("settings", "DATA"), "2");
    }
    for args in [&["secrets"][..], &["secrets", "-o", "wide"]] {
        let t = get(args);
        assert_eq!(t.headers(), ["NAME", "TYPE", "DATA", "AGE"]);
        assert_eq!(t.cell("pw", "TYPE"), "Opaque");
        assert_eq!(t.cell("pw", "DATA"), "1");
    }

    let t = get(&["events"]);
    assert_eq!(
        t.headers(),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert_eq!(
        t.rows[0][1..],
        [
            "Warning",
            "BackOff",
            "pod/web-0",
            "Back-off restarting failed container"
        ]
    );
    let t = get(&["events", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ]
    );
    let row = &t.rows[0];
    assert_eq!(
        row[1..7],
        [
            "Warning",
            "BackOff",
            "pod/web-0",
            "spec.containers{main}",
            "kubelet, node-1",
            "Back-off restarting failed container"
        ]
    );
    assert_eq!(row[8..], ["3", "web-0.1"]);
    // All namespaces: NAMESPACE first.
    let t = get(&["events", "-A"]);
    assert_eq!(
        t.headers(),
        [
            "NAMESPACE",
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "MESSAGE"
        ]
    );

    // Jobs (created with `kubectl create job`; no controller runs them).
    s.kubectl(&[
        "create",
        "job",
        "once",
        "--image=busybox:1.36",
        "--",
        "true",
    ])
    .ok();
    let t = get(&["jobs", "-o", "wide"]);
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(t.rows[0][..4], ["once", "Running", "0/1", ""]);
    assert_eq!(t.rows[0][5..7], ["once", "busybox:1.36"]);
    assert!(
        t.rows[0][7].starts_with("batch.kubernetes.io/controller-uid="),
        "{t:?}"
    );
}

#[test]
fn create_apply_edit_delete_from_files() {
    let s = server();
    let cm = data("kubectl/configmap.yaml");
    let deploy = data("kubectl/deployment.yaml");

    // create -f, and again: AlreadyExists.
    assert_eq!(
        s.kubectl(&["create", "-f", &cm]).ok().trim(),
        "configmap/app-config created"
    );
    let err = s.kubectl(&["create", "-f", &cm]).fails();
    assert!(
        err.contains(r#"Error from server (AlreadyExists): error when creating"#)
            && err.contains(r#"configmaps "app-config" already exists"#),
        "{err}"
    );

    // apply -f: create, no-op (nothing written), update.
    assert_eq!(
        s.kubectl(&["apply", "-f", &deploy]).ok().trim(),
        "deployment.apps/web created"
    );
    let rv = |s: &RudderServer| {
        s.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.metadata.generation}",
        ])
        .ok()
    };
    let before = rv(&s);
    assert_eq!(
        s.kubectl(&["apply", "-f", &deploy]).ok().trim(),
        "deployment.apps/web unchanged"
    );
    assert_eq!(rv(&s), before, "an unchanged apply writes nothing");
    let changed = std::fs::read_to_string(&deploy)
        .unwrap()
        .replace("replicas: 2", "replicas: 3")
        .replace("image: nginx:1.27", "image: nginx:1.28");
    let changed_path = s.data_dir().join("deployment-changed.yaml");
    std::fs::write(&changed_path, &changed).unwrap();
    let changed_path = changed_path.to_str().unwrap();
    assert_eq!(
        s.kubectl(&["apply", "-f", changed_path]).ok().trim(),
        "deployment.apps/web configured"
    );
    let got = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.generation}",
        ])
        .ok();
    assert_eq!(got, "3 nginx:1.28 2");
    let last = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            r#"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#,
        ])
        .ok();
    let last = parse_json(&last);
    assert_eq!(last["spec"]["replicas"], 3);
    // apply over an object made by `create` (no last-applied annotation yet): a warning, then
    // the annotation is added.
    let cm_changed = std::fs::read_to_string(&cm)
        .unwrap()
        .replace("LOG_LEVEL: info", "LOG_LEVEL: debug");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &cm_changed);
    assert_eq!(out.ok().trim(), "configmap/app-config configured");
    assert!(
        out.stderr()
            .contains("is missing the kubectl.kubernetes.io/last-applied-configuration annotation"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        s.kubectl_stdin(&["apply", "-f", "-"], &cm_changed)
            .ok()
            .trim(),
        "configmap/app-config unchanged"
    );

    // edit: KUBE_EDITOR is a script that edits the file kubectl hands it.
    let editor = s.data_dir().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i -e 's/replicas: 3/replicas: 4/' -e 's/LOG_LEVEL: debug/LOG_LEVEL: warn/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edit = |args: &[&str], editor: &Path| -> Kubectl {
        let out = s
            .kubectl_cmd(KUBECTL_DEFAULT_MINOR)
            .env("KUBE_EDITOR", editor)
            .args(args)
            .output()
            .unwrap();
        Kubectl {
            args: args.join(" "),
            out,
        }
    };
    assert_eq!(
        edit(&["edit", "deploy", "web"], &editor).ok().trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(
        s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .ok(),
        "4"
    );
    assert_eq!(
        edit(&["edit", "cm", "app-config"], &editor).ok().trim(),
        "configmap/app-config edited"
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "cm",
            "app-config",
            "-o",
            "jsonpath={.data.LOG_LEVEL}"
        ])
        .ok(),
        "warn"
    );
    // An editor that changes nothing: the edit is cancelled.
    let out = edit(&["edit", "cm", "app-config"], Path::new("/bin/true"));
    out.ok();
    assert!(
        out.stderr().contains("Edit cancelled, no changes made."),
        "{}",
        out.stderr()
    );
    // An edit the server refuses: kubectl reports it and keeps a copy.
    let bad = s.data_dir().join("bad-editor.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\nsed -i -e 's/replicas: 4/replicas: -1/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = edit(&["edit", "deploy", "web"], &bad).fails();
    assert!(
        err.contains(r#"deployments.apps "web" is invalid"#)
            && err.contains("A copy of your changes has been stored"),
        "{err}"
    );
    assert_eq!(
        s.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .ok(),
        "4"
    );

    // delete -f: every object in the file; then NotFound.
    let both = s.data_dir().join("both.yaml");
    std::fs::write(
        &both,
        format!(
            "{}---\n{}",
            std::fs::read_to_string(&cm).unwrap(),
            std::fs::read_to_string(&deploy).unwrap()
        ),
    )
    .unwrap();
    let out = s.kubectl(&["delete", "-f", both.to_str().unwrap()]).ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"configmap "app-config" deleted"#,
            r#"deployment.apps "web" deleted"#
        ]
    );
    let err = s.kubectl(&["delete", "-f", both.to_str().unwrap()]).fails();
    assert!(
        err.contains(r#"Error from server (NotFound): error when deleting"#)
            && err.contains(r#"configmaps "app-config" not found"#),
        "{err}"
    );
    assert_eq!(
        s.kubectl(&["delete", "-f", both.to_str().unwrap(), "--ignore-not-found"])
            .ok()
            .trim(),
        ""
    );
    // create -f DIR takes every manifest in it.
    let dir = s.data_dir().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&cm, dir.join("a-configmap.yaml")).unwrap();
    std::fs::copy(&deploy, dir.join("b-deployment.yaml")).unwrap();
    let out = s.kubectl(&["create", "-f", dir.to_str().unwrap()]).ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "configmap/app-config created",
            "deployment.apps/web created"
        ]
    );
    assert_eq!(
        s.kubectl(&["get", "cm,deploy", "-o", "name"])
            .ok()
            .lines()
            .collect::<Vec<_>>(),
        ["configmap/app-config", "deployment.apps/web"]
    );
}

#[test]
fn patch_label_and_annotate_a_deployment() {
    let s = server();
    s.kubectl(&["apply", "-f", &data("kubectl/deployment.yaml")])
        .ok();
    let get = |path: &str| {
        s.kubectl(&["get", "deploy", "web", "-o", &format!("jsonpath={path}")])
            .ok()
    };
    // Strategic merge: containers merge by name, `$patch: delete` removes one.
    let out = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1.36"},{"name":"nginx","env":[{"name":"A","value":"1"}]}]}}}}"#,
        ])
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web patched");
    assert_eq!(
        get("{.spec.template.spec.containers[*].name} {.spec.template.spec.containers[?(@.name==\"nginx\")].image} {.spec.template.spec.containers[?(@.name==\"nginx\")].env[0].value}"),
        "nginx side nginx:1.27 1"
    );
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}}}"#,
    ])
    .ok();
    assert_eq!(get("{.spec.template.spec.containers[*].name}"), "nginx");
    // Merge patch: replaces lists whole, null deletes.
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":5,"template":{"metadata":{"annotations":{"team":"shop"}}}}}"#,
    ])
    .ok();
    assert_eq!(
        get("{.spec.replicas} {.spec.template.metadata.annotations.team}"),
        "5 shop"
    );
    // The same patch again changes nothing.
    let out = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ])
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");
    // JSON patch: add, test, remove, replace in order.
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":5},{"op":"replace","path":"/spec/replicas","value":1},{"op":"add","path":"/metadata/labels/tier","value":"front"},{"op":"remove","path":"/spec/template/metadata/annotations"}]"#,
    ])
    .ok();
    assert_eq!(
        get("{.spec.replicas} {.metadata.labels.tier} {.spec.template.metadata}"),
        r#"1 front {"creationTimestamp":null,"labels":{"app":"web"}}"#
    );
    // A failed test op refuses the whole patch.
    let err = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":9},{"op":"test","path":"/spec/replicas","value":5}]"#,
        ])
        .fails();
    assert!(err.contains("/spec/replicas"), "{err}");
    assert_eq!(get("{.spec.replicas}"), "1");

    // label: add, refuse to overwrite without --overwrite, overwrite, remove, remove missing.
    let label = |args: &[&str]| {
        let mut a = vec!["label", "deploy", "web"];
        a.extend_from_slice(args);
        s.kubectl(&a)
    };
    assert_eq!(
        label(&["env=prod"]).ok().trim(),
        "deployment.apps/web labeled"
    );
    let err = label(&["env=dev"]).fails();
    assert!(
        err.contains("error: 'env' already has a value (prod), and --overwrite is false"),
        "{err}"
    );
    assert_eq!(
        label(&["env=dev", "--overwrite"]).ok().trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(get("{.metadata.labels.env}"), "dev");
    assert_eq!(
        label(&["env-", "tier-"]).ok().trim(),
        "deployment.apps/web unlabeled"
    );
    assert_eq!(get("{.metadata.labels}"), r#"{"app":"web"}"#);
    assert_eq!(
        label(&["nope-"]).ok().lines().collect::<Vec<_>>(),
        [
            r#"label "nope" not found."#,
            "deployment.apps/web not labeled"
        ]
    );
    // Selecting by the labels set.
    label(&["env=prod"]).ok();
    assert_eq!(
        s.kubectl(&["get", "deploy", "-l", "env=prod,app=web", "-o", "name"])
            .ok()
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        s.kubectl(&["get", "deploy", "-l", "env notin (prod)", "-o", "name"])
            .ok()
            .trim(),
        ""
    );
    // label --all over a kind.
    s.kubectl(&["create", "configmap", "one"]).ok();
    s.kubectl(&["create", "configmap", "two"]).ok();
    let out = s.kubectl(&["label", "cm", "--all", "batch=x"]).ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["configmap/one labeled", "configmap/two labeled"]
    );

    // annotate: the same rules.
    let annotate = |args: &[&str]| {
        let mut a = vec!["annotate", "deploy", "web"];
        a.extend_from_slice(args);
        s.kubectl(&a)
    };
    assert_eq!(
        annotate(&["owner=alice", "ticket=42"]).ok().trim(),
        "deployment.apps/web annotated"
    );
    let err = annotate(&["owner=bob"]).fails();
    assert!(
        err.contains("--overwrite is false but found the following declared annotation(s): 'owner' already has a value (alice)"),
        "{err}"
    );
    annotate(&["owner=bob", "--overwrite"]).ok();
    annotate(&["ticket-"]).ok();
    let ann = parse_json(&get("{.metadata.annotations}"));
    assert_eq!(ann["owner"], "bob");
    assert!(ann.get("ticket").is_none(), "{ann}");
}

/// A background `kubectl get -w` and the lines it prints.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(s: &RudderServer, args: &[&str]) -> Watch {
        let mut child = s
            .kubectl_cmd(KUBECTL_DEFAULT_MINOR)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl get -w");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (generously) until `n` lines have been printed; returns them all.
    #[track_caller]
    fn lines(&mut self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "{} of {n} lines after 30 s: {:?}",
                    self.seen.len(),
                    self.seen
                ),
            }
        }
        self.seen.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (NAME, DATA) of each row of a watched configmap table; the AGE column is left out.
fn name_data(lines: &[String], with_event: bool) -> Vec<Vec<String>> {
    lines
        .iter()
        .skip(1)
        .map(|l| {
            let w: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            if with_event {
                w[..3].to_vec()
            } else {
                w[..2].to_vec()
            }
        })
        .collect()
}

#[test]
fn get_watch_prints_each_change() {
    let s = server();
    s.kubectl(&["create", "configmap", "first", "--from-literal=a=1"])
        .ok();
    let mut w = Watch::start(&s, &["get", "cm", "-w"]);
    let head = w.lines(2);
    assert_eq!(
        head[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "DATA", "AGE"]
    );
    s.kubectl(&["create", "configmap", "second", "--from-literal=a=1"])
        .ok();
    w.lines(3);
    s.kubectl(&[
        "patch",
        "cm",
        "second",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ])
    .ok();
    w.lines(4);
    s.kubectl(&["delete", "cm", "second"]).ok();
    let lines = w.lines(5);
    assert_eq!(
        name_data(&lines, false),
        [
            ["first", "1"],
            ["second", "1"],
            ["second", "2"],
            ["second", "2"]
        ],
        "{lines:?}"
    );
    drop(w);

    // --output-watch-events names each change (the initial list as ADDED).
    let mut w = Watch::start(&s, &["get", "cm", "-w", "--output-watch-events"]);
    w.lines(2);
    s.kubectl(&["create", "configmap", "third", "--from-literal=a=1"])
        .ok();
    w.lines(3);
    s.kubectl(&["label", "cm", "third", "x=y"]).ok();
    w.lines(4);
    s.kubectl(&["delete", "cm", "third"]).ok();
    let lines = w.lines(5);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["EVENT", "NAME", "DATA", "AGE"]
    );
    assert_eq!(
        name_data(&lines, true),
        [
            ["ADDED", "first", "1"],
            ["ADDED", "third", "1"],
            ["MODIFIED", "third", "1"],
            ["DELETED", "third", "1"]
        ],
        "{lines:?}"
    );
}

#[test]
fn discovery_cluster_info_and_config() {
    let s = server();
    // api-resources: upstream's columns and rows.
    let t = Table::parse(&s.kubectl(&["api-resources"]).ok());
    assert_eq!(
        t.headers(),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for (name, short, gv, namespaced, kind) in [
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("services", "svc", "v1", "true", "Service"),
        ("secrets", "", "v1", "true", "Secret"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("jobs", "", "batch/v1", "true", "Job"),
        ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
        (
            "clusterroles",
            "",
            "rbac.authorization.k8s.io/v1",
            "false",
            "ClusterRole",
        ),
    ] {
        let row = t
            .rows
            .iter()
            .find(|r| r[0] == name && r[2] == gv)
            .unwrap_or_else(|| panic!("{name} in {t:?}"));
        assert_eq!(row[1..], [short, gv, namespaced, kind], "{name}");
    }
    let t = Table::parse(&s.kubectl(&["api-resources", "-o", "wide"]).ok());
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "SHORTNAMES",
            "APIVERSION",
            "NAMESPACED",
            "KIND",
            "VERBS",
            "CATEGORIES"
        ]
    );
    assert_eq!(
        t.cell("pods", "VERBS"),
        "create,delete,deletecollection,get,list,patch,update,watch"
    );
    assert_eq!(t.cell("pods", "CATEGORIES"), "all");
    assert_eq!(
        t.cell("namespaces", "VERBS"),
        "create,delete,get,list,patch,update,watch"
    );
    assert_eq!(t.cell("configmaps", "CATEGORIES"), "");
    assert_eq!(t.cell("deployments", "CATEGORIES"), "all");
    let apps = s
        .kubectl(&["api-resources", "--api-group=apps", "-o", "name"])
        .ok();
    assert_eq!(
        apps.lines().collect::<Vec<_>>(),
        [
            "controllerrevisions.apps",
            "daemonsets.apps",
            "deployments.apps",
            "replicasets.apps",
            "statefulsets.apps"
        ]
    );
    let cluster = s
        .kubectl(&["api-resources", "--namespaced=false", "--no-headers"])
        .ok();
    assert!(cluster.lines().all(|l| l.contains(" false ")), "{cluster}");
    assert!(
        cluster.lines().any(|l| l.starts_with("nodes ")),
        "{cluster}"
    );
    let verbs = s
        .kubectl(&[
            "api-resources",
            "--verbs=list",
            "--api-group=batch",
            "-o",
            "name",
        ])
        .ok();
    assert_eq!(
        verbs.lines().collect::<Vec<_>>(),
        ["cronjobs.batch", "jobs.batch"]
    );

    // api-versions: sorted, one group/version a line.
    let versions = s.kubectl(&["api-versions"]).ok();
    let lines: Vec<&str> = versions.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    for gv in [
        "apps/v1",
        "authentication.k8s.io/v1",
        "authorization.k8s.io/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "batch/v1",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "events.k8s.io/v1",
        "networking.k8s.io/v1",
        "policy/v1",
        "rbac.authorization.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1",
        "v1",
    ] {
        assert!(lines.contains(&gv), "{gv} in {versions}");
    }

    // cluster-info: the control plane, then services labelled kubernetes.io/cluster-service:
    // the cluster DNS's, which the server makes, named by kubernetes.io/name when it has one.
    let info = s.kubectl(&["cluster-info"]).ok();
    let dns_proxy = format!(
        "{}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy",
        s.url
    );
    assert_eq!(
        info.lines().collect::<Vec<_>>(),
        [
            format!("Kubernetes control plane is running at {}", s.url).as_str(),
            format!("kube-dns is running at {dns_proxy}").as_str(),
            "",
            "To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'."
        ]
    );
    let dns = s
        .kubectl(&[
            "get",
            "service",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[*].protocol}",
        ])
        .ok();
    assert_eq!(dns, "10.43.0.10 UDP TCP");
    s.kubectl(&[
        "label",
        "service",
        "-n",
        "kube-system",
        "kube-dns",
        "kubernetes.io/name=CoreDNS",
    ])
    .ok();
    let info = s.kubectl(&["cluster-info"]).ok();
    assert_eq!(
        info.lines().nth(1).unwrap(),
        format!("CoreDNS is running at {dns_proxy}")
    );

    // config view: the admin kubeconfig the server wrote, secrets redacted.
    let cfg = s.kubectl(&["config", "view"]).ok();
    assert!(cfg.contains(&format!("    server: {}\n", s.url)), "{cfg}");
    assert!(
        cfg.contains("certificate-authority-data: DATA+OMITTED")
            && cfg.contains("client-certificate-data: DATA+OMITTED")
            && cfg.contains("client-key-data: DATA+OMITTED"),
        "{cfg}"
    );
    let ctx = s.kubectl(&["config", "current-context"]).ok();
    let minify = s
        .kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.contexts[0].name} {.clusters[0].cluster.server}",
        ])
        .ok();
    assert_eq!(minify, format!("{} {}", ctx.trim(), s.url));
    let raw = s
        .kubectl(&[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.users[0].user.client-certificate-data}",
        ])
        .ok();
    assert!(raw.len() > 100 && !raw.contains("OMITTED"), "{raw}");
    // The kubeconfig works as-is: version and a request with it.
    let v = s.kubectl(&["version", "-o", "json"]).ok();
    let v = parse_json(&v);
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
    assert!(
        v["serverVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|g| g.starts_with("v1.33.0")),
        "{v}"
    );
}

#[test]
fn create_generators() {
    let s = server();
    let k = |args: &[&str]| s.kubectl(args).ok().trim().to_string();
    assert_eq!(k(&["create", "namespace", "gen"]), "namespace/gen created");
    let n = ["-n", "gen"];
    // The namespace flag goes first: what follows `--` is the container's command.
    let kn = |args: &[&str]| {
        let mut a = n.to_vec();
        a.extend_from_slice(args);
        k(&a)
    };

    assert_eq!(
        kn(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=3",
            "--port=80"
        ]),
        "deployment.apps/web created"
    );
    assert_eq!(
        kn(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].name} {.spec.template.spec.containers[0].ports[0].containerPort}"
        ]),
        "3 web nginx 80"
    );
    // Several images: one container each, named after the image.
    assert_eq!(
        kn(&[
            "create",
            "deployment",
            "multi",
            "--image=nginx:1.27",
            "--image=busybox:1.36"
        ]),
        "deployment.apps/multi created"
    );
    assert_eq!(
        kn(&[
            "get",
            "deploy",
            "multi",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}"
        ]),
        "nginx busybox"
    );

    let env_file = s.data_dir().join("app.env");
    std::fs::write(&env_file, "# comment\nMODE=prod\nLEVEL=3\n").unwrap();
    let file = s.data_dir().join("nginx.conf");
    std::fs::write(&file, "server { listen 80; }\n").unwrap();
    assert_eq!(
        kn(&[
            "create",
            "configmap",
            "from-env",
            &format!("--from-env-file={}", env_file.display())
        ]),
        "configmap/from-env created"
    );
    assert_eq!(
        kn(&["get", "cm", "from-env", "-o", "jsonpath={.data}"]),
        r#"{"LEVEL":"3","MODE":"prod"}"#
    );
    assert_eq!(
        kn(&[
            "create",
            "configmap",
            "from-file",
            &format!("--from-file={}", file.display()),
            "--from-literal=extra=yes"
        ]),
        "configmap/from-file created"
    );
    assert_eq!(
        kn(&[
            "get",
            "cm",
            "from-file",
            "-o",
            r#"jsonpath={.data.nginx\.conf}|{.data.extra}"#
        ]),
        "server { listen 80; }\n|yes"
    );

    assert_eq!(
        kn(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            &format!("--from-file=conf={}", file.display()),
            "--type=example.com/creds"
        ]),
        "secret/creds created"
    );
    let secret = parse_json(&kn(&["get", "secret", "creds", "-o", "json"]));
    assert_eq!(secret["type"], "example.com/creds");
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
    assert_eq!(secret["data"]["conf"], "c2VydmVyIHsgbGlzdGVuIDgwOyB9Cg==");
    let t = Table::parse(&kn(&["get", "secret", "creds"]));
    assert_eq!(t.rows[0][..3], ["creds", "example.com/creds", "2"]);

    assert_eq!(
        kn(&[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
            "--tcp=443:8443"
        ]),
        "service/web created"
    );
    let t = Table::parse(&kn(&["get", "svc", "web", "-o", "wide"]));
    assert_eq!(t.cell("web", "TYPE"), "ClusterIP");
    assert_eq!(t.cell("web", "PORT(S)"), "80/TCP,443/TCP");
    assert_eq!(t.cell("web", "SELECTOR"), "app=web");
    assert_eq!(
        kn(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[*].name} {.spec.ports[*].targetPort}"
        ]),
        "80-8080 443-8443 8080 8443"
    );
    assert_eq!(
        kn(&[
            "create",
            "service",
            "clusterip",
            "headless",
            "--clusterip=None"
        ]),
        "service/headless created"
    );
    assert_eq!(
        Table::parse(&kn(&["get", "svc", "headless"])).cell("headless", "CLUSTER-IP"),
        "None"
    );

    assert_eq!(
        kn(&[
            "create",
            "job",
            "hello",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi"
        ]),
        "job.batch/hello created"
    );
    assert_eq!(
        kn(&[
            "get",
            "job",
            "hello",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command} {.spec.template.spec.restartPolicy} {.spec.completions} {.spec.backoffLimit}"
        ]),
        r#"["echo","hi"] Never 1 6"#
    );
    // The job's pod template carries the selector the server generated.
    let job = parse_json(&kn(&["get", "job", "hello", "-o", "json"]));
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "hello"
    );
    // A job from a cron job's template.
    assert_eq!(
        kn(&[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox:1.36",
            "--schedule=0 3 * * *",
            "--",
            "date"
        ]),
        "cronjob.batch/nightly created"
    );
    assert_eq!(
        kn(&["create", "job", "manual", "--from=cronjob/nightly"]),
        "job.batch/manual created"
    );
    assert_eq!(
        kn(&[
            "get",
            "job",
            "manual",
            "-o",
            "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate} {.metadata.ownerReferences[0].kind} {.spec.template.spec.containers[0].command}"
        ]),
        r#"manual CronJob ["date"]"#
    );
    let t = Table::parse(&kn(&["get", "cronjob"]));
    assert_eq!(
        t.headers(),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    assert_eq!(
        t.rows[0][..6],
        ["nightly", "0 3 * * *", "<none>", "False", "0", "<none>"]
    );

    // Everything lands in the namespace asked for.
    let all = kn(&["get", "deploy,cm,secret,svc,job,cronjob", "-o", "name"]);
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        [
            "deployment.apps/multi",
            "deployment.apps/web",
            "configmap/from-env",
            "configmap/from-file",
            "secret/creds",
            "service/headless",
            "service/web",
            "job.batch/hello",
            "job.batch/manual",
            "cronjob.batch/nightly"
        ]
    );
    assert_eq!(k(&["get", "deploy,cm,job", "-o", "name"]), "");
}

#[test]
fn apply_kustomization_directory() {
    let s = server_with_controllers();
    // A copy, so that the test can change it.
    let dir = s.data_dir().join("shop");
    std::fs::create_dir(&dir).unwrap();
    for f in ["kustomization.yaml", "namespace.yaml", "deployment.yaml"] {
        std::fs::copy(data(&format!("kustomize/shop/{f}")), dir.join(f)).unwrap();
    }
    let dir_s = dir.to_str().unwrap();
    let out = s.kubectl(&["apply", "-k", dir_s]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "namespace/shop created");
    let cm_name = lines[1]
        .strip_prefix("configmap/")
        .and_then(|l| l.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    assert!(
        cm_name.starts_with("shop-config-") && cm_name.len() == "shop-config-".len() + 10,
        "a content hash suffix: {cm_name}"
    );
    assert_eq!(lines[2], "deployment.apps/shop created");
    let cm = parse_json(
        &s.kubectl(&["get", "cm", &cm_name, "-n", "shop", "-o", "json"])
            .ok(),
    );
    assert_eq!(cm["data"], json!({"COLOR": "blue", "GREETING": "hello"}));
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "shop"
    );
    let refd = s
        .kubectl(&[
            "get",
            "deploy",
            "shop",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].envFrom[0].configMapRef.name} {.metadata.labels}",
        ])
        .ok();
    assert_eq!(
        refd,
        format!(r#"{cm_name} {{"app.kubernetes.io/part-of":"shop"}}"#)
    );
    // Again: nothing changes.
    let out = s.kubectl(&["apply", "-k", dir_s]).ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "namespace/shop unchanged",
            format!("configmap/{cm_name} unchanged").as_str(),
            "deployment.apps/shop unchanged"
        ]
    );
    // A changed literal: a new configmap name, and the deployment follows it.
    let k = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(&k, text.replace("COLOR=blue", "COLOR=green")).unwrap();
    let out = s.kubectl(&["apply", "-k", dir_s]).ok();
    let lines: Vec<&str> = out.lines().collect();
    let new_cm = lines[1]
        .strip_prefix("configmap/")
        .and_then(|l| l.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(new_cm, cm_name);
    assert_eq!(lines[2], "deployment.apps/shop configured");
    assert_eq!(
        s.kubectl(&[
            "get",
            "deploy",
            "shop",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].envFrom[0].configMapRef.name}",
        ])
        .ok(),
        new_cm
    );
    // kubectl kustomize renders the same thing locally.
    let rendered = s.kubectl(&["kustomize", dir_s]).ok();
    assert!(rendered.contains(&format!("name: {new_cm}")), "{rendered}");
    // delete -k removes what the kustomization names. The namespace comes first and takes its
    // contents with it, so what follows may be gone already.
    let out = s
        .kubectl(&["delete", "-k", dir_s, "--ignore-not-found", "--timeout=60s"])
        .ok();
    assert_eq!(
        out.lines().next(),
        Some(r#"namespace "shop" deleted"#),
        "{out}"
    );
    let err = s.kubectl(&["get", "ns", "shop"]).fails();
    assert!(err.contains(r#"namespaces "shop" not found"#), "{err}");
    assert_eq!(
        s.kubectl(&["get", "deploy,cm", "-n", "shop", "-o", "name"])
            .ok(),
        ""
    );
}

#[test]
fn output_formats() {
    let s = server();
    populate(&s);
    // -o json of a list: a v1 List.
    let list = parse_json(&s.kubectl(&["get", "pods", "-o", "json"]).ok());
    assert_eq!(list["kind"], "List");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"][0]["metadata"]["name"], "web-0");
    assert_eq!(list["items"][0]["kind"], "Pod");
    let one = parse_json(&s.kubectl(&["get", "pod", "web-0", "-o", "json"]).ok());
    assert_eq!(one["status"]["podIP"], "10.42.0.5");
    assert_eq!(one["spec"]["containers"][0]["image"], "nginx:1.27");
    // -o yaml
    let yaml = s.kubectl(&["get", "svc", "web", "-o", "yaml"]).ok();
    assert!(
        yaml.starts_with("apiVersion: v1\nkind: Service\nmetadata:\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n"),
        "{yaml}"
    );
    let yaml = s.kubectl(&["get", "ns", "-o", "yaml"]).ok();
    assert!(yaml.starts_with("apiVersion: v1\nitems:\n"), "{yaml}");
    assert!(
        yaml.ends_with("kind: List\nmetadata:\n  resourceVersion: \"\"\n"),
        "{yaml}"
    );
    // -o name, over several kinds.
    let names = s
        .kubectl(&["get", "pods,svc,deploy,nodes", "-o", "name"])
        .ok();
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "pod/web-0",
            "service/kubernetes",
            "service/web",
            "deployment.apps/web",
            "node/node-1"
        ]
    );
    // -o jsonpath with range and filters.
    let out = s
        .kubectl(&[
            "get",
            "pods,nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\n"}{end}"#,
        ])
        .ok();
    assert_eq!(out, "Pod/web-0\nNode/node-1\n");
    let out = s
        .kubectl(&[
            "get",
            "node",
            "node-1",
            "-o",
            r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address} {.status.conditions[?(@.type=="Ready")].status}"#,
        ])
        .ok();
    assert_eq!(out, "192.168.5.10 True");
    // -o custom-columns, and from a file.
    let out = s
        .kubectl(&[
            "get",
            "pods",
            "-o",
            "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,IMAGES:.spec.containers[*].image,MISSING:.metadata.nothing",
        ])
        .ok();
    let t = Table::parse(&out);
    assert_eq!(t.headers(), ["NAME", "NODE", "IMAGES", "MISSING"]);
    assert_eq!(t.rows, [["web-0", "node-1", "nginx:1.27", "<none>"]]);
    let template = s.data_dir().join("columns.txt");
    std::fs::write(&template, "NAME          TYPE\n.metadata.name .spec.type\n").unwrap();
    let out = s
        .kubectl(&[
            "get",
            "svc",
            "-o",
            &format!("custom-columns-file={}", template.display()),
        ])
        .ok();
    assert_eq!(
        Table::parse(&out).rows,
        [["kubernetes", "ClusterIP"], ["web", "ClusterIP"]]
    );
    // -o wide and --show-labels, -L
    let t = Table::parse(&s.kubectl(&["get", "pods", "--show-labels"]).ok());
    assert_eq!(t.cell("web-0", "LABELS"), "app=web");
    let t = Table::parse(&s.kubectl(&["get", "pods", "-L", "app,missing"]).ok());
    assert_eq!(
        t.headers(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "MISSING"]
    );
    assert_eq!(t.cell("web-0", "APP"), "web");
    assert_eq!(t.cell("web-0", "MISSING"), "");
    // --no-headers, --sort-by
    let out = s
        .kubectl(&["get", "svc", "--no-headers", "--sort-by=.metadata.name"])
        .ok();
    assert_eq!(
        out.lines()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect::<Vec<_>>(),
        ["kubernetes", "web"]
    );
    // go-template
    let out = s
        .kubectl(&[
            "get",
            "pods",
            "-o",
            "go-template={{range .items}}{{.metadata.name}}={{.status.phase}};{{end}}",
        ])
        .ok();
    assert_eq!(out, "web-0=Running;");
    // -A adds NAMESPACE.
    let t = Table::parse(&s.kubectl(&["get", "svc", "-A"]).ok());
    assert_eq!(t.headers()[0], "NAMESPACE");
    assert_eq!(t.column("NAME"), ["kubernetes", "web", "kube-dns"]);
}

#[test]
fn server_side_dry_run_writes_nothing() {
    let s = server();
    let deploy = data("kubectl/deployment.yaml");
    // create: the object comes back as the server would store it (defaults, uid), but is not
    // stored.
    let out = s
        .kubectl(&["create", "-f", &deploy, "--dry-run=server", "-o", "json"])
        .ok();
    let obj = parse_json(&out);
    assert_eq!(obj["metadata"]["name"], "web");
    assert_eq!(obj["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(obj["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(obj["metadata"]["creationTimestamp"].is_string(), "{obj}");
    let err = s.kubectl(&["get", "deploy", "web"]).fails();
    assert!(err.contains(r#"deployments.apps "web" not found"#), "{err}");
    assert_eq!(
        s.kubectl(&["apply", "-f", &deploy, "--dry-run=server"])
            .ok()
            .trim(),
        "deployment.apps/web created (server dry run)"
    );
    assert_eq!(s.kubectl(&["get", "deploy", "-o", "name"]).ok(), "");
    let out = s
        .kubectl(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "--dry-run=server",
            "-o",
            "yaml",
        ])
        .ok();
    assert!(
        out.contains("kind: ConfigMap") && out.contains("  a: b\n"),
        "{out}"
    );
    assert_eq!(s.kubectl(&["get", "cm", "-o", "name"]).ok(), "");

    // Validation still runs.
    let bad = std::fs::read_to_string(&deploy)
        .unwrap()
        .replace("replicas: 2", "replicas: -2");
    let err = s
        .kubectl_stdin(&["apply", "-f", "-", "--dry-run=server"], &bad)
        .fails();
    assert!(
        err.contains("spec.replicas: Invalid value: -2: must be greater than or equal to 0"),
        "{err}"
    );

    // Update, patch, label, delete of a real object: shown, not written.
    s.kubectl(&["apply", "-f", &deploy]).ok();
    let rv = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok();
    let changed = std::fs::read_to_string(&deploy)
        .unwrap()
        .replace("replicas: 2", "replicas: 7");
    let out = s
        .kubectl_stdin(
            &[
                "apply",
                "-f",
                "-",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            &changed,
        )
        .ok();
    assert_eq!(out, "7");
    let out = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--dry-run=server",
            "-p",
            r#"{"spec":{"replicas":9}}"#,
        ])
        .ok();
    // (kubectl's patch names no dry run in its message, unlike label and delete.)
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let out = s
        .kubectl(&["label", "deploy", "web", "dry=run", "--dry-run=server"])
        .ok();
    assert_eq!(out.trim(), "deployment.apps/web labeled (server dry run)");
    let out = s
        .kubectl(&["delete", "deploy", "web", "--dry-run=server"])
        .ok();
    assert_eq!(
        out.trim(),
        r#"deployment.apps "web" deleted (server dry run)"#
    );
    let got = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.spec.replicas} {.metadata.labels}",
        ])
        .ok();
    assert_eq!(got, format!(r#"{rv} 2 {{"app":"web"}}"#));
}

/// create -f, get (table, yaml), apply (create, update, unchanged), label, patch, delete,
/// api-resources and explain with each kubectl 1.27–1.33, against one server.
#[test]
fn core_commands_on_every_kubectl_version() {
    let s = server();
    let cm = data("kubectl/configmap.yaml");
    let deploy = std::fs::read_to_string(data("kubectl/deployment.yaml")).unwrap();
    for minor in 27..=33 {
        let ns = format!("v{minor}");
        let k = |args: &[&str]| {
            let mut a = args.to_vec();
            a.extend_from_slice(&["-n", &ns]);
            s.kubectl_version(minor, &a)
        };
        let stdin = |args: &[&str], doc: &str| {
            let mut a = args.to_vec();
            a.extend_from_slice(&["-n", &ns]);
            s.kubectl_version_stdin(minor, &a, doc)
        };
        s.kubectl_version(minor, &["create", "namespace", &ns]).ok();

        assert_eq!(
            k(&["create", "-f", &cm]).ok().trim(),
            "configmap/app-config created",
            "1.{minor}"
        );
        let t = Table::parse(&k(&["get", "configmaps"]).ok());
        assert_eq!(t.headers(), ["NAME", "DATA", "AGE"], "1.{minor}");
        assert_eq!(t.cell("app-config", "DATA"), "2", "1.{minor}");
        let yaml = k(&["get", "cm", "app-config", "-o", "yaml"]).ok();
        assert!(
            yaml.starts_with("apiVersion: v1\ndata:\n  LOG_LEVEL: info\n  MODE: production\nkind: ConfigMap\nmetadata:\n"),
            "1.{minor}: {yaml}"
        );
        assert!(
            yaml.contains(&format!("  namespace: {ns}\n")),
            "1.{minor}: {yaml}"
        );

        assert_eq!(
            stdin(&["apply", "-f", "-"], &deploy).ok().trim(),
            "deployment.apps/web created",
            "1.{minor}"
        );
        assert_eq!(
            stdin(&["apply", "-f", "-"], &deploy).ok().trim(),
            "deployment.apps/web unchanged",
            "1.{minor}"
        );
        let changed = deploy.replace("image: nginx:1.27", "image: nginx:1.28");
        assert_eq!(
            stdin(&["apply", "-f", "-"], &changed).ok().trim(),
            "deployment.apps/web configured",
            "1.{minor}"
        );
        let t = Table::parse(&k(&["get", "deploy", "-o", "wide"]).ok());
        assert_eq!(t.cell("web", "IMAGES"), "nginx:1.28", "1.{minor}");
        assert_eq!(t.cell("web", "READY"), "0/2", "1.{minor}");

        assert_eq!(
            k(&["label", "deploy", "web", "tier=front"]).ok().trim(),
            "deployment.apps/web labeled",
            "1.{minor}"
        );
        assert_eq!(
            k(&["label", "cm", "app-config", "app-"]).ok().trim(),
            "configmap/app-config unlabeled",
            "1.{minor}"
        );
        assert_eq!(
            k(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":4}}"#])
                .ok()
                .trim(),
            "deployment.apps/web patched",
            "1.{minor}"
        );
        assert_eq!(
            k(&[
                "patch",
                "cm",
                "app-config",
                "--type=merge",
                "-p",
                r#"{"data":{"MODE":null}}"#
            ])
            .ok()
            .trim(),
            "configmap/app-config patched",
            "1.{minor}"
        );
        assert_eq!(
            k(&[
                "patch",
                "cm",
                "app-config",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/NEW","value":"1"}]"#
            ])
            .ok()
            .trim(),
            "configmap/app-config patched",
            "1.{minor}"
        );
        assert_eq!(
            k(&[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas} {.metadata.labels.tier}"
            ])
            .ok(),
            "4 front",
            "1.{minor}"
        );
        assert_eq!(
            k(&[
                "get",
                "cm",
                "app-config",
                "-o",
                "jsonpath={.data} {.metadata.labels.app}"
            ])
            .ok(),
            r#"{"LOG_LEVEL":"info","NEW":"1"} "#,
            "1.{minor}"
        );

        let t = Table::parse(&s.kubectl_version(minor, &["api-resources"]).ok());
        assert_eq!(
            t.headers(),
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            "1.{minor}"
        );
        assert_eq!(
            t.rows.iter().find(|r| r[0] == "deployments").unwrap()[1..],
            ["deploy", "apps/v1", "true", "Deployment"],
            "1.{minor}"
        );
        let explain = s
            .kubectl_version(minor, &["explain", "deployment.spec.replicas"])
            .ok();
        assert!(
            explain.contains("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
                && explain.contains("FIELD: replicas <integer>")
                && explain.contains("Number of desired pods."),
            "1.{minor}: {explain}"
        );

        assert_eq!(
            k(&["delete", "-f", &cm]).ok().trim(),
            r#"configmap "app-config" deleted"#,
            "1.{minor}"
        );
        assert_eq!(
            stdin(&["delete", "-f", "-"], &deploy).ok().trim(),
            r#"deployment.apps "web" deleted"#,
            "1.{minor}"
        );
        let err = k(&["get", "cm", "app-config"]).fails();
        assert!(
            err.contains(r#"Error from server (NotFound): configmaps "app-config" not found"#),
            "1.{minor}: {err}"
        );
    }
}

/// The package's directory, from the environment the test runs in (cargo and nextest set
/// it): a test binary that another checkout sharing the target directory built, and that
/// cargo takes for fresh here, still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}
