//! Container probes as the kubelet runs them: startup, liveness and readiness, each an exec
//! command, an HTTP GET or a TCP connection, run every `periodSeconds` after
//! `initialDelaySeconds`, with `timeoutSeconds` to answer; a result changes only after
//! `successThreshold` successes or `failureThreshold` failures in a row. Until a startup probe
//! succeeds the others wait; a failed liveness or startup probe has the container killed (and
//! restarted as the pod's restartPolicy says); readiness decides the container's `ready`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use crate::runtime::Runtime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// One probe of one container instance.
#[derive(Debug)]
struct Tracker {
    container_id: String,
    next: Instant,
    successes: i32,
    failures: i32,
    /// The result as it stands: `None` until the first one that counts.
    ok: Option<bool>,
}

/// What the probes of a container decided in one round.
#[derive(Debug, Default)]
pub struct Verdict {
    /// A liveness or startup probe failed for good: the container is to be killed.
    pub kill: Option<Kind>,
    /// Probe failures to report (`Unhealthy` events): the probe and its output.
    pub failures: Vec<(Kind, String)>,
}

/// The probes of one pod's containers.
#[derive(Debug, Default)]
pub struct Probes {
    trackers: HashMap<(String, Kind), Tracker>,
}

/// Where a probe reaches the container.
pub struct Target<'a> {
    pub runtime: &'a Arc<dyn Runtime>,
    pub container_id: &'a str,
    /// The pod's address (the node's with host network).
    pub ip: Option<IpAddr>,
    /// The container's spec (for named ports).
    pub spec: &'a Container,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

impl Probes {
    /// Runs the probes of `target` that are due; `simulated` runtimes succeed every probe
    /// (and are not probed again once they have).
    pub async fn run(&mut self, target: &Target<'_>, simulated: bool) -> Verdict {
        let mut verdict = Verdict::default();
        let name = target.spec.name.clone();
        // A new instance starts over.
        self.trackers
            .retain(|(n, _), t| *n != name || t.container_id == target.container_id);
        for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
            let Some(probe) = kind.of(target.spec) else {
                continue;
            };
            if kind != Kind::Startup && !self.started(&name, target.spec) {
                continue;
            }
            let now = Instant::now();
            let tracker = self
                .trackers
                .entry((name.clone(), kind))
                .or_insert(Tracker {
                    container_id: target.container_id.to_string(),
                    next: now + secs(probe.initial_delay_seconds, 0),
                    successes: 0,
                    failures: 0,
                    ok: None,
                });
            if tracker.next > now || (simulated && tracker.ok == Some(true)) {
                continue;
            }
            let result = if simulated {
                Ok(())
            } else {
                check(probe, target).await
            };
            tracker.next =
                Instant::now() + secs(probe.period_seconds, 10).max(Duration::from_secs(1));
            match result {
                Ok(()) => {
                    tracker.failures = 0;
                    tracker.successes += 1;
                    if tracker.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                        tracker.ok = Some(true);
                    }
                }
                Err(output) => {
                    tracker.successes = 0;
                    tracker.failures += 1;
                    verdict.failures.push((kind, output));
                    if tracker.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                        tracker.ok = Some(false);
                        if kind != Kind::Readiness {
                            verdict.kill = Some(kind);
                            // Counted again from nothing for the next instance.
                            tracker.failures = 0;
                        }
                    }
                }
            }
        }
        verdict
    }

    /// Whether the container has started: no startup probe, or it succeeded.
    pub fn started(&self, name: &str, spec: &Container) -> bool {
        spec.startup_probe.is_none()
            || self
                .trackers
                .get(&(name.to_string(), Kind::Startup))
                .is_some_and(|t| t.ok == Some(true))
    }

    /// Whether the running container is ready: started, and its readiness probe (if any)
    /// succeeded last.
    pub fn ready(&self, name: &str, spec: &Container) -> bool {
        self.started(name, spec)
            && (spec.readiness_probe.is_none()
                || self
                    .trackers
                    .get(&(name.to_string(), Kind::Readiness))
                    .is_some_and(|t| t.ok == Some(true)))
    }

    /// When the next probe of any container is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.trackers.values().map(|t| t.next).min()
    }

    /// Forgets the probes of containers not named (gone from the pod or not running).
    pub fn keep_only(&mut self, running: &[&str]) {
        self.trackers
            .retain(|(n, _), _| running.contains(&n.as_str()));
    }
}

/// Runs a lifecycle hook (postStart, preStop) for at most `timeout`: `Ok` when it succeeded,
/// else what went wrong.
pub async fn run_hook(
    hook: &LifecycleHandler,
    target: &Target<'_>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        let d = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        tokio::time::sleep(d.min(timeout)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    check(&as_probe, target).await
}

/// Runs one probe once: `Ok` on success, else the output to report.
async fn check(probe: &Probe, target: &Target<'_>) -> Result<(), String> {
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match target
            .runtime
            .exec_sync(target.container_id, &command, timeout)
            .await
        {
            Ok((0, _)) => Ok(()),
            Ok((_, output)) => Err(String::from_utf8_lossy(&output).trim_end().to_string()),
            Err(e) => Err(e.to_string()),
        };
    }
    let port_of = |p: &IntOrString| -> Result<u16, String> {
        match p {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => target
                .spec
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}")),
        }
    };
    let ip = target
        .ip
        .ok_or_else(|| "the pod has no address yet".to_string());
    if let Some(tcp) = &probe.tcp_socket {
        let host = match &tcp.host {
            Some(h) if !h.is_empty() => h.clone(),
            _ => ip?.to_string(),
        };
        let port = port_of(&tcp.port)?;
        let addr = join_host_port(&host, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", error_text(&e))),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        let host = match &http.host {
            Some(h) if !h.is_empty() => h.clone(),
            _ => ip?.to_string(),
        };
        let port = port_of(&http.port)?;
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let path = http.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let url = format!("{scheme}://{}{path}", join_host_port(&host, port));
        return match tokio::time::timeout(timeout, http_get(&url, http)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
            Err(_) => Err(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by this agent yet".into());
    }
    Err("the probe has no handler (exec, httpGet, tcpSocket)".into())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error as Go's net package words the common ones.
fn error_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "no route to host".into(),
        _ => e.to_string(),
    }
}

/// One GET with the probe's headers (the kubelet's User-Agent unless given); HTTPS
/// certificates are not checked, as the kubelet does not check them. The status code.
async fn http_get(
    url: &str,
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
) -> Result<u16, String> {
    use http_body_util::Empty;
    let tls = rudder_api::tls::client_without_verification(None).map_err(|e| e.to_string())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<bytes::Bytes>>(connector);
    let mut req = http::Request::get(url);
    let mut agent = false;
    for h in http.http_headers.iter().flatten() {
        agent |= h.name.eq_ignore_ascii_case("user-agent");
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    if !agent {
        req = req.header(
            "User-Agent",
            concat!("kube-probe/", env!("CARGO_PKG_VERSION")),
        );
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = s.to_string();
            source = s.source();
        }
        why
    })?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HTTPGetAction, TCPSocketAction};

    fn container(probe: Probe) -> Container {
        Container {
            name: "c".into(),
            readiness_probe: Some(probe.clone()),
            liveness_probe: Some(probe),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn tcp_and_http_probes_reach_the_pod_and_failures_count_to_the_threshold() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A tiny HTTP server: /ok answers 200, anything else 503.
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let code = if head.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let runtime: Arc<dyn Runtime> = Arc::new(crate::fake::Fake::new());
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(2),
            ..Default::default()
        };
        let spec = container(probe("/ok"));
        let target = Target {
            runtime: &runtime,
            container_id: "id",
            ip: Some("127.0.0.1".parse().unwrap()),
            spec: &spec,
        };
        let mut probes = Probes::default();
        assert!(!probes.ready("c", &spec));
        let v = probes.run(&target, false).await;
        assert!(v.kill.is_none() && v.failures.is_empty(), "{v:?}");
        assert!(probes.ready("c", &spec));

        let spec = container(probe("/bad"));
        let target = Target {
            spec: &spec,
            container_id: "id2",
            ..target
        };
        let mut probes = Probes::default();
        let v = probes.run(&target, false).await;
        assert_eq!(v.failures.len(), 2, "{v:?}");
        assert_eq!(v.failures[0].1, "HTTP probe failed with statuscode: 503");
        assert!(v.kill.is_none());
        // Not due again before its period.
        assert!(probes.run(&target, false).await.failures.is_empty());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let v = probes.run(&target, false).await;
        assert_eq!(v.kill, Some(Kind::Liveness), "{v:?}");
        assert!(!probes.ready("c", &spec));

        // A port nothing listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(closed_port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = Container {
            name: "t".into(),
            readiness_probe: Some(tcp),
            ..Default::default()
        };
        let target = Target {
            spec: &spec,
            container_id: "id3",
            ..target
        };
        let v = probes.run(&target, false).await;
        assert_eq!(
            v.failures[0].1,
            format!("dial tcp 127.0.0.1:{closed_port}: connect: connection refused")
        );
        // The fake runtime's probes succeed.
        let mut fake = Probes::default();
        assert!(fake.run(&target, true).await.failures.is_empty());
        assert!(fake.ready("t", &spec));
    }
}
