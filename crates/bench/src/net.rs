//! `rudder-bench net`: the service proxy and the cluster DNS on a real node (`rudder agent
//! --runtime cri`), all in a network namespace the benchmark makes (no packet leaves it):
//!
//! - HTTP through a Service's cluster IP against the pod's own address, interleaved in the
//!   same run: latency of small GETs (p50, p99) and throughput of large ones, as ratios;
//! - the time from an EndpointSlice change to the new rules in force with N Services of M
//!   endpoints each (selector-less Services with EndpointSlices written by the benchmark), seen
//!   by polling nft for the new endpoint's chain;
//! - DNS queries per second and their p99 at the cluster DNS address (10.43.0.10, through the
//!   proxy to the node's own DNS), from concurrent UDP clients.
//!
//! Needs root, containerd and nft.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rudder_testkit::RudderServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{client_of, wait_for};
use crate::pods::{start_cri_agent, wait_node_ready};

const IMAGE: &str = "rudder.local/bench/httpd:1";
const NODE_IP: &str = "192.168.77.1";
const NAMESPACE: &str = "bench-net";
/// The large file's size, MiB.
const BLOB_MIB: usize = 16;

pub struct Options {
    pub rudder: PathBuf,
    pub services: usize,
    pub endpoints: usize,
    pub changes: usize,
    pub requests: usize,
}

/// Moves the calling thread, and what it starts later, into a network namespace of its own
/// where the node's address is [`NODE_IP`]. Call before starting a runtime.
pub fn enter_netns() -> Result<()> {
    rudder_testkit::enter_node_netns(NODE_IP)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `GET path` over HTTP/1.0 at `addr`: the bytes of the answer.
async fn get(addr: SocketAddr, path: &str) -> Result<usize> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .context("read timed out")??;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// A DNS query for `name` (type A) with the given ID.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

pub async fn net(opts: &Options) -> Result<()> {
    let server = RudderServer::start(&opts.rudder, &["--disable-agent"])?;
    let client = client_of(&server).await?;
    let busybox = std::fs::read("/bin/busybox").context("/bin/busybox (busybox-static)")?;
    let image =
        rudder_agent::image::busybox_archive(IMAGE, busybox, &["sh", "mkdir", "httpd", "dd"])?;
    let _agent = start_cri_agent(&opts.rudder, &server, NODE_IP, &[("httpd", image)], &[])?;
    wait_node_ready(&client).await?;

    // --- Traffic: one pod, one Service.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let script = format!(
        "mkdir -p /www && echo hello > /www/index.html && \
         dd if=/dev/zero of=/www/blob bs=1M count={BLOB_MIB} 2>/dev/null && \
         exec httpd -f -p 8080 -h /www"
    );
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "httpd", "image": IMAGE,
                                     "command": ["sh", "-c", script]}]}}))?,
    )
    .await?;
    let svc = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"port": 80, "targetPort": 8080}]}}))?,
        )
        .await?;
    let cluster_ip: Ipv4Addr = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no cluster IP")?
        .parse()?;
    let by_service = SocketAddr::from((cluster_ip, 80));
    wait_for(
        "the pod answering through its Service",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async { Ok(get(by_service, "/index.html").await.is_ok()) },
    )
    .await?;
    let pod_ip: Ipv4Addr = pods
        .get("web")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .context("no pod IP")?
        .parse()?;
    let direct = SocketAddr::from((pod_ip, 8080));
    let (mut lat_direct, mut lat_service) = (Vec::new(), Vec::new());
    for _ in 0..opts.requests {
        for (addr, out) in [(direct, &mut lat_direct), (by_service, &mut lat_service)] {
            let t = Instant::now();
            get(addr, "/index.html").await?;
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (lat_direct, lat_service) = (sorted(lat_direct), sorted(lat_service));
    let (mut bytes_direct, mut bytes_service) = ((0usize, 0f64), (0usize, 0f64));
    for _ in 0..10 {
        for (addr, acc) in [
            (direct, &mut bytes_direct),
            (by_service, &mut bytes_service),
        ] {
            let t = Instant::now();
            acc.0 += get(addr, "/blob").await?;
            acc.1 += t.elapsed().as_secs_f64();
        }
    }
    let mib_s = |(b, s): (usize, f64)| b as f64 / 1_048_576.0 / s;
    let (tp_direct, tp_service) = (mib_s(bytes_direct), mib_s(bytes_service));

    // --- DNS through the cluster DNS address.
    let dns = SocketAddr::from(([10, 43, 0, 10], 53));
    let clients = 8;
    let window = Duration::from_secs(5);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
                sock.connect(dns).await?;
                let mut lat = Vec::new();
                let mut buf = [0u8; 1500];
                let mut id = (c as u16) << 12;
                while started.elapsed() < window {
                    id = id.wrapping_add(1);
                    let q = dns_query(id, "web.default.svc.cluster.local");
                    let t = Instant::now();
                    sock.send(&q).await?;
                    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
                        .await
                        .context("DNS query unanswered")??;
                    if n < 12 || buf[..2] != id.to_be_bytes() || buf[3] & 0x0f != 0 {
                        bail!("bad DNS answer");
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut dns_lat = Vec::new();
    for t in tasks {
        dns_lat.extend(t.await??);
    }
    let dns_qps = dns_lat.len() as f64 / started.elapsed().as_secs_f64();
    let dns_lat = sorted(dns_lat);

    // --- Rule sync with many Services.
    let (sync_initial, sync) = rule_sync(&client, opts).await?;
    let sync = sorted(sync);

    println!("\n## net: service proxy and cluster DNS on one node (in a network namespace)\n");
    println!("| measurement | through the Service | pod address | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| GET latency p50 (ms, {} each) | {:.3} | {:.3} | {:.2} |",
        opts.requests,
        percentile(&lat_service, 0.5),
        percentile(&lat_direct, 0.5),
        percentile(&lat_direct, 0.5) / percentile(&lat_service, 0.5)
    );
    println!(
        "| GET latency p99 (ms) | {:.3} | {:.3} | {:.2} |",
        percentile(&lat_service, 0.99),
        percentile(&lat_direct, 0.99),
        percentile(&lat_direct, 0.99) / percentile(&lat_service, 0.99)
    );
    println!(
        "| throughput ({BLOB_MIB} MiB GETs, MiB/s) | {tp_service:.0} | {tp_direct:.0} | {:.2} |",
        tp_service / tp_direct
    );
    println!("\n| measurement | value |\n|---|---|");
    println!(
        "| {} Services × {} endpoints: all rules in force after the last create | {:.2} s |",
        opts.services, opts.endpoints, sync_initial
    );
    println!(
        "| EndpointSlice change → rules in force, p50 / p99 / max ({} changes) | {:.0} / {:.0} / {:.0} ms |",
        sync.len(),
        percentile(&sync, 0.5) * 1e3,
        percentile(&sync, 0.99) * 1e3,
        sync.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    println!(
        "| DNS at the cluster DNS address, {clients} clients: queries/s, p50 / p99 | {dns_qps:.0} q/s, {:.3} / {:.3} ms |",
        percentile(&dns_lat, 0.5),
        percentile(&dns_lat, 0.99)
    );
    Ok(())
}

/// The nft listing of chain `chain` in Rudder's table (empty when it does not exist).
fn nft_chain(chain: &str) -> String {
    Command::new("nft")
        .args(["list", "chain", "inet", "rudder", chain])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Endpoint `e` of Service `s`: an address of its own in 172.16.0.0/12.
fn endpoint_ip(s: usize, e: usize, per: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + (s * per + e) as u32)
}

fn slice_of(s: usize, eps: &[Ipv4Addr]) -> Result<EndpointSlice> {
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|ip| serde_json::json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{s}"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": format!("s{s}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints}))?)
}

/// Creates the Services and their EndpointSlices, waits for the last one's rules, then changes
/// one endpoint of a Service at a time and times each until its new chain is in force: the
/// seconds to the whole set in force, and each change's seconds.
async fn rule_sync(client: &kube::Client, opts: &Options) -> Result<(f64, Vec<f64>)> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let per = opts.endpoints;
    futures::stream::iter(0..opts.services)
        .map(|s| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let svc: Service = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("s{s}")},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))?;
                services.create(&PostParams::default(), &svc).await?;
                let eps: Vec<Ipv4Addr> = (0..per).map(|e| endpoint_ip(s, e, per)).collect();
                slices
                    .create(&PostParams::default(), &slice_of(s, &eps)?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    let created = Instant::now();
    let last = opts.services - 1;
    let last_ep = format!(
        "ep/{NAMESPACE}/s{last}/tcp/80/{}/8080",
        endpoint_ip(last, per - 1, per)
    );
    wait_for(
        "the last Service's rules",
        Duration::from_secs(300),
        Duration::from_millis(20),
        || async { Ok(nft_chain(&format!("svc/{NAMESPACE}/s{last}/tcp/80")).contains(&last_ep)) },
    )
    .await?;
    let initial = created.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for k in 0..opts.changes.min(opts.services) {
        let mut eps: Vec<Ipv4Addr> = (0..per).map(|e| endpoint_ip(k, e, per)).collect();
        let new = endpoint_ip(opts.services + k, 0, per);
        eps[0] = new;
        let patch = serde_json::to_value(slice_of(k, &eps)?)?;
        let chain = format!("svc/{NAMESPACE}/s{k}/tcp/80");
        let want = format!("ep/{NAMESPACE}/s{k}/tcp/80/{new}/8080");
        let t = Instant::now();
        slices
            .patch(
                &format!("s{k}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        wait_for(
            "the changed endpoint's rules",
            Duration::from_secs(60),
            Duration::from_millis(5),
            || async { Ok(nft_chain(&chain).contains(&want)) },
        )
        .await?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((initial, times))
}
