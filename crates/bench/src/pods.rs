//! `rudder-bench pod-start`: real containers on one node (`rudder agent --runtime cri`, its own
//! containerd), a busybox image made on the node (no registry): pods created one after another,
//! creation to Running, against `ctr run` of the same image on the same containerd; the agent's
//! RSS idle and with the pods; and the operations users time on Docker Swarm (a 3-replica
//! Deployment to all Running, scale 3 → 10, a rolling update of 10). Needs root and containerd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rudder_testkit::RudderServer;

use crate::cluster::{client_of, wait_for};

const IMAGE: &str = "rudder.local/bench/busybox:1";
const IMAGE2: &str = "rudder.local/bench/busybox:2";
const CTR_NAMESPACE: &str = "rudder-bench";

pub struct Options {
    pub rudder: PathBuf,
    pub pods: usize,
}

/// A benchmark's agent: its process and its data dir. On drop its pods are removed through
/// the CRI (containers outlive their agent), it is stopped with SIGTERM (so that it stops its
/// containerd), what its pods left mounted is unmounted (a kubelet leaves tmpfs volumes too),
/// and then its data dir goes.
pub struct AgentGuard {
    pub process: Child,
    dir: tempfile::TempDir,
}

impl AgentGuard {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its containerd's socket.
    pub fn socket(&self) -> PathBuf {
        rudder_agent::containerd::Layout::new(self.dir().join("agent/containerd")).socket()
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let socket = self.socket();
        // A runtime of its own, on a thread of its own: this may be dropped inside another.
        let removed = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let cri = rudder_agent::cri::Cri::connect(&socket).await?;
                cri.remove_all_sandboxes().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if let Ok(Err(e)) = removed {
            eprintln!("the benchmark node's pods were not removed: {e}");
        }
        rudder_testkit::terminate(&mut self.process, Duration::from_secs(20));
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if Path::new(point).starts_with(self.dir.path()) {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
    }
}

fn busybox(name: &str) -> Result<Vec<u8>> {
    let data = std::fs::read("/bin/busybox").context("/bin/busybox (Debian busybox-static)")?;
    Ok(rudder_agent::image::busybox_archive(
        name,
        data,
        &["sh", "sleep"],
    )?)
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pod-start"}},
        "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}
    }))?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// A `rudder agent --runtime cri` named `bench-node` at `node_ip`, joined to `server`, with
/// `images` (name, archive) in its images folder and the `extra` flags (its log is `agent.log`
/// in its data dir).
pub fn start_cri_agent(
    rudder: &Path,
    server: &RudderServer,
    node_ip: &str,
    images: &[(&str, Vec<u8>)],
    extra: &[&str],
) -> Result<AgentGuard> {
    let token = server.node_token()?;
    let dir = tempfile::Builder::new()
        .prefix("rudder-bench-agent-")
        .tempdir_in("/var/tmp")?;
    let folder = dir.path().join("agent/images");
    std::fs::create_dir_all(&folder)?;
    for (name, archive) in images {
        std::fs::write(folder.join(format!("{name}.tar")), archive)?;
    }
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let process = Command::new(rudder)
        .args(["agent", "--server", &server.url, "--token", token.trim()])
        .args(["--node-name", "bench-node", "--node-ip", node_ip])
        .args(["--kubelet-port", "0", "--cluster-dns-port", "0"])
        .args(["--runtime", "cri"])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RUDDER_TOKEN")
        .env_remove("RUDDER_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start rudder agent")?;
    Ok(AgentGuard { process, dir })
}

/// Waits until `bench-node` is Ready and pods can be made in `default` (its ServiceAccount).
pub async fn wait_node_ready(client: &kube::Client) -> Result<()> {
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    wait_for(
        "the node Ready and the default account",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            let ready = nodes.get_opt("bench-node").await?.is_some_and(|n| {
                n.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok(ready && sa.get_opt("default").await?.is_some())
        },
    )
    .await?;
    Ok(())
}

pub async fn pod_start(opts: &Options) -> Result<()> {
    let server = RudderServer::start(&opts.rudder, &["--disable-agent"])?;
    let client = client_of(&server).await?;
    // The proxy is not what is measured, and this runs in the machine's own network.
    let agent = start_cri_agent(
        &opts.rudder,
        &server,
        "127.0.0.1",
        &[
            ("busybox-1", busybox(IMAGE)?),
            ("busybox-2", busybox(IMAGE2)?),
        ],
        &["--disable-proxy", "--pod-network", "none"],
    )?;
    let agent_pid = agent.process.id();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_node_ready(&client).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss = rss_mib(agent_pid)?;

    // Pods one after another: creation to Running, seen through a watch.
    let (tx, mut running) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn({
        let pods = pods.clone();
        async move {
            let mut seen = std::collections::HashSet::new();
            let mut events = std::pin::pin!(watcher::watcher(
                pods,
                watcher::Config::default().labels("bench=pod-start")
            ));
            while let Some(e) = events.next().await {
                let list = match e {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
                    _ => continue,
                };
                for p in list {
                    let up = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if up && seen.insert(name.clone()) {
                        let _ = tx.send((name, Instant::now()));
                    }
                }
            }
        }
    });
    let mut rudder_times = Vec::new();
    let mut early: HashMap<String, Instant> = HashMap::new();
    for i in 0..opts.pods {
        let name = format!("p{i}");
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)?).await?;
        let at = loop {
            if let Some(at) = early.remove(&name) {
                break at;
            }
            let (n, at) = tokio::time::timeout(Duration::from_secs(120), running.recv())
                .await
                .with_context(|| format!("{name} Running"))?
                .context("the watch ended")?;
            if n == name {
                break at;
            }
            early.insert(n, at);
        };
        rudder_times.push(at.duration_since(started).as_secs_f64());
    }
    watch.abort();
    let busy_rss = rss_mib(agent_pid)?;
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("bench=pod-start"),
    )
    .await?;
    pods_gone(&pods, "bench=pod-start").await?;

    // The same pod through the CRI alone (no API server, no scheduler, no agent), then the
    // same image with ctr, on the same containerd, one after another.
    let cri_times = cri_runs(
        &agent.socket(),
        &agent.dir().join("bench-cri-logs"),
        opts.pods,
    )
    .await?;
    let raw_times = ctr_runs(&agent.socket(), opts.pods)?;

    // Docker Swarm's everyday operations.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "main", "image": IMAGE,
                                                       "command": ["sleep", "3600"]}]}}}
    }))?;
    let settled = |want: i32| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await?;
                let gen = d.metadata.generation;
                let s = d.status.unwrap_or_default();
                Ok(s.observed_generation == gen
                    && s.replicas == Some(want)
                    && s.updated_replicas == Some(want)
                    && s.ready_replicas == Some(want)
                    && s.available_replicas == Some(want))
            }
        }
    };
    let t = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    wait_for(
        "3 replicas Running",
        Duration::from_secs(300),
        Duration::from_millis(20),
        settled(3),
    )
    .await?;
    let create3 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 10}})),
        )
        .await?;
    wait_for(
        "10 replicas Running",
        Duration::from_secs(300),
        Duration::from_millis(20),
        settled(10),
    )
    .await?;
    let scale10 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let image = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": IMAGE2}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(image))
        .await?;
    wait_for(
        "the rolling update done",
        Duration::from_secs(600),
        Duration::from_millis(20),
        settled(10),
    )
    .await?;
    let rollout = t.elapsed().as_secs_f64();
    deployments.delete("web", &DeleteParams::default()).await?;
    pods_gone(&pods, "app=web").await?;
    // What the agent has not removed yet goes through the CRI as it stops.
    drop(agent);

    let mut r = rudder_times.clone();
    r.sort_by(f64::total_cmp);
    let mut c = raw_times.clone();
    c.sort_by(f64::total_cmp);
    let mut floor = cri_times.clone();
    floor.sort_by(f64::total_cmp);
    let ms = |v: f64| format!("{:.0} ms", v * 1000.0);
    let n = opts.pods;
    let rows = [
        [
            "pod start (one node, present image)",
            "rudder",
            "ctr run",
            "ratio",
            "target",
        ],
        [
            &format!("{n} pods one after another, creation to Running, p50"),
            &ms(percentile(&r, 0.5)),
            &ms(percentile(&c, 0.5)),
            &format!("{:.2}x", percentile(&r, 0.5) / percentile(&c, 0.5)),
            "≤ 1.2x",
        ],
        [
            "p99",
            &ms(percentile(&r, 0.99)),
            &ms(percentile(&c, 0.99)),
            &format!("{:.2}x", percentile(&r, 0.99) / percentile(&c, 0.99)),
            "≤ 1.2x",
        ],
        [
            "the same pods through the CRI alone, p50",
            &ms(percentile(&floor, 0.5)),
            &ms(percentile(&c, 0.5)),
            &format!("{:.2}x", percentile(&floor, 0.5) / percentile(&c, 0.5)),
            "",
        ],
        [
            "p99",
            &ms(percentile(&floor, 0.99)),
            &ms(percentile(&c, 0.99)),
            &format!("{:.2}x", percentile(&floor, 0.99) / percentile(&c, 0.99)),
            "",
        ],
        [
            "rudder against the CRI alone, p50 / p99",
            &format!(
                "{:.2}x / {:.2}x",
                percentile(&r, 0.5) / percentile(&floor, 0.5),
                percentile(&r, 0.99) / percentile(&floor, 0.99)
            ),
            "",
            "",
            "",
        ],
        [
            "agent RSS idle / with the pods running",
            &format!("{idle_rss:.1} / {busy_rss:.1} MiB"),
            "",
            "",
            "≤ 25 MiB idle",
        ],
    ];
    crate::print_table(&rows);
    let rows = [
        [
            "operation (one node)",
            "rudder",
            "Docker Swarm 20.10",
            "ratio",
            "target",
        ],
        [
            "3-replica Deployment, create to all Running",
            &format!("{create3:.2} s"),
            "40 s",
            &format!("{:.3}x", create3 / 40.0),
            "≤ 2 s",
        ],
        [
            "scale 3 → 10, all Running",
            &format!("{scale10:.2} s"),
            "80 s",
            &format!("{:.3}x", scale10 / 80.0),
            "≤ 2 s",
        ],
        [
            "rolling update of 10",
            &format!("{rollout:.2} s"),
            "210 s",
            &format!("{:.3}x", rollout / 210.0),
            "≤ 10 s",
        ],
    ];
    crate::print_table(&rows);
    Ok(())
}

/// The benchmark's pod (host network, the bench image running `sleep 3600`) started `count`
/// times straight through the CRI of the containerd at `socket`, each timed from
/// RunPodSandbox to StartContainer's answer: what any orchestrator on the CRI pays for a pod,
/// two containers (the sandbox's pause and the pod's) where `ctr run` starts one. The
/// sandboxes are removed afterwards.
async fn cri_runs(socket: &Path, logs: &Path, count: usize) -> Result<Vec<f64>> {
    use rudder_agent::cri::{api, Cri};
    let cri = Cri::connect(socket).await?;
    let mut runtime = cri.runtime.clone();
    // The agent removes the deleted pods' sandboxes after the API shows them gone.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !runtime
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("the agent left pod sandboxes behind");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let host_network = || {
        Some(api::NamespaceOption {
            network: api::NamespaceMode::Node as i32,
            pid: api::NamespaceMode::Container as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        })
    };
    let mut times = Vec::new();
    let mut sandboxes = Vec::new();
    for i in 0..count {
        let dir = logs.join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: format!("cri-{i}"),
                uid: format!("bench-cri-{i}"),
                namespace: "bench".into(),
                attempt: 0,
            }),
            log_directory: dir.to_string_lossy().into_owned(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: host_network(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = Instant::now();
        let sandbox = runtime
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        sandboxes.push(sandbox.clone());
        let container = runtime
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(api::ContainerConfig {
                    metadata: Some(api::ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    }),
                    image: Some(api::ImageSpec {
                        image: IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: "main.log".into(),
                    linux: Some(api::LinuxContainerConfig {
                        security_context: Some(api::LinuxContainerSecurityContext {
                            namespace_options: host_network(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await?
            .into_inner()
            .container_id;
        runtime
            .start_container(api::StartContainerRequest {
                container_id: container,
            })
            .await?;
        times.push(t.elapsed().as_secs_f64());
    }
    for id in sandboxes {
        runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
        runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await?;
    }
    Ok(times)
}

/// `ctr run -d` of the bench image `count` times on the containerd at `socket`, each timed
/// (the command returns once the task runs); the containers are removed afterwards.
fn ctr_runs(socket: &Path, count: usize) -> Result<Vec<f64>> {
    let ctr = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", CTR_NAMESPACE])
            .args(args)
            .output()
            .context("ctr (installed with containerd)")
    };
    // The image, in ctr's namespace (the CRI's is another).
    let archive = socket.with_file_name("bench-image.tar");
    std::fs::write(&archive, busybox(IMAGE)?)?;
    let out = ctr(&["images", "import", archive.to_str().context("path")?])?;
    if !out.status.success() {
        bail!(
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut times = Vec::new();
    for i in 0..count {
        let id = format!("raw-{i}");
        let t = Instant::now();
        let out = ctr(&["run", "-d", "--net-host", IMAGE, &id, "sleep", "3600"])?;
        if !out.status.success() {
            bail!("ctr run: {}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(t.elapsed().as_secs_f64());
    }
    for i in 0..count {
        let id = format!("raw-{i}");
        let _ = ctr(&["tasks", "delete", "--force", &id]);
        let _ = ctr(&["containers", "delete", &id]);
    }
    Ok(times)
}

/// Waits until no pod has the labels of `selector`.
async fn pods_gone(pods: &Api<Pod>, selector: &str) -> Result<()> {
    wait_for(
        &format!("the pods {selector} gone"),
        Duration::from_secs(300),
        Duration::from_millis(200),
        || async {
            Ok(pods
                .list(&ListParams::default().labels(selector))
                .await?
                .items
                .is_empty())
        },
    )
    .await?;
    Ok(())
}
