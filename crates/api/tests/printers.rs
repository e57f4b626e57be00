//! Printer columns: the cells `kubectl get` / `kubectl get -o wide` print for each kind, as
//! upstream Kubernetes 1.33's server-side printers compute them. Expectations follow upstream's
//! `pkg/printers/internalversion/printers_test.go` where it has a case for the same situation.

use rudder_api::catalogue::RESOURCES;
use rudder_api::printers::{
    age, cells, columns, has_printer, human_duration, parse_timestamp, row_conditions, row_fields,
    Column, DEFAULT_COLUMNS,
};
use serde_json::{json, Value};

/// 2024-05-01T12:00:00Z.
const NOW: i64 = 1_714_564_800;

/// RFC 3339 text of the moment `secs` seconds before [`NOW`].
fn ago(secs: i64) -> String {
    rudder_api::printers::format_timestamp(NOW - secs, None).unwrap()
}

fn row(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    let cells = cells(group, kind, obj, NOW);
    // A Table list decodes only what the row reads: the row must not change.
    let bytes = serde_json::to_vec(obj).unwrap();
    let pruned = rudder_api::pruned::from_slice(&bytes, row_fields(group, kind)).unwrap();
    assert_eq!(
        rudder_api::printers::cells(group, kind, &pruned, NOW),
        cells,
        "{group}/{kind}: the row of the pruned object"
    );
    assert_eq!(
        row_conditions(group, kind, &pruned),
        row_conditions(group, kind, obj)
    );
    assert_eq!(
        cells.len(),
        columns(group, kind).len(),
        "{group}/{kind}: one cell per column"
    );
    cells
}

fn pod(obj: Value) -> Vec<Value> {
    row("", "Pod", &obj)
}

/// Column names with their priorities.
type Columns<'a> = &'a [(&'a str, i32)];

fn names(cols: &[Column]) -> Vec<(&str, i32)> {
    cols.iter().map(|c| (c.name, c.priority)).collect()
}

/// The cells `kubectl get` prints without `-o wide` (priority-0 columns only).
fn narrow(group: &str, kind: &str, cells: &[Value]) -> Vec<Value> {
    columns(group, kind)
        .iter()
        .zip(cells)
        .filter(|(c, _)| c.priority == 0)
        .map(|(_, v)| v.clone())
        .collect()
}

// ---- ages ---------------------------------------------------------------------------------------

#[test]
fn printers_human_duration_matches_upstream() {
    for (secs, want) in [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3_600, "3h"),
        (5 * 3_600 + 3 * 60, "5h3m"),
        (8 * 3_600 + 59 * 60, "8h"),
        (47 * 3_600, "47h"),
        (2 * 86_400 + 3 * 3_600, "2d3h"),
        (5 * 86_400, "5d"),
        (10 * 86_400, "10d"),
        (729 * 86_400, "729d"),
        (2 * 365 * 86_400 + 45 * 86_400, "2y45d"),
        (3 * 365 * 86_400, "3y"),
        (10 * 365 * 86_400, "10y"),
    ] {
        assert_eq!(human_duration(secs), want, "{secs}s");
    }
}

#[test]
fn printers_ages_from_timestamps() {
    assert_eq!(age(&json!(ago(5)), NOW), "5s");
    assert_eq!(age(&json!(ago(192)), NOW), "3m12s");
    assert_eq!(age(&json!(ago(2 * 86_400 + 3 * 3_600)), NOW), "2d3h");
    assert_eq!(age(&Value::Null, NOW), "<unknown>");
    assert_eq!(age(&json!("not a time"), NOW), "<unknown>");
    assert_eq!(age(&json!("0001-01-01T00:00:00Z"), NOW), "<unknown>");
    // Offsets and fractions (MicroTime) are understood.
    assert_eq!(age(&json!("2024-05-01T13:59:00+02:00"), NOW), "60s");
    assert_eq!(age(&json!("2024-05-01T11:59:30.999999Z"), NOW), "29s");
    assert_eq!(
        parse_timestamp("2024-05-01T12:00:00Z"),
        Some(NOW * 1_000_000)
    );
    assert_eq!(parse_timestamp("1970-01-01T00:00:00.5Z"), Some(500_000));
    assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
    assert_eq!(ago(0), "2024-05-01T12:00:00Z");
}

// ---- columns ------------------------------------------------------------------------------------

#[test]
fn printers_pod_columns() {
    assert_eq!(
        names(columns("", "Pod")),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ]
    );
    let c = columns("", "Pod");
    assert_eq!((c[0].type_, c[0].format), ("string", "name"));
    assert!(c[0]
        .description
        .starts_with("Name must be unique within a namespace."));
    assert_eq!(c[3].type_, "string");
    assert_eq!(
        c[3].description,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."
    );
    assert!(c[4]
        .description
        .starts_with("CreationTimestamp is a timestamp"));
    assert_eq!(
        c[5].description,
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."
    );
}

#[test]
fn printers_columns_of_main_kinds() {
    let expect: &[(&str, &str, Columns)] = &[
        (
            "apps",
            "Deployment",
            &[
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "apps",
            "ReplicaSet",
            &[
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "",
            "Service",
            &[
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ],
        ),
        (
            "",
            "Node",
            &[
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ],
        ),
        ("", "Namespace", &[("Name", 0), ("Status", 0), ("Age", 0)]),
        ("", "ConfigMap", &[("Name", 0), ("Data", 0), ("Age", 0)]),
        (
            "",
            "Secret",
            &[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
        ),
        (
            "",
            "Event",
            &[
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ],
        ),
        (
            "batch",
            "Job",
            &[
                ("Name", 0),
                ("Status", 0),
                ("Completions", 0),
                ("Duration", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "batch",
            "CronJob",
            &[
                ("Name", 0),
                ("Schedule", 0),
                ("Timezone", 0),
                ("Suspend", 0),
                ("Active", 0),
                ("Last Schedule", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ],
        ),
        (
            "",
            "PersistentVolumeClaim",
            &[
                ("Name", 0),
                ("Status", 0),
                ("Volume", 0),
                ("Capacity", 0),
                ("Access Modes", 0),
                ("StorageClass", 0),
                ("VolumeAttributesClass", 0),
                ("Age", 0),
                ("VolumeMode", 1),
            ],
        ),
    ];
    for (group, kind, want) in expect {
        assert_eq!(names(columns(group, kind)), *want, "{group}/{kind}");
    }
    // Both Event APIs print the same table.
    assert_eq!(columns("events.k8s.io", "Event"), columns("", "Event"));
    // The name column of events is a wide one but keeps its `name` format.
    let event_name = columns("", "Event")[9];
    assert_eq!((event_name.format, event_name.priority), ("name", 1));
    assert_eq!(columns("", "Event")[0].format, "");
}

#[test]
fn printers_default_table_for_kinds_without_a_printer() {
    for (group, kind) in [
        ("", "LimitRange"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("example.com", "Widget"),
    ] {
        assert!(!has_printer(group, kind), "{group}/{kind}");
        assert_eq!(columns(group, kind), DEFAULT_COLUMNS);
    }
    assert_eq!(names(DEFAULT_COLUMNS), [("Name", 0), ("Created At", 0)]);
    assert_eq!(DEFAULT_COLUMNS[1].type_, "date");
    let created = "2024-04-30T08:00:00Z";
    let obj = json!({"metadata": {"name": "limits", "creationTimestamp": created}});
    assert_eq!(
        row("", "LimitRange", &obj),
        [json!("limits"), json!(created)]
    );
    assert_eq!(
        row("", "LimitRange", &json!({"metadata": {"name": "x"}})),
        [json!("x"), Value::Null]
    );
}

/// Every kind of the catalogue has columns, and a row of exactly that many cells even for an
/// empty object; all the printers upstream has for them are there.
#[test]
fn printers_cover_the_catalogue() {
    let without = [
        "LimitRange",
        "Role",
        "ClusterRole",
        "SelfSubjectReview",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
        "SubjectAccessReview",
        "LocalSubjectAccessReview",
        "NodeMetrics",
        "PodMetrics",
    ];
    for r in RESOURCES {
        let cols = columns(r.group, r.kind);
        assert!(!cols.is_empty());
        assert_eq!(
            has_printer(r.group, r.kind),
            !without.contains(&r.kind),
            "{}/{}",
            r.group,
            r.kind
        );
        for obj in [
            json!({}),
            json!({"metadata": {"name": "x"}, "spec": {}, "status": {}}),
        ] {
            assert_eq!(
                cells(r.group, r.kind, &obj, NOW).len(),
                cols.len(),
                "{}/{}",
                r.group,
                r.kind
            );
        }
        for c in cols {
            assert!(
                ["string", "integer", "number", "boolean", "date"].contains(&c.type_),
                "{}",
                c.name
            );
            assert!(c.priority == 0 || c.priority == 1);
            assert!(
                !c.description.is_empty(),
                "{}/{} {}",
                r.group,
                r.kind,
                c.name
            );
        }
    }
}

// ---- pods ---------------------------------------------------------------------------------------

fn running(name: &str, ready: bool, restarts: i64) -> Value {
    json!({"name": name, "ready": ready, "restartCount": restarts, "started": true,
           "state": {"running": {"startedAt": ago(100)}}})
}

#[test]
fn printers_pod_pending() {
    let cells = pod(json!({
        "metadata": {"name": "web", "creationTimestamp": ago(5)},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]},
    }));
    assert_eq!(
        cells,
        ["web", "0/1", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"]
    );
    // Scheduled, image still being pulled.
    let cells = pod(json!({
        "metadata": {"name": "web", "creationTimestamp": ago(40)},
        "spec": {"containers": [{"name": "app"}], "nodeName": "n1"},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["web", "0/1", "ContainerCreating", "0", "40s"]
    );
    // Held back by scheduling gates.
    let cells = pod(json!({
        "metadata": {"name": "gated"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["gated", "0/2", "SchedulingGated", "0", "<unknown>"]
    );
}

#[test]
fn printers_pod_running_ready_and_unready() {
    let ready = pod(json!({
        "metadata": {"name": "web-7d9f", "creationTimestamp": ago(192)},
        "spec": {"containers": [{"name": "app"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.42.0.7", "podIPs": [{"ip": "10.42.0.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running("app", true, 0)]},
    }));
    assert_eq!(
        ready,
        [
            "web-7d9f",
            "1/1",
            "Running",
            "0",
            "3m12s",
            "10.42.0.7",
            "node-1",
            "<none>",
            "<none>"
        ]
    );
    let unready = pod(json!({
        "metadata": {"name": "web", "creationTimestamp": ago(3_600)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.42.0.8",
            "containerStatuses": [running("a", true, 0), running("b", false, 0)]},
    }));
    // Only `podIP` set: the v1 conversion makes it the first of `podIPs`.
    assert_eq!(
        unready,
        [
            "web",
            "1/2",
            "Running",
            "0",
            "60m",
            "10.42.0.8",
            "node-1",
            "<none>",
            "<none>"
        ]
    );
    // Upstream test1/test4: ready without running does not count; the phase is printed.
    let cells = pod(json!({
        "metadata": {"name": "test4"},
        "spec": {"containers": [{}, {}]},
        "status": {"phase": "podPhase", "containerStatuses": [
            {"ready": true, "restartCount": 3, "state": {"running": {}}},
            {"ready": true, "restartCount": 3}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test4", "1/2", "podPhase", "6", "<unknown>"]
    );
    // Upstream test5: the pod's reason wins over its phase.
    let cells = pod(json!({
        "metadata": {"name": "test5"},
        "spec": {"containers": [{}, {}]},
        "status": {"phase": "podPhase", "reason": "podReason", "containerStatuses": [
            {"ready": true, "restartCount": 3, "state": {"running": {}}},
            {"ready": true, "restartCount": 3}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test5", "1/2", "podReason", "6", "<unknown>"]
    );
}

#[test]
fn printers_pod_container_reasons() {
    // Upstream test3: the first container's reason wins.
    let cells = pod(json!({
        "metadata": {"name": "test3"},
        "spec": {"containers": [{}, {}]},
        "status": {"phase": "podPhase", "containerStatuses": [
            {"restartCount": 3, "state": {"waiting": {"reason": "ContainerWaitingReason"}}},
            {"restartCount": 3, "state": {"terminated": {"reason": "ContainerTerminatedReason"}}}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test3", "0/2", "ContainerWaitingReason", "6", "<unknown>"]
    );
    // Terminated without a reason: the signal, else the exit code.
    for (terminated, want) in [
        (json!({"exitCode": 137, "signal": 9}), "Signal:9"),
        (json!({"exitCode": 2}), "ExitCode:2"),
        (json!({"exitCode": 1, "reason": "Error"}), "Error"),
        (json!({"exitCode": 137, "reason": "OOMKilled"}), "OOMKilled"),
    ] {
        let cells = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": 0, "state": {"terminated": terminated}}]},
        }));
        assert_eq!(cells[2], want);
    }
    // Upstream test6: one container completed, one running: NotReady without the Ready
    // condition, Running with it.
    let mut obj = json!({
        "metadata": {"name": "test6"},
        "spec": {"containers": [{}, {}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"ready": true, "restartCount": 3,
             "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
            {"ready": true, "restartCount": 3, "state": {"running": {}}}]},
    });
    assert_eq!(
        narrow("", "Pod", &pod(obj.clone())),
        ["test6", "1/2", "NotReady", "6", "<unknown>"]
    );
    obj["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(
        narrow("", "Pod", &pod(obj)),
        ["test6", "1/2", "Running", "6", "<unknown>"]
    );
}

#[test]
fn printers_pod_init_containers() {
    let base = |init_status: Value| {
        json!({
            "metadata": {"name": "init", "creationTimestamp": ago(30)},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [init_status],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]},
        })
    };
    for (state, want) in [
        (json!({"running": {}}), "Init:0/1"),
        (
            json!({"waiting": {"reason": "PodInitializing"}}),
            "Init:0/1",
        ),
        (json!({"waiting": {}}), "Init:0/1"),
        (
            json!({"waiting": {"reason": "ErrImagePull"}}),
            "Init:ErrImagePull",
        ),
        (
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            "Init:CrashLoopBackOff",
        ),
        (json!({"terminated": {"exitCode": 1}}), "Init:ExitCode:1"),
        (
            json!({"terminated": {"exitCode": 143, "signal": 15}}),
            "Init:Signal:15",
        ),
        (
            json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
            "Init:Error",
        ),
        // Done: the main containers decide.
        (
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            "PodInitializing",
        ),
    ] {
        let status = json!({"name": "setup", "ready": false, "restartCount": 0, "state": state});
        let cells = pod(base(status));
        assert_eq!(
            narrow("", "Pod", &cells),
            ["init", "0/1", want, "0", "30s"],
            "{state}"
        );
    }

    // Upstream test8/test9/test10: the index of the first unfinished init container, and the
    // restarts of every init container looked at.
    let cells = pod(json!({
        "metadata": {"name": "test10"},
        "spec": {"initContainers": [{}, {}], "containers": [{}]},
        "status": {"phase": "podPhase",
            "initContainerStatuses": [
                {"ready": false, "restartCount": 2, "state": {"terminated": {}},
                 "lastState": {"terminated": {"finishedAt": ago(120)}}},
                {"ready": false, "restartCount": 3, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": ago(10)}}}],
            "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test10", "0/1", "Init:1/2", "5 (10s ago)", "<unknown>"]
    );
    // Upstream test11: once initialised, only the main containers' restarts count.
    let cells = pod(json!({
        "metadata": {"name": "test11"},
        "spec": {"initContainers": [{}], "containers": [{}]},
        "status": {"phase": "Running",
            "initContainerStatuses": [
                {"ready": false, "restartCount": 2, "state": {"terminated": {}},
                 "lastState": {"terminated": {"finishedAt": ago(120)}}}],
            "containerStatuses": [
                {"ready": false, "restartCount": 4, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": ago(20)}}}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test11", "0/1", "Running", "4 (20s ago)", "<unknown>"]
    );
}

#[test]
fn printers_pod_sidecars() {
    let spec = json!({
        "initContainers": [
            {"name": "restartable-init-1", "restartPolicy": "Always"},
            {"name": "restartable-init-2", "restartPolicy": "Always"}],
        "containers": [{}]});
    // Upstream: the first sidecar started, the second running but not started.
    let cells = pod(json!({
        "metadata": {"name": "test1"},
        "spec": spec,
        "status": {"phase": "Pending",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3,
                 "state": {"running": {}}, "started": true,
                 "lastState": {"terminated": {"finishedAt": ago(10)}}},
                {"name": "restartable-init-2", "ready": false, "state": {"running": {}},
                 "started": false}],
            "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}],
            "conditions": [{"type": "Initialized", "status": "False"}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test1", "0/3", "Init:1/2", "3 (10s ago)", "<unknown>"]
    );
    // Upstream test2: both sidecars started, the main container running and ready.
    let cells = pod(json!({
        "metadata": {"name": "test2"},
        "spec": spec,
        "status": {"phase": "Running",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3,
                 "state": {"running": {}}, "started": true,
                 "lastState": {"terminated": {"finishedAt": ago(10)}}},
                {"name": "restartable-init-2", "ready": false, "state": {"running": {}},
                 "started": true}],
            "containerStatuses": [{"ready": true, "restartCount": 4, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": ago(20)}}}],
            "conditions": [{"type": "Initialized", "status": "True"}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test2", "1/3", "Running", "7 (10s ago)", "<unknown>"]
    );
    // Upstream test4: statuses for containers that do not exist.
    let cells = pod(json!({
        "metadata": {"name": "test4"},
        "spec": {"initContainers": [{"name": "init1"},
                                    {"name": "sidecar1", "restartPolicy": "Always"}],
                 "containers": [{"name": "container1"}]},
        "status": {"phase": "Running",
            "initContainerStatuses": [{"name": "initinvalid"}, {"name": "init1"},
                                      {"name": "sidecar1"}],
            "containerStatuses": [{"name": "containerinvalid"}, {"name": "container1"}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test4", "0/2", "Init:0/2", "0", "<unknown>"]
    );
}

#[test]
fn printers_pod_crashloop_with_restarts() {
    let cells = pod(json!({
        "metadata": {"name": "crashy", "creationTimestamp": ago(2 * 86_400 + 3 * 3_600)},
        "spec": {"containers": [{"name": "app"}], "nodeName": "node-2"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.42.1.5"}, {"ip": "fd00::5"}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 2m40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "finishedAt": ago(300)}}}]},
    }));
    assert_eq!(
        cells,
        [
            "crashy",
            "0/1",
            "CrashLoopBackOff",
            "5 (5m ago)",
            "2d3h",
            "10.42.1.5",
            "node-2",
            "<none>",
            "<none>"
        ]
    );
    // Upstream test14: restarts add up; the most recent restart is shown.
    let cells = pod(json!({
        "metadata": {"name": "test14"},
        "spec": {"containers": [{}, {}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"ready": true, "restartCount": 6, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": ago(5 * 86_400)}}},
            {"ready": true, "restartCount": 3, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": ago(20 * 86_400)}}}]},
    }));
    assert_eq!(
        narrow("", "Pod", &cells),
        ["test14", "2/2", "Running", "9 (5d ago)", "<unknown>"]
    );
    // Restarts without a recorded termination time: the count alone.
    let cells = pod(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{}]},
        "status": {"phase": "Running",
            "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]},
    }));
    assert_eq!(cells[3], "2");
}

#[test]
fn printers_pod_terminating() {
    let mut obj = json!({
        "metadata": {"name": "going", "creationTimestamp": ago(600),
                     "deletionTimestamp": ago(10)},
        "spec": {"containers": [{"name": "app"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.42.0.9",
            "containerStatuses": [running("app", true, 0)]},
    });
    assert_eq!(
        narrow("", "Pod", &pod(obj.clone())),
        ["going", "1/1", "Terminating", "0", "10m"]
    );
    // Pending pods terminate too (upstream test20) ...
    obj["status"] = json!({"phase": "Pending"});
    assert_eq!(pod(obj.clone())[2], "Terminating");
    // ... pods that already finished keep their reason (upstream test18) ...
    obj["status"] = json!({"phase": "Succeeded", "containerStatuses": [
        {"ready": false, "restartCount": 0,
         "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]});
    assert_eq!(pod(obj.clone())[2], "Completed");
    // ... and pods of an unreachable node are Unknown.
    obj["status"] = json!({"phase": "Running", "reason": "NodeLost"});
    assert_eq!(pod(obj)[2], "Unknown");
}

#[test]
fn printers_pod_completed_and_failed() {
    let completed = json!({
        "metadata": {"name": "job-abc", "creationTimestamp": ago(7_200)},
        "spec": {"containers": [{"name": "main"}], "nodeName": "node-1"},
        "status": {"phase": "Succeeded", "podIP": "10.42.0.3",
            "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
    });
    assert_eq!(
        pod(completed.clone()),
        [
            "job-abc",
            "0/1",
            "Completed",
            "0",
            "120m",
            "10.42.0.3",
            "node-1",
            "<none>",
            "<none>"
        ]
    );
    assert_eq!(
        row_conditions("", "Pod", &completed),
        Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                     "message": "The pod has completed successfully."}])
        )
    );
    let failed = json!({
        "metadata": {"name": "test17"},
        "spec": {"containers": [{}]},
        "status": {"phase": "Failed", "containerStatuses": [{"ready": false, "restartCount": 0,
            "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]},
    });
    assert_eq!(
        narrow("", "Pod", &pod(failed.clone())),
        ["test17", "0/1", "Error", "0", "<unknown>"]
    );
    assert_eq!(
        row_conditions("", "Pod", &failed),
        Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed",
                     "message": "The pod failed."}])
        )
    );
    assert_eq!(
        row_conditions("", "Pod", &json!({"status": {"phase": "Running"}})),
        None
    );
    assert_eq!(row_conditions("apps", "Deployment", &completed), None);
}

#[test]
fn printers_pod_wide_columns() {
    // Upstream TestPrintPodwide: readiness gates count the gates whose condition is True.
    let cells = pod(json!({
        "metadata": {"name": "test1"},
        "spec": {"containers": [{}, {}], "nodeName": "test1", "readinessGates": [
            {"conditionType": "condition1"}, {"conditionType": "condition2"},
            {"conditionType": "condition3"}]},
        "status": {"phase": "podPhase",
            "conditions": [{"type": "condition1", "status": "False"},
                           {"type": "condition2", "status": "True"}],
            "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
            "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": {"running": {}}},
                {"restartCount": 3}],
            "nominatedNodeName": "node1"},
    }));
    assert_eq!(
        cells,
        [
            "test1",
            "1/2",
            "podPhase",
            "6",
            "<unknown>",
            "1.1.1.1",
            "test1",
            "node1",
            "1/3"
        ]
    );
}

// ---- deployments and other workloads -------------------------------------------------------------

#[test]
fn printers_deployments() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(192)},
        "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web", "tier": "frontend"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.25"},
                {"name": "sidecar", "image": "busybox"}]}}},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
                   "availableReplicas": 2},
    });
    let cells = row("apps", "Deployment", &obj);
    assert_eq!(
        cells,
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3m12s"),
            json!("nginx,sidecar"),
            json!("nginx:1.25,busybox"),
            json!("app=web,tier=frontend"),
        ]
    );
    // Fresh object: no status yet; replicas defaulted to 1; expressions in the selector.
    let obj = json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {"matchLabels": {"app": "api"}, "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b", "a"]},
                {"key": "track", "operator": "Exists"}]},
            "template": {"spec": {"containers": [{"name": "api", "image": "api:v1"}]}}},
    });
    assert_eq!(
        row("apps", "Deployment", &obj),
        [
            json!("api"),
            json!("0/1"),
            json!(0),
            json!(0),
            json!("<unknown>"),
            json!("api"),
            json!("api:v1"),
            json!("app=api,!canary,env in (dev,prod),track,zone notin (a,b)"),
        ]
    );
    // An empty selector prints empty here (not "<none>"), an invalid one "<invalid>".
    let obj = json!({"metadata": {"name": "d"}, "spec": {"replicas": 0, "selector": {}}});
    assert_eq!(row("apps", "Deployment", &obj)[7], "");
    let obj = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchExpressions": [
        {"key": "a", "operator": "Bogus"}]}}});
    assert_eq!(row("apps", "Deployment", &obj)[7], "<invalid>");
}

#[test]
fn printers_replica_sets_stateful_sets_daemon_sets() {
    let template = json!({"spec": {"containers": [{"name": "c", "image": "i:1"}],
                                   "nodeSelector": {"kubernetes.io/os": "linux"}}});
    let rs = json!({
        "metadata": {"name": "web-5d4f", "creationTimestamp": ago(30)},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web",
                 "pod-template-hash": "5d4f"}}, "template": template},
        "status": {"replicas": 2, "readyReplicas": 1},
    });
    assert_eq!(
        row("apps", "ReplicaSet", &rs),
        [
            json!("web-5d4f"),
            json!(2),
            json!(2),
            json!(1),
            json!("30s"),
            json!("c"),
            json!("i:1"),
            json!("app=web,pod-template-hash=5d4f"),
        ]
    );
    let sts = json!({
        "metadata": {"name": "db", "creationTimestamp": ago(30)},
        "spec": {"replicas": 3, "template": template},
        "status": {"replicas": 3, "readyReplicas": 3},
    });
    assert_eq!(
        row("apps", "StatefulSet", &sts),
        [
            json!("db"),
            json!("3/3"),
            json!("30s"),
            json!("c"),
            json!("i:1")
        ]
    );
    let ds = json!({
        "metadata": {"name": "agent", "creationTimestamp": ago(30)},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1},
    });
    assert_eq!(
        row("apps", "DaemonSet", &ds),
        [
            json!("agent"),
            json!(2),
            json!(2),
            json!(1),
            json!(2),
            json!(1),
            json!("kubernetes.io/os=linux"),
            json!("30s"),
            json!("c"),
            json!("i:1"),
            json!("app=agent"),
        ]
    );
    let rc = json!({
        "metadata": {"name": "old", "creationTimestamp": ago(30)},
        "spec": {"replicas": 2, "selector": {"app": "old"},
                 "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 2, "readyReplicas": 2},
    });
    assert_eq!(
        row("", "ReplicationController", &rc),
        [
            json!("old"),
            json!(2),
            json!(2),
            json!(2),
            json!("30s"),
            json!("c"),
            json!("i"),
            json!("app=old"),
        ]
    );
    let pt = json!({
        "metadata": {"name": "tpl"},
        "template": {"metadata": {"labels": {"b": "2", "a": "1"}},
                     "spec": {"containers": [{"name": "x", "image": "y"},
                                             {"name": "z", "image": "w"}]}},
    });
    assert_eq!(
        row("", "PodTemplate", &pt),
        [json!("tpl"), json!("x,z"), json!("y,w"), json!("a=1,b=2")]
    );
    let cr = json!({
        "metadata": {"name": "db-6c7", "creationTimestamp": ago(30), "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]},
        "revision": 2,
    });
    assert_eq!(
        row("apps", "ControllerRevision", &cr),
        [
            json!("db-6c7"),
            json!("statefulset.apps/db"),
            json!(2),
            json!("30s")
        ]
    );
    let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
    assert_eq!(row("apps", "ControllerRevision", &orphan)[1], "<none>");
}

#[test]
fn printers_jobs_and_cron_jobs() {
    let job = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(600)},
        "spec": {"completions": 1, "parallelism": 1,
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                 "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(583),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                  {"type": "Complete", "status": "True"}]},
    });
    assert_eq!(
        row("batch", "Job", &job),
        [
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("17s"),
            json!("10m"),
            json!("pi"),
            json!("perl"),
            json!("batch.kubernetes.io/controller-uid=u1"),
        ]
    );
    let running = json!({
        "metadata": {"name": "work"},
        "spec": {"parallelism": 3},
        "status": {"succeeded": 1, "startTime": ago(90)},
    });
    let cells = row("batch", "Job", &running);
    assert_eq!(
        cells[1..4],
        [json!("Running"), json!("1/1 of 3"), json!("90s")]
    );
    let failed = json!({"metadata": {"name": "f"}, "spec": {"completions": 5},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    let cells = row("batch", "Job", &failed);
    assert_eq!(cells[1..4], [json!("Failed"), json!("0/5"), json!("")]);
    let suspended = json!({"metadata": {"name": "s"},
        "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
    assert_eq!(row("batch", "Job", &suspended)[1], "Suspended");

    let cj = json!({
        "metadata": {"name": "hello", "creationTimestamp": ago(3 * 86_400)},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                     {"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(45)},
    });
    assert_eq!(
        row("batch", "CronJob", &cj),
        [
            json!("hello"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("45s"),
            json!("3d"),
            json!("hello"),
            json!("busybox"),
            json!("<none>"),
        ]
    );
    let cj = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily",
        "timeZone": "Etc/UTC", "suspend": true}});
    let cells = row("batch", "CronJob", &cj);
    assert_eq!(
        cells[1..6],
        [
            json!("@daily"),
            json!("Etc/UTC"),
            json!("True"),
            json!(0),
            json!("<none>")
        ]
    );
}

// ---- services -----------------------------------------------------------------------------------

fn service(spec: Value, status: Value) -> Vec<Value> {
    row(
        "",
        "Service",
        &json!({"metadata": {"name": "svc", "creationTimestamp": ago(65)},
                "spec": spec, "status": status}),
    )
}

#[test]
fn printers_services() {
    // ClusterIP.
    assert_eq!(
        service(
            json!({"type": "ClusterIP", "clusterIP": "10.43.12.7", "clusterIPs": ["10.43.12.7"],
                   "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                             {"name": "dns", "port": 53, "protocol": "UDP"}],
                   "selector": {"app": "web"}}),
            json!({"loadBalancer": {}})
        ),
        [
            "svc",
            "ClusterIP",
            "10.43.12.7",
            "<none>",
            "80/TCP,53/UDP",
            "65s",
            "app=web"
        ]
    );
    // ClusterIP with external IPs.
    assert_eq!(
        service(
            json!({"type": "ClusterIP", "clusterIPs": ["10.43.0.2"],
                   "externalIPs": ["192.0.2.1", "192.0.2.2"], "ports": [{"port": 443}]}),
            json!({})
        )[3..5],
        ["192.0.2.1,192.0.2.2", "443/TCP"]
    );
    // NodePort.
    assert_eq!(
        service(
            json!({"type": "NodePort", "clusterIPs": ["10.43.5.5"],
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
                   "selector": {"tier": "fe", "app": "web"}}),
            json!({})
        ),
        [
            "svc",
            "NodePort",
            "10.43.5.5",
            "<none>",
            "80:30080/TCP",
            "65s",
            "app=web,tier=fe"
        ]
    );
    // LoadBalancer still waiting for an address.
    assert_eq!(
        service(
            json!({"type": "LoadBalancer", "clusterIPs": ["1.3.4.5"], "ports": [
                {"port": 80, "protocol": "TCP", "nodePort": 31000},
                {"port": 8090, "protocol": "UDP", "nodePort": 31001},
                {"port": 7777, "protocol": "SCTP", "nodePort": 31002}]}),
            json!({"loadBalancer": {}})
        ),
        [
            "svc",
            "LoadBalancer",
            "1.3.4.5",
            "<pending>",
            "80:31000/TCP,8090:31001/UDP,7777:31002/SCTP",
            "65s",
            "<none>"
        ]
    );
    // LoadBalancer with addresses: sorted, unique, an IP wins over a host name, never
    // truncated server-side (upstream's wide form).
    assert_eq!(
        service(
            json!({"type": "LoadBalancer", "clusterIPs": ["1.5.6.7"], "ports": [{"port": 80}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "3.4.5.6"}, {"ip": "2.3.4.5"},
                {"ip": "5.6.7.8", "hostname": "host5678"}, {"hostname": "lb.example.com"},
                {"ip": "2.3.4.5"}]}})
        )[3],
        "2.3.4.5,3.4.5.6,5.6.7.8,lb.example.com"
    );
    // LoadBalancer with external IPs too: load balancer addresses first.
    assert_eq!(
        service(
            json!({"type": "LoadBalancer", "clusterIPs": ["1.5.6.7"],
                   "externalIPs": ["9.9.9.9"], "ports": [{"port": 80}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "2.3.4.5"}]}})
        )[3],
        "2.3.4.5,9.9.9.9"
    );
    assert_eq!(
        service(
            json!({"type": "LoadBalancer", "clusterIPs": ["1.5.6.7"],
                   "externalIPs": ["9.9.9.9"], "ports": [{"port": 80}]}),
            json!({})
        )[3],
        "9.9.9.9"
    );
    // ExternalName.
    assert_eq!(
        service(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({})
        ),
        [
            "svc",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "65s",
            "<none>"
        ]
    );
    // Headless; type defaulted to ClusterIP; only the legacy `clusterIP` set.
    assert_eq!(
        service(
            json!({"clusterIP": "None", "ports": [{"port": 5432}], "selector": {"app": "pg"}}),
            json!({})
        ),
        [
            "svc",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP",
            "65s",
            "app=pg"
        ]
    );
    // Dual stack: the first cluster IP.
    assert_eq!(
        service(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.9",
                   "clusterIPs": ["10.43.0.9", "fd00:43::9"], "ports": [{"port": 80}]}),
            json!({})
        )[2],
        "10.43.0.9"
    );
}

#[test]
fn printers_endpoints_and_slices() {
    let ep = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(10)},
        "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
                     "ports": [{"port": 8080}, {"name": "metrics", "port": 9090}]}],
    });
    assert_eq!(
        row("", "Endpoints", &ep),
        [
            json!("web"),
            json!("10.42.0.5:8080,10.42.0.6:8080,10.42.0.5:9090 + 1 more..."),
            json!("10s")
        ]
    );
    let headless = json!({"metadata": {"name": "h"},
        "subsets": [{"addresses": [{"ip": "fd00::1"}]},
                    {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 53}]},
                    {"addresses": [{"ip": "fd00::2"}], "ports": [{"port": 53}]}]});
    assert_eq!(
        row("", "Endpoints", &headless)[1],
        "fd00::1,10.0.0.1:53,[fd00::2]:53"
    );
    assert_eq!(
        row("", "Endpoints", &json!({"metadata": {"name": "e"}}))[1],
        "<none>"
    );
    let slice = json!({
        "metadata": {"name": "web-abc12", "creationTimestamp": ago(10)},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "named"}, {}],
        "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}],
    });
    assert_eq!(
        row("discovery.k8s.io", "EndpointSlice", &slice),
        [
            json!("web-abc12"),
            json!("IPv4"),
            json!("8080,named,*"),
            json!("10.42.0.5,10.42.0.6"),
            json!("10s")
        ]
    );
    let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6",
        "endpoints": [{"addresses": ["a"]}, {"addresses": ["b"]}, {"addresses": ["c", "d", "e"]}]});
    let cells = row("discovery.k8s.io", "EndpointSlice", &empty);
    assert_eq!(cells[2..4], [json!("<unset>"), json!("a,b,c + 2 more...")]);
}

#[test]
fn printers_ingresses_and_network_policies() {
    let ing = json!({
        "metadata": {"name": "test1", "creationTimestamp": ago(10 * 365 * 86_400)},
        "spec": {"ingressClassName": "foo",
                 "defaultBackend": {"service": {"name": "default-backend",
                                                "port": {"number": 80}}}},
        "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5",
                                                 "hostname": "localhost.localdomain"}]}},
    });
    assert_eq!(
        row("networking.k8s.io", "Ingress", &ing),
        [
            json!("test1"),
            json!("foo"),
            json!("*"),
            json!("2.3.4.5"),
            json!("80"),
            json!("10y")
        ]
    );
    let ing = json!({"metadata": {"name": "many"}, "spec": {
        "tls": [{"hosts": ["a.example.com"]}],
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"},
                  {"host": "c.example.com"}, {"host": "d.example.com"}]}});
    let cells = row("networking.k8s.io", "Ingress", &ing);
    assert_eq!(
        cells[1..5],
        [
            json!("<none>"),
            json!("a.example.com,b.example.com,c.example.com + 2 more..."),
            json!(""),
            json!("80, 443")
        ]
    );
    let class = json!({"metadata": {"name": "nginx"}, "spec": {
        "controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "example.com", "kind": "Params", "name": "p"}}});
    assert_eq!(
        row("networking.k8s.io", "IngressClass", &class)[1..3],
        [json!("k8s.io/ingress-nginx"), json!("Params.example.com/p")]
    );
    let np = json!({"metadata": {"name": "deny", "creationTimestamp": ago(10)},
                    "spec": {"podSelector": {}}});
    assert_eq!(
        row("networking.k8s.io", "NetworkPolicy", &np),
        [json!("deny"), json!("<none>"), json!("10s")]
    );
    let np = json!({"metadata": {"name": "web"},
                    "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
    assert_eq!(row("networking.k8s.io", "NetworkPolicy", &np)[1], "role=db");
}

// ---- nodes --------------------------------------------------------------------------------------

#[test]
fn printers_nodes() {
    let node = json!({
        "metadata": {"name": "server-1", "creationTimestamp": ago(5 * 86_400 + 3_600),
            "labels": {"node-role.kubernetes.io/control-plane": "true",
                       "node-role.kubernetes.io/master": "true",
                       "node-role.kubernetes.io/": "ignored",
                       "kubernetes.io/hostname": "server-1"}},
        "spec": {"podCIDR": "10.42.0.0/24"},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"},
                           {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                          {"type": "Hostname", "address": "server-1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1+rudder", "osImage": "Debian GNU/Linux 12",
                         "kernelVersion": "6.1.0-18-amd64",
                         "containerRuntimeVersion": "containerd://1.6.20"}},
    });
    assert_eq!(
        row("", "Node", &node),
        [
            "server-1",
            "Ready",
            "control-plane,master",
            "5d1h",
            "v1.33.1+rudder",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0-18-amd64",
            "containerd://1.6.20"
        ]
    );
    // Cordoned and not ready; the legacy role label.
    let node = json!({
        "metadata": {"name": "agent-1", "labels": {"kubernetes.io/role": "worker"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
            "addresses": [{"type": "ExternalIP", "address": "2.2.2.2"},
                          {"type": "InternalIP", "address": "3.3.3.3"},
                          {"type": "ExternalIP", "address": "4.4.4.4"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1"}},
    });
    assert_eq!(
        row("", "Node", &node),
        [
            "agent-1",
            "NotReady,SchedulingDisabled",
            "worker",
            "<unknown>",
            "v1.33.1",
            "3.3.3.3",
            "2.2.2.2",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]
    );
    // Upstream: a node that never reported.
    assert_eq!(
        row("", "Node", &json!({"metadata": {"name": "foo1"}})),
        [
            "foo1",
            "Unknown",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]
    );
}

// ---- namespaces, config maps, secrets -------------------------------------------------------------

#[test]
fn printers_namespaces() {
    let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(3 * 86_400)},
                    "status": {"phase": "Active"}});
    assert_eq!(row("", "Namespace", &ns), ["default", "Active", "3d"]);
    let ns = json!({"metadata": {"name": "old", "creationTimestamp": ago(40),
                                 "deletionTimestamp": ago(2)},
                    "status": {"phase": "Terminating"}});
    assert_eq!(row("", "Namespace", &ns), ["old", "Terminating", "40s"]);
    // core/v1 defaulting: a namespace without a phase is Active.
    let ns = json!({"metadata": {"name": "new", "creationTimestamp": ago(0)}});
    assert_eq!(row("", "Namespace", &ns), ["new", "Active", "0s"]);
}

#[test]
fn printers_config_maps() {
    let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": ago(7_200)},
                    "data": {"ca.crt": "..."}});
    assert_eq!(
        row("", "ConfigMap", &cm),
        [json!("kube-root-ca.crt"), json!(1), json!("120m")]
    );
    let cm = json!({"metadata": {"name": "both", "creationTimestamp": ago(8 * 3_600)},
                    "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(
        row("", "ConfigMap", &cm),
        [json!("both"), json!(3), json!("8h")]
    );
    let cm = json!({"metadata": {"name": "empty"}});
    assert_eq!(
        row("", "ConfigMap", &cm),
        [json!("empty"), json!(0), json!("<unknown>")]
    );
}

#[test]
fn printers_secrets() {
    let s = json!({"metadata": {"name": "tls", "creationTimestamp": ago(30)},
                   "type": "kubernetes.io/tls",
                   "data": {"tls.crt": "Zm9v", "tls.key": "YmFy"}});
    assert_eq!(
        row("", "Secret", &s),
        [
            json!("tls"),
            json!("kubernetes.io/tls"),
            json!(2),
            json!("30s")
        ]
    );
    // Opaque by default; `stringData` keys count once with `data`.
    let s = json!({"metadata": {"name": "creds", "creationTimestamp": ago(30)},
                   "data": {"user": "YQ=="}, "stringData": {"user": "a", "password": "b"}});
    assert_eq!(
        row("", "Secret", &s),
        [json!("creds"), json!("Opaque"), json!(2), json!("30s")]
    );
    let s = json!({"metadata": {"name": "none"}, "type": "Opaque"});
    assert_eq!(row("", "Secret", &s)[2], json!(0));
}

#[test]
fn printers_service_accounts_leases_priority_classes() {
    let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(30)}});
    assert_eq!(
        row("", "ServiceAccount", &sa),
        [json!("default"), json!(0), json!("30s")]
    );
    let sa = json!({"metadata": {"name": "bot"}, "secrets": [{"name": "bot-token"}]});
    assert_eq!(row("", "ServiceAccount", &sa)[1], json!(1));
    let lease = json!({"metadata": {"name": "node-1", "creationTimestamp": ago(30)},
                       "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}});
    assert_eq!(
        row("coordination.k8s.io", "Lease", &lease),
        ["node-1", "node-1", "30s"]
    );
    let pc = json!({"metadata": {"name": "system-node-critical", "creationTimestamp": ago(30)},
                    "value": 2_000_001_000, "globalDefault": false});
    assert_eq!(
        row("scheduling.k8s.io", "PriorityClass", &pc),
        [
            json!("system-node-critical"),
            json!(2_000_001_000),
            json!(false),
            json!("30s"),
            json!("PreemptLowerPriority")
        ]
    );
}

#[test]
fn printers_rbac_bindings() {
    let rb = json!({
        "metadata": {"name": "read", "creationTimestamp": ago(30)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}],
    });
    let want = [
        "read",
        "ClusterRole/view",
        "30s",
        "alice, bob",
        "devs",
        "tools/ci",
    ];
    assert_eq!(row("rbac.authorization.k8s.io", "RoleBinding", &rb), want);
    assert_eq!(
        row("rbac.authorization.k8s.io", "ClusterRoleBinding", &rb),
        want
    );
    assert_eq!(
        names(columns("rbac.authorization.k8s.io", "ClusterRoleBinding")),
        [
            ("Name", 0),
            ("Role", 0),
            ("Age", 0),
            ("Users", 1),
            ("Groups", 1),
            ("ServiceAccounts", 1)
        ]
    );
}

// ---- events -------------------------------------------------------------------------------------

#[test]
fn printers_core_events() {
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-7d9f.17c1", "namespace": "default",
                     "creationTimestamp": ago(600)},
        "involvedObject": {"kind": "Pod", "name": "web-7d9f", "namespace": "default",
                           "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container app\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(75), "count": 12,
    });
    assert_eq!(
        row("", "Event", &ev),
        [
            json!("75s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-7d9f"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting failed container app"),
            json!("10m"),
            json!(12),
            json!("web-7d9f.17c1"),
        ]
    );
    assert_eq!(
        narrow("", "Event", &row("", "Event", &ev)),
        [
            "75s",
            "Warning",
            "BackOff",
            "pod/web-7d9f",
            "Back-off restarting failed container app"
        ]
    );
    // Only a first time: last seen is the same; no count means 1; a kind without a name.
    let ev = json!({
        "metadata": {"name": "n.1"},
        "involvedObject": {"kind": "Node"},
        "reason": "RegisteredNode", "type": "Normal", "message": "registered",
        "firstTimestamp": ago(30), "reportingComponent": "",
    });
    assert_eq!(
        row("", "Event", &ev),
        [
            json!("30s"),
            json!("Normal"),
            json!("RegisteredNode"),
            json!("node"),
            json!(""),
            json!(""),
            json!("registered"),
            json!("30s"),
            json!(1),
            json!("n.1"),
        ]
    );
    // New-style core event: eventTime, series, reporting controller and instance.
    let ev = json!({
        "metadata": {"name": "s.1"},
        "involvedObject": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet", "type": "Normal", "message": "Scaled up",
        "eventTime": "2024-05-01T11:00:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-05-01T11:59:00.123456Z"},
        "reportingComponent": "deployment-controller",
        "reportingController": "deployment-controller",
        "reportingInstance": "server-1",
        "source": {},
    });
    assert_eq!(
        row("", "Event", &ev),
        [
            json!("59s"),
            json!("Normal"),
            json!("ScalingReplicaSet"),
            json!("deployment/web"),
            json!(""),
            json!("deployment-controller, server-1"),
            json!("Scaled up"),
            json!("60m"),
            json!(4),
            json!("s.1"),
        ]
    );
    // Nothing known at all.
    let cells = row("", "Event", &json!({"metadata": {"name": "x"}}));
    assert_eq!(cells[0], "<unknown>");
    assert_eq!(cells[7], "<unknown>");
}

#[test]
fn printers_events_k8s_io_events() {
    let ev = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default", "creationTimestamp": ago(600)},
        "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "Pulled", "type": "Normal", "note": "  Container image pulled  ",
        "eventTime": null,
        "deprecatedSource": {"component": "kubelet", "host": "node-1"},
        "deprecatedFirstTimestamp": ago(600), "deprecatedLastTimestamp": ago(5),
        "deprecatedCount": 3,
        "reportingController": "kubelet", "reportingInstance": "node-1",
    });
    let want = [
        json!("5s"),
        json!("Normal"),
        json!("Pulled"),
        json!("pod/web"),
        json!("spec.containers{app}"),
        json!("kubelet, node-1"),
        json!("Container image pulled"),
        json!("10m"),
        json!(3),
        json!("web.1"),
    ];
    assert_eq!(row("events.k8s.io", "Event", &ev), want);
    // Source from the reporting controller and instance when the old source is unset.
    let ev = json!({
        "metadata": {"name": "x.1"},
        "regarding": {"kind": "Node", "name": "n"},
        "reason": "R", "type": "Normal", "note": "m",
        "eventTime": "2024-05-01T11:59:50.000000Z",
        "reportingController": "rudder/node-lifecycle", "reportingInstance": "",
    });
    assert_eq!(
        row("events.k8s.io", "Event", &ev),
        [
            json!("10s"),
            json!("Normal"),
            json!("R"),
            json!("node/n"),
            json!(""),
            json!("rudder/node-lifecycle"),
            json!("m"),
            json!("10s"),
            json!(1),
            json!("x.1"),
        ]
    );
}

// ---- storage, quotas, autoscaling -----------------------------------------------------------------

#[test]
fn printers_volumes_and_claims() {
    let pv = json!({
        "metadata": {"name": "pv-1", "creationTimestamp": ago(30)},
        "spec": {"capacity": {"storage": "1024Mi"},
                 "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                 "claimRef": {"namespace": "default", "name": "data"},
                 "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"},
    });
    assert_eq!(
        row("", "PersistentVolume", &pv),
        [
            "pv-1",
            "1Gi",
            "RWO,RWX",
            "Delete",
            "Bound",
            "default/data",
            "local-path",
            "<unset>",
            "",
            "30s",
            "Filesystem"
        ]
    );
    let pv = json!({
        "metadata": {"name": "pv-2", "deletionTimestamp": ago(1),
                     "annotations": {"volume.beta.kubernetes.io/storage-class": "beta"}},
        "spec": {"capacity": {"storage": "500M"}, "storageClassName": "ignored",
                 "volumeAttributesClassName": "gold"},
        "status": {"phase": "Failed", "reason": "Recycle"},
    });
    assert_eq!(
        row("", "PersistentVolume", &pv),
        [
            "pv-2",
            "500M",
            "",
            "Retain",
            "Terminating",
            "",
            "beta",
            "gold",
            "Recycle",
            "<unknown>",
            "Filesystem"
        ]
    );
    let bound = json!({
        "metadata": {"name": "data", "creationTimestamp": ago(30)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "local-path", "volumeName": "pv-1",
                 "volumeMode": "Block"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadWriteOncePod"],
                   "capacity": {"storage": "1536Mi"}},
    });
    assert_eq!(
        row("", "PersistentVolumeClaim", &bound),
        [
            "data",
            "Bound",
            "pv-1",
            "1536Mi",
            "RWO,RWOP",
            "local-path",
            "<unset>",
            "30s",
            "Block"
        ]
    );
    let pending = json!({
        "metadata": {"name": "wait"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    });
    assert_eq!(
        row("", "PersistentVolumeClaim", &pending),
        [
            "wait",
            "Pending",
            "",
            "",
            "",
            "",
            "<unset>",
            "<unknown>",
            "Filesystem"
        ]
    );
    let sc = json!({
        "metadata": {"name": "local-path", "creationTimestamp": ago(30),
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
    });
    assert_eq!(
        row("storage.k8s.io", "StorageClass", &sc),
        [
            json!("local-path (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false),
            json!("30s")
        ]
    );
    let sc = json!({"metadata": {"name": "fast"}, "provisioner": "x", "reclaimPolicy": "Retain",
                    "allowVolumeExpansion": true});
    assert_eq!(
        row("storage.k8s.io", "StorageClass", &sc)[..5],
        [
            json!("fast"),
            json!("x"),
            json!("Retain"),
            json!("Immediate"),
            json!(true)
        ]
    );
}

#[test]
fn printers_quantities_print_canonically() {
    let pv = |q: Value| {
        let obj = json!({"metadata": {"name": "p"}, "spec": {"capacity": {"storage": q}}});
        row("", "PersistentVolume", &obj)[1].clone()
    };
    for (given, want) in [
        (json!("1Gi"), "1Gi"),
        (json!("1024Mi"), "1Gi"),
        (json!("1536Mi"), "1536Mi"),
        (json!("1.5Gi"), "1536Mi"),
        (json!("0.5Gi"), "512Mi"),
        (json!("1025Ki"), "1025Ki"),
        (json!("512"), "512"),
        (json!("1000m"), "1"),
        (json!("1500m"), "1500m"),
        (json!("0.5"), "500m"),
        (json!("1.5"), "1500m"),
        (json!("100m"), "100m"),
        (json!("2000"), "2k"),
        (json!("10G"), "10G"),
        (json!("12e6"), "12e6"),
        (json!("1e3"), "1e3"),
        (json!("0"), "0"),
        (json!("0Gi"), "0"),
        (json!(5), "5"),
        (json!("0.0000000001"), "1n"),
        (json!("not-a-quantity"), "not-a-quantity"),
        (Value::Null, "0"),
    ] {
        assert_eq!(pv(given.clone()), want, "{given}");
    }
}

#[test]
fn printers_resource_quotas_and_pdbs() {
    let quota = json!({
        "metadata": {"name": "compute", "creationTimestamp": ago(30)},
        "status": {
            "hard": {"requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2",
                     "limits.memory": "2Gi", "pods": "10"},
            "used": {"requests.cpu": "500m", "requests.memory": "512Mi", "limits.cpu": "1",
                     "pods": "2"}},
    });
    assert_eq!(
        row("", "ResourceQuota", &quota),
        [
            "compute",
            "pods: 2/10, requests.cpu: 500m/1, requests.memory: 512Mi/1Gi",
            "limits.cpu: 1/2, limits.memory: 0/2Gi",
            "30s"
        ]
    );
    let pdb = json!({"metadata": {"name": "web", "creationTimestamp": ago(30)},
                     "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        row("policy", "PodDisruptionBudget", &pdb),
        [
            json!("web"),
            json!("2"),
            json!("N/A"),
            json!(1),
            json!("30s")
        ]
    );
    let pdb = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": "25%"}});
    assert_eq!(
        row("policy", "PodDisruptionBudget", &pdb)[1..4],
        [json!("N/A"), json!("25%"), json!(0)]
    );
}

#[test]
fn printers_horizontal_pod_autoscalers() {
    let v2 = json!({
        "apiVersion": "autoscaling/v2",
        "metadata": {"name": "web", "creationTimestamp": ago(30)},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 10,
                 "metrics": [
                     {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50}}},
                     {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
                     {"type": "Pods", "pods": {"metric": {"name": "qps"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}}]},
        "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 37, "averageValue": "120m"}}},
            {"type": "Resource", "resource": {"name": "memory",
                "current": {"averageValue": "300Mi"}}}]},
    });
    assert_eq!(
        row("autoscaling", "HorizontalPodAutoscaler", &v2),
        [
            json!("web"),
            json!("Deployment/web"),
            json!("cpu: 37%/50%, memory: 300Mi/1Gi + 1 more..."),
            json!("2"),
            json!(10),
            json!(3),
            json!("30s"),
        ]
    );
    // autoscaling/v1: the CPU target; before any measurement the current value is unknown.
    let v1 = json!({
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "api"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 5,
                 "targetCPUUtilizationPercentage": 80},
        "status": {"currentReplicas": 1},
    });
    assert_eq!(
        row("autoscaling", "HorizontalPodAutoscaler", &v1)[1..6],
        [
            json!("Deployment/api"),
            json!("cpu: <unknown>/80%"),
            json!("1"),
            json!(5),
            json!(1)
        ]
    );
    let mut measured = v1.clone();
    measured["status"]["currentCPUUtilizationPercentage"] = json!(12);
    assert_eq!(
        row("autoscaling", "HorizontalPodAutoscaler", &measured)[2],
        "cpu: 12%/80%"
    );
    // External and object metrics.
    let ext = json!({
        "metadata": {"name": "q"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3,
                 "metrics": [
                     {"type": "External", "external": {"metric": {"name": "queue"},
                        "target": {"type": "Value", "value": "30"}}},
                     {"type": "Object", "object": {"metric": {"name": "rps"},
                        "target": {"type": "AverageValue", "averageValue": "2k"}}}]},
        "status": {"currentMetrics": [
            {"type": "External", "external": {"current": {"value": "12"}}}]},
    });
    assert_eq!(
        row("autoscaling", "HorizontalPodAutoscaler", &ext)[2],
        "12/30, <unknown>/2k (avg)"
    );
}

#[test]
fn printers_scale_subresource() {
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "creationTimestamp": ago(30)},
        "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}});
    assert_eq!(
        row("autoscaling", "Scale", &scale),
        [json!("web"), json!(3), json!(2), json!("30s")]
    );
    assert_eq!(columns("autoscaling", "Scale")[0].format, "");
}
