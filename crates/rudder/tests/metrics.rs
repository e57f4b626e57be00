//! The scheduler's and the controllers' metrics through the real binary: inside `rudder
//! server` on the API server's `/metrics` (read with `kubectl get --raw /metrics`), and from
//! the standalone `rudder scheduler` and `rudder controllers` on their own
//! `--metrics-bind-address` (with `/healthz`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder_testkit::RudderServer;
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of the sample `series` (name and labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of `name` whose labels include `labels` (`a="b"` pairs).
fn total(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|want| rest.contains(want))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Every family is described once: the parts of the document do not overlap.
fn assert_families_unique(text: &str) {
    let mut seen = HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(l.to_string()), "described twice: {l}");
    }
}

fn server_metrics(s: &RudderServer) -> String {
    s.kubectl(&["get", "--raw", "/metrics"]).ok()
}

/// A plain-HTTP GET of `path` on `port`: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    // Small answers may come chunked: keep the text, drop the chunk sizes.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn bound_pods(s: &RudderServer) -> usize {
    let v: Value =
        serde_json::from_str(&s.kubectl(&["get", "pods", "-A", "-o", "json"]).ok()).expect("json");
    v["items"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["spec"]["nodeName"].is_string())
                .count()
        })
        .unwrap_or(0)
}

/// A `rudder` child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standalone(what: &str, s: &RudderServer, port: u16) -> Proc {
    let child = Command::new(bin())
        .arg(what)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start rudder {what}: {e}"));
    Proc(child)
}

#[test]
fn the_servers_metrics_count_scheduling_attempts_and_controller_work() {
    let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
        .expect("start rudder server");
    s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=90s"])
        .ok();
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ])
    .ok();
    s.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=90s",
    ])
    .ok();
    // A pod that fits nowhere.
    s.kubectl(&[
        "run",
        "huge",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"huge","image":"nginx","resources":{"requests":{"cpu":"1000"}}}]}}"#,
    ])
    .ok();

    let mut text = String::new();
    eventually(
        "the scheduler's and controllers' metrics count the work",
        || {
            text = server_metrics(&s);
            let scheduled = sample(
                &text,
                r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"}"#,
            );
            // Every bound pod was scheduled once, through a successful attempt.
            scheduled == Some(bound_pods(&s) as f64)
                && scheduled >= Some(3.0)
                && sample(
                    &text,
                    r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="unschedulable"}"#,
                ) >= Some(1.0)
                && sample(&text, r#"scheduler_pending_pods{queue="unschedulable"}"#) == Some(1.0)
                && sample(&text, r#"workqueue_adds_total{name="replicaset"}"#) > Some(0.0)
                && sample(&text, r#"workqueue_adds_total{name="deployment"}"#) > Some(0.0)
                && sample(
                    &text,
                    r#"rudder_controller_pass_duration_seconds_count{controller="node-lifecycle-controller"}"#,
                ) > Some(0.0)
        },
    );
    assert_families_unique(&text);
    // The server's own metrics are still there, first.
    assert!(text.starts_with("# HELP apiserver_"), "{}", &text[..200]);
    assert!(sample(&text, "process_open_fds").is_some());
    for series in [
        r#"scheduler_pending_pods{queue="active"}"#,
        r#"scheduler_pending_pods{queue="backoff"}"#,
        r#"workqueue_depth{name="replicaset"}"#,
        r#"workqueue_retries_total{name="replicaset"}"#,
        r#"workqueue_unfinished_work_seconds{name="replicaset"}"#,
        r#"workqueue_longest_running_processor_seconds{name="replicaset"}"#,
    ] {
        assert!(sample(&text, series).is_some(), "{series} in\n{text}");
    }
    for (name, labels) in [
        (
            "scheduler_scheduling_attempt_duration_seconds_count",
            &[r#"result="scheduled""#][..],
        ),
        ("scheduler_scheduling_algorithm_duration_seconds_count", &[]),
        ("scheduler_pod_scheduling_sli_duration_seconds_count", &[]),
        ("scheduler_pod_scheduling_attempts_count", &[]),
        (
            "workqueue_work_duration_seconds_count",
            &[r#"name="replicaset""#],
        ),
        (
            "workqueue_queue_duration_seconds_count",
            &[r#"name="deployment""#],
        ),
        (
            "controller_runtime_reconcile_total",
            &[r#"controller="replicaset""#],
        ),
        ("workqueue_adds_total", &[r#"name="namespace""#]),
        ("workqueue_adds_total", &[r#"name="serviceaccount""#]),
    ] {
        assert!(
            total(&text, name, labels) > 0.0,
            "{name}{labels:?} in\n{text}"
        );
    }
    // Three pods, each bound on its first attempt or later: the SLI saw every one.
    assert!(
        total(
            &text,
            "scheduler_pod_scheduling_sli_duration_seconds_count",
            &[]
        ) >= 3.0
    );
    assert!(text.contains("# TYPE workqueue_adds_total counter"));
    assert!(text.contains("# TYPE scheduler_scheduling_attempt_duration_seconds histogram"));
}

#[test]
fn standalone_scheduler_and_controllers_serve_their_metrics() {
    let s = RudderServer::start(
        bin(),
        &[
            "--node-name",
            "box",
            "--node-ip",
            "127.0.0.1",
            "--disable-scheduler",
            "--disable-controller-manager",
        ],
    )
    .expect("start rudder server");
    let (sched_port, ctrl_port) = (free_port(), free_port());
    let _sched = standalone("scheduler", &s, sched_port);
    let _ctrl = standalone("controllers", &s, ctrl_port);
    eventually("both listeners answer /healthz", || {
        http_get(sched_port, "/healthz") == Some((200, "ok".into()))
            && http_get(ctrl_port, "/healthz") == Some((200, "ok".into()))
    });
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ])
    .ok();

    let (mut sched, mut ctrl) = (String::new(), String::new());
    eventually("the standalone processes count the work", || {
        sched = http_get(sched_port, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        ctrl = http_get(ctrl_port, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        sample(
            &sched,
            r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"}"#,
        ) == Some(2.0)
            && bound_pods(&s) == 2
            && sample(&ctrl, r#"workqueue_adds_total{name="replicaset"}"#) > Some(0.0)
            && total(
                &ctrl,
                "controller_runtime_reconcile_total",
                &[r#"controller="deployment""#],
            ) > 0.0
    });
    assert_families_unique(&sched);
    assert_families_unique(&ctrl);
    // Each serves its own metrics and the process's, nothing of the other's or the server's.
    assert!(sample(&sched, "process_start_time_seconds").is_some());
    assert!(sample(&ctrl, "process_start_time_seconds").is_some());
    assert!(!sched.contains("workqueue_"), "{sched}");
    assert!(!ctrl.contains("scheduler_"), "{ctrl}");
    assert!(!sched.contains("apiserver_") && !ctrl.contains("apiserver_"));
    // The server runs neither: its /metrics has neither.
    let server = server_metrics(&s);
    assert!(!server.contains("scheduler_schedule_attempts"), "{server}");
    assert!(!server.contains("workqueue_"), "{server}");
    assert!(server.contains("apiserver_request_total"));
    let (code, _) = http_get(sched_port, "/nonsense").expect("an answer");
    assert_eq!(code, 404);
}
