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
    if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port).map_err(|_| format!("invalid port {}", grpc.port))?;
        let addr = join_host_port(&ip?.to_string(), port);
        return grpc_check(&addr, grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    Err("the probe has no handler (exec, httpGet, tcpSocket, grpc)".into())
}

/// The gRPC health protocol's `Check` of `service` at `addr` (plain text, as the kubelet's
/// probe): success when it answers SERVING, else what the kubelet would say.
async fn grpc_check(addr: &str, service: &str, timeout: Duration) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid address {addr:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .map_err(|e| e.to_string())?;
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {}s: {e}",
                timeout.as_secs()
            ))
        }
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {}s: context deadline exceeded",
                timeout.as_secs()
            ))
        }
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(r) => {
            let status = r.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Ok(())
            } else {
                let name = ServingStatus::try_from(status)
                    .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_string());
                Err(format!("service unhealthy (responded with {name:?})"))
            }
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => Err(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Err(s)
            if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled =>
        {
            Err(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            ))
        }
        Err(s) => Err(format!("error: health rpc probe failed: {s}")),
    }
}

/// What probes call themselves, as the kubelet's `kube-probe/VERSION`.
const USER_AGENT: &str = concat!("kube-probe/", env!("CARGO_PKG_VERSION"));

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
        req = req.header("User-Agent", USER_AGENT);
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

    #[tokio::test]
    async fn grpc_probes_ask_the_health_service() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("db", ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let addr = format!("127.0.0.1:{port}");
        let second = Duration::from_secs(1);
        // The whole server ("") is serving; "db" is not; "nosuch" is unknown to it.
        assert_eq!(grpc_check(&addr, "", second).await, Ok(()));
        assert_eq!(
            grpc_check(&addr, "db", second).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let err = grpc_check(&addr, "nosuch", second).await.unwrap_err();
        assert!(err.starts_with("error: health rpc probe failed"), "{err}");
        // Nothing listening.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let err = grpc_check(&closed.to_string(), "", second)
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "timeout: failed to connect service \"{closed}\" within 1s"
            )),
            "{err}"
        );
        // Through a probe, against the pod's address and port.
        let probe = Probe {
            grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
                port: i32::from(port),
                service: Some("db".into()),
            }),
            ..Default::default()
        };
        let spec = container(probe);
        let runtime: Arc<dyn Runtime> = Arc::new(crate::fake::Fake::new());
        let target = Target {
            runtime: &runtime,
            container_id: "g",
            ip: Some("127.0.0.1".parse().unwrap()),
            spec: &spec,
        };
        let v = Probes::default().run(&target, false).await;
        assert_eq!(v.failures.len(), 2, "{v:?}");
    }
}
