//! Leader election: two servers on one etcd run the controllers with one active (the holder of
//! the `kube-controller-manager` Lease); when the leader is killed the other takes the Lease over
//! and its loops do the work. A standalone `rudder controllers` stopped cleanly hands the Lease
//! over at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder_testkit::{EtcdProcess, RudderServer};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// Short election times so that a take-over happens within the test's patience.
const FAST: [&str; 6] = [
    "--leader-elect-lease-duration",
    "3s",
    "--leader-elect-renew-deadline",
    "2s",
    "--leader-elect-retry-period",
    "500ms",
];

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (holder, transitions) of the controllers' Lease.
fn holder(s: &RudderServer) -> Option<(String, i64)> {
    let out = s.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "lease",
        "kube-controller-manager",
        "-o",
        "json",
    ]);
    if !out.out.status.success() {
        return None;
    }
    let lease: serde_json::Value = serde_json::from_str(&out.stdout()).ok()?;
    let h = lease["spec"]["holderIdentity"].as_str()?.to_string();
    Some((h, lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0)))
}

fn leads(s: &RudderServer) -> bool {
    s.log().contains("became leader")
}

/// A hand-made Node gets a podCIDR: the node IPAM loop of whoever leads is running.
fn gets_pod_cidr(s: &RudderServer, node: &str) -> String {
    s.kubectl_stdin(
        &["create", "-f", "-"],
        &format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{node}"}}}}"#),
    )
    .ok();
    wait_for(&format!("a podCIDR on {node}"), || {
        let cidr = s
            .kubectl(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"])
            .ok();
        (!cidr.trim().is_empty()).then(|| cidr.trim().to_string())
    })
}

#[test]
fn two_servers_on_one_etcd_run_the_controllers_once_and_fail_over() {
    let etcd = EtcdProcess::start().expect("etcd");
    let ep = etcd.endpoint();
    let mut args = vec!["--datastore-endpoint", &ep, "--disable-agent"];
    args.extend(FAST);
    let a = RudderServer::start(bin(), &args).expect("server a");
    wait_for("server a to lead", || leads(&a).then_some(()));
    let b = RudderServer::start(bin(), &args).expect("server b");
    let (first, transitions) = wait_for("the lease", || holder(&b));
    assert!(gets_pod_cidr(&b, "hand-made-1").starts_with("10.42."));
    // B keeps trying but does not lead while A renews.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!leads(&b), "both servers lead:\n{}", b.log());
    assert_eq!(holder(&b).map(|h| h.0), Some(first.clone()));

    // The leader dies without releasing: B takes over once the Lease has gone unrenewed.
    drop(a);
    let (second, after) = wait_for("server b to take the lease", || {
        holder(&b).filter(|(h, _)| *h != first)
    });
    assert!(leads(&b), "{}", b.log());
    assert_eq!(after, transitions + 1, "{second} took over");
    assert!(gets_pod_cidr(&b, "hand-made-2").starts_with("10.42."));
}

struct Controllers(Child);

impl Controllers {
    fn start(s: &RudderServer) -> Controllers {
        let child = Command::new(bin())
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(s.data_dir().join("kubeconfig.yaml"))
            .args(FAST)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rudder controllers");
        Controllers(child)
    }

    fn terminate(mut self) {
        let pid = self.0.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let status = self.0.wait().expect("wait");
        assert!(status.success(), "rudder controllers exited with {status}");
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_controllers_hand_the_lease_over_when_stopped() {
    let s = RudderServer::start(bin(), &["--disable-agent", "--disable-controller-manager"])
        .expect("server");
    let first = Controllers::start(&s);
    let (leader, transitions) = wait_for("a leader", || holder(&s));
    let second = Controllers::start(&s);
    assert!(gets_pod_cidr(&s, "hand-made-1").starts_with("10.42."));
    // A clean stop releases the Lease: the other takes it without waiting for it to expire.
    first.terminate();
    let (next, after) = wait_for("the second to lead", || {
        holder(&s).filter(|(h, _)| !h.is_empty() && *h != leader)
    });
    assert_eq!(after, transitions + 1, "{next} took over");
    assert!(gets_pod_cidr(&s, "hand-made-2").starts_with("10.42."));
    drop(second);
}
