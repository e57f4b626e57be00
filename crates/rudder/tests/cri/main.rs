//! Pods as real containers: `rudder agent --runtime cri` starts its own containerd, imports the
//! sandbox image it makes and the images in `<data-dir>/agent/images`, and runs the pods the
//! scheduler binds to it; kubectl sees them Running, and a container's exit code and reason.
//! Deleting the pods removes their containers and sandboxes from containerd. Needs root and
//! containerd, runc, containernetworking-plugins, iptables, nftables, iproute2 and
//! busybox-static (scripts/test installs them).
//!
//! This file holds what every test here shares (the agent, the cluster, the network namespace
//! helpers); the tests are grouped by what they prove:
//! - [`network`]: pod addresses, Services, the pod network across nodes, `rudder uninstall`;
//! - [`containers`]: restarts and back-off, probes, environment, hooks, volumes, limits, and
//!   containers outliving their agent;
//! - [`streams`]: exec, attach, port-forward, debug, top and logs through kubectl;
//! - [`images`]: pulls through mirrors and with secrets, and the Python client's e2e suites
//!   against stand-ins of Docker Hub's images.

mod containers;
mod images;
mod network;
mod streams;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder_agent::cri::{api, Cri};
use rudder_agent::image;
use rudder_testkit::RudderServer;
use serde_json::{json, Value};

const BUSYBOX: &str = "rudder.local/test/busybox:1";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// A busybox image from the host's static busybox.
fn busybox_archive() -> Vec<u8> {
    let data = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (Debian busybox-static; scripts/test installs it)");
    image::busybox_archive(
        BUSYBOX,
        data,
        &[
            "sh", "echo", "sleep", "mkdir", "httpd", "cat", "touch", "rm", "tty", "tar", "tail",
            "id", "ps", "wget", "nslookup", "hostname", "timeout",
        ],
    )
    .unwrap()
}

/// The agent process and its containerd's socket. On drop, whatever pods are left (a failed
/// test) are removed through the CRI, as containers outlive their agent; then the agent is
/// stopped with SIGTERM, so that it stops its containerd.
struct Agent(Child, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async {
                if let Ok(cri) = Cri::connect(&self.1).await {
                    let _ = cri.remove_all_sandboxes().await;
                }
            });
        }
        rudder_testkit::terminate(&mut self.0, Duration::from_secs(20));
        // The pods' tmpfs volumes stay mounted when an agent stops (as a kubelet's do), and
        // the test's data dir could not be removed with them.
        if let Some(data_dir) = self.1.ancestors().nth(3) {
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
                if Path::new(point).starts_with(data_dir) {
                    let _ = Command::new("umount").args(["-l", point]).status();
                }
            }
        }
    }
}

fn pod(name: &str, command: &str, restart: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"hostNetwork": true, "restartPolicy": restart,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": BUSYBOX,
                                    "command": ["sh", "-c", command]}]}})
    .to_string()
}

fn get(s: &RudderServer, what: &str) -> Value {
    serde_json::from_str(&s.kubectl(&["get", what, "-o", "json"]).ok()).unwrap()
}

/// Applies the pod `manifest` and waits until its first container runs.
fn start_pod(s: &RudderServer, log: &Path, manifest: &str) {
    let name = serde_json::from_str::<Value>(manifest).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    s.kubectl_stdin(&["apply", "-f", "-"], manifest).ok();
    eventually(&format!("{name} Running"), log, || running(s, &name));
}

/// Whether the first container of pod `name` runs.
fn running(s: &RudderServer, name: &str) -> bool {
    get(s, &format!("pod/{name}"))["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

/// Polls until `check` holds; the deadline only bounds a broken run.
fn eventually(what: &str, agent_log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "never happened: {what}; the agent's log:\n{}",
            std::fs::read_to_string(agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The CRI of an agent's containerd, read from a test (blocking).
struct CriView {
    rt: tokio::runtime::Runtime,
    cri: Cri,
}

impl CriView {
    fn of(agent_dir: &Path) -> CriView {
        CriView::at(&agent_dir.join("agent/containerd/containerd.sock"))
    }

    /// The CRI at `socket`.
    fn at(socket: &Path) -> CriView {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cri = rt.block_on(Cri::connect(socket)).unwrap();
        CriView { rt, cri }
    }

    fn containers(&self) -> Vec<api::Container> {
        self.rt
            .block_on(
                self.cri
                    .runtime
                    .clone()
                    .list_containers(api::ListContainersRequest { filter: None }),
            )
            .unwrap()
            .into_inner()
            .containers
    }

    fn sandboxes(&self) -> Vec<api::PodSandbox> {
        self.rt
            .block_on(
                self.cri
                    .runtime
                    .clone()
                    .list_pod_sandbox(api::ListPodSandboxRequest { filter: None }),
            )
            .unwrap()
            .into_inner()
            .items
    }
}

/// A `rudder agent --runtime cri` named `node` joined to `s` with the `extra` flags, with the
/// busybox image in its images folder and whatever `prepare` puts in its data dir: the data
/// dir, its log file and the process.
fn start_agent(
    s: &RudderServer,
    token: &str,
    node: &str,
    extra: &[&str],
    prepare: impl FnOnce(&Path),
) -> (tempfile::TempDir, PathBuf, Agent) {
    let dir = tempfile::Builder::new()
        .prefix("rudder-cri-agent-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let images = dir.path().join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("busybox.tar"), busybox_archive()).unwrap();
    prepare(dir.path());
    let (log, agent) = run_agent(s, token, node, dir.path(), extra);
    (dir, log, agent)
}

/// `rudder agent --runtime cri` as `node` on the data dir `dir` (appending to its log), with
/// the `extra` flags.
fn run_agent(
    s: &RudderServer,
    token: &str,
    node: &str,
    dir: &Path,
    extra: &[&str],
) -> (PathBuf, Agent) {
    let log = dir.join("agent.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let agent = Agent(
        Command::new(bin())
            .args(["agent", "--server", &s.url, "--token", token.trim()])
            .args(["--node-name", node])
            .args(["--kubelet-port", "0", "--cluster-dns-port", "0"])
            .args(
                (!extra.contains(&"--node-ip"))
                    .then_some(["--node-ip", "127.0.0.1"])
                    .into_iter()
                    .flatten(),
            )
            .args(["--runtime", "cri"])
            // The service proxy and the pod network write nftables rules and routes: only
            // where the test made the network.
            .args(
                (!in_own_netns())
                    .then_some(["--disable-proxy", "--pod-network", "none"])
                    .into_iter()
                    .flatten(),
            )
            .arg("--data-dir")
            .arg(dir)
            // Used when a test writes it.
            .arg("--private-registry")
            .arg(dir.join("registries.yaml"))
            .args(extra)
            .env_remove("RUDDER_TOKEN")
            .env_remove("RUDDER_URL")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
        dir.join("agent/containerd/containerd.sock"),
    );
    (log, agent)
}

/// A server without a node of its own and a `rudder agent --runtime cri` named `node` joined
/// to it, once pods can be created (the default ServiceAccount exists): the server, the
/// agent's data dir and log, and the agent.
fn cluster(node: &str) -> (RudderServer, tempfile::TempDir, PathBuf, Agent) {
    cluster_with(node, &[], |_| {})
}

/// [`cluster`], the agent started with `extra` flags after `prepare` wrote into its data dir.
fn cluster_with(
    node: &str,
    extra: &[&str],
    prepare: impl FnOnce(&Path),
) -> (RudderServer, tempfile::TempDir, PathBuf, Agent) {
    let s = RudderServer::start(bin(), &["--disable-agent"]).unwrap();
    let token = s.node_token().unwrap();
    let (dir, log, agent) = start_agent(&s, &token, node, extra, prepare);
    // Pods are admitted once their namespace's default ServiceAccount exists (its controller
    // makes it just after start, as upstream's does).
    eventually("the default service account", &log, || {
        s.kubectl(&["get", "serviceaccount", "default", "-o", "name"])
            .stdout()
            .contains("serviceaccount/default")
    });
    (s, dir, log, agent)
}

#[test]
fn pods_run_as_containers_through_the_agents_own_containerd() {
    let (s, dir, log, _agent) = cluster("cri-node");
    eventually("node Ready", &log, || {
        s.kubectl(&["get", "node", "cri-node", "-o", "json"])
            .stdout()
            .contains("\"KubeletReady\"")
    });
    let node = get(&s, "node/cri-node");
    let version = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap();
    assert!(version.starts_with("containerd://"), "{version}");

    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("sleeper", "echo started; sleep 3600", "Always"),
    )
    .ok();
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod("quitter", "echo bye; exit 3", "Never"),
    )
    .ok();
    eventually("sleeper Running", &log, || running(&s, "sleeper"));
    let sleeper = get(&s, "pod/sleeper");
    let st = &sleeper["status"]["containerStatuses"][0];
    assert!(
        st["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{st}"
    );
    assert_eq!(st["ready"], json!(true), "{st}");
    assert_eq!(sleeper["spec"]["nodeName"], json!("cri-node"));
    eventually("quitter Failed", &log, || {
        get(&s, "pod/quitter")["status"]["phase"] == "Failed"
    });
    let quitter = get(&s, "pod/quitter");
    let term = &quitter["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], json!(3), "{quitter}");
    assert_eq!(term["reason"], json!("Error"), "{quitter}");

    // Logs come from the node's own server, through the API server.
    assert_eq!(s.kubectl(&["logs", "sleeper"]).ok(), "started\n");
    assert_eq!(s.kubectl(&["logs", "quitter"]).ok(), "bye\n");
    let stamped = s.kubectl(&["logs", "quitter", "--timestamps"]).ok();
    assert!(stamped.ends_with("Z bye\n"), "{stamped:?}");
    assert_eq!(s.kubectl(&["logs", "sleeper", "--tail=0"]).ok(), "");
    let err = s.kubectl(&["logs", "quitter", "--previous"]).fails();
    assert!(
        err.contains("previous terminated container \"main\" in pod \"quitter\" not found"),
        "{err}"
    );
    // Followed, the log ends when the container does.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod(
            "counter",
            "sleep 1; for i in 1 2 3; do echo line $i; sleep 1; done",
            "Never",
        ),
    )
    .ok();
    eventually("counter started", &log, || running(&s, "counter"));
    assert_eq!(
        s.kubectl(&["logs", "-f", "counter"]).ok(),
        "line 1\nline 2\nline 3\n"
    );

    // containerd holds both pods' sandboxes and containers, labelled with their pods.
    let view = CriView::of(dir.path());
    let names: Vec<String> = view
        .containers()
        .iter()
        .map(|c| c.labels["io.kubernetes.pod.name"].clone())
        .collect();
    assert!(names.contains(&"sleeper".to_string()), "{names:?}");
    assert!(names.contains(&"quitter".to_string()), "{names:?}");
    assert!(names.contains(&"counter".to_string()), "{names:?}");

    s.kubectl(&[
        "delete",
        "pod",
        "sleeper",
        "quitter",
        "counter",
        "--timeout=60s",
    ])
    .ok();
    // The agent removes the containers, then the sandbox: both go, one after the other.
    eventually("containers and sandboxes removed", &log, || {
        view.containers().is_empty() && view.sandboxes().is_empty()
    });
}

/// A plain HTTP/1.0 GET of `/` from `addr`: the whole answer, head and body.
fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// Whether this thread runs in a network namespace a test made: another than the test
/// process's main thread's (pid 1's may not be readable).
fn in_own_netns() -> bool {
    let ns = |p: &str| std::fs::read_link(p).expect("read a network namespace link");
    ns("/proc/thread-self/ns/net") != ns("/proc/self/ns/net")
}

/// Runs `f` on a thread of its own in a new network namespace with its loopback up: the
/// processes it starts (server, agent, containerd, the pods and their bridge) live there, and
/// the namespace goes away with them. A panic in `f` fails the caller.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let t = std::thread::spawn(move || {
        // SAFETY: unshare(2) moves only this thread into a new network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip (Debian iproute2)");
        assert!(up.success(), "ip link set lo up: {up}");
        f()
    });
    t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// [`in_new_netns`], the namespace holding a node address `ip` with the default route
/// through it ([`rudder_testkit::enter_node_netns`]).
fn in_node_netns<T: Send + 'static>(ip: &'static str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let t = std::thread::spawn(move || {
        rudder_testkit::enter_node_netns(ip).unwrap();
        f()
    });
    t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The body of `GET /` at `addr`, if it answers.
fn body(addr: &str) -> Option<String> {
    let answer = http_get(addr).ok()?;
    Some(answer.split_once("\r\n\r\n")?.1.trim().to_string())
}

/// `ip ARGS`, which must succeed.
fn ip(args: &str) {
    let st = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip (Debian iproute2)");
    assert!(st.success(), "ip {args}: {st}");
}

/// What `program args` prints (it must succeed).
fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The waiting state of the pod's first container: reason and message.
fn waiting(s: &RudderServer, pod: &str) -> (String, String) {
    let p = get(s, &format!("pod/{pod}"));
    let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or_default().to_string(),
        w["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// The shell words of kubectl 1.`minor` with `s`'s kubeconfig.
fn kubectl_with(s: &RudderServer, minor: u32) -> String {
    let cmd = s.kubectl_cmd(minor);
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let kubeconfig = cmd
        .get_envs()
        .find(|(k, _)| *k == "KUBECONFIG")
        .and_then(|(_, v)| v)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap();
    words.push(format!("--kubeconfig={kubeconfig}"));
    words.join(" ")
}
