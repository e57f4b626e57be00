//! The processes the API benchmark runs: `rudder server --disable-agent` on a free loopback port
//! with a data dir under `/var/tmp`, and (for the cold-start peer) an etcd started by hand so
//! that its start-to-healthy time is polled as finely as Rudder's.
//!
//! `rudder_testkit::RudderServer` is not used: the benchmark needs the process id (RSS), a data
//! dir on a real disk, readiness judged by `/readyz` over HTTPS rather than by a log line, and
//! restarts on the same data dir.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::StatusCode;

use super::client::{Endpoint, Proto};

/// How long a start may take before the benchmark gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled during a timed start.
const POLL: Duration = Duration::from_millis(2);

/// A free TCP port on 127.0.0.1 (released before it is returned; a small race).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
}

/// A running `rudder server --disable-agent`; killed on drop, its directory removed.
pub struct Server {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    datastore: Option<String>,
    /// Without the scheduler and the controllers: the API server alone.
    api_alone: bool,
    pub endpoint: Endpoint,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh data dir under `parent`; returns it and the time from spawn
    /// to the first `/readyz` answered 200 over HTTPS with the admin certificate.
    pub async fn start(
        bin: &Path,
        parent: &Path,
        datastore: Option<&str>,
    ) -> Result<(Server, Duration)> {
        Self::start_as(bin, parent, datastore, false).await
    }

    /// [`Server::start`] on the embedded store with `--disable-scheduler
    /// --disable-controller-manager`: the API server alone.
    pub async fn start_api_alone(bin: &Path, parent: &Path) -> Result<(Server, Duration)> {
        Self::start_as(bin, parent, None, true).await
    }

    async fn start_as(
        bin: &Path,
        parent: &Path,
        datastore: Option<&str>,
        api_alone: bool,
    ) -> Result<(Server, Duration)> {
        let dir = tempfile::Builder::new()
            .prefix("rudder-bench-api-")
            .tempdir_in(parent)
            .with_context(|| format!("temp dir under {}", parent.display()))?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut child = spawn(bin, dir.path(), port, datastore, api_alone)?;
            match wait_ready(&mut child, dir.path(), port).await {
                Ok((endpoint, took)) => {
                    let server = Server {
                        bin: bin.to_path_buf(),
                        child: Some(child),
                        port,
                        datastore: datastore.map(str::to_string),
                        api_alone,
                        endpoint,
                        dir,
                    };
                    return Ok((server, took));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Another process may have taken the port between the probe and the bind.
                    let log = log_tail(dir.path(), 20);
                    if !log.contains("in use") {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("rudder server did not start")))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and keeps its data dir.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Stops the server and starts it again on the same data dir and port; returns the time
    /// from spawn to ready.
    pub async fn restart(&mut self) -> Result<Duration> {
        self.stop();
        let mut child = spawn(
            &self.bin,
            self.dir.path(),
            self.port,
            self.datastore.as_deref(),
            self.api_alone,
        )?;
        match wait_ready(&mut child, self.dir.path(), self.port).await {
            Ok((endpoint, took)) => {
                self.endpoint = endpoint;
                self.child = Some(child);
                Ok(took)
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The end of the server's log (stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(self.dir.path(), lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let text = std::fs::read(log_path(dir)).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn(
    bin: &Path,
    dir: &Path,
    port: u16,
    datastore: Option<&str>,
    api_alone: bool,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .context("server log file")?;
    let mut cmd = Command::new(bin);
    cmd.args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir(dir));
    if let Some(ep) = datastore {
        cmd.arg("--datastore-endpoint").arg(ep);
    }
    if api_alone {
        cmd.args(["--disable-scheduler", "--disable-controller-manager"]);
    }
    for var in [
        "RUDDER_DATA_DIR",
        "RUDDER_DATASTORE_ENDPOINT",
        "RUDDER_TOKEN",
        "RUDDER_KUBECONFIG_OUTPUT",
        "RUDDER_KUBECONFIG_MODE",
        "RUDDER_NODE_NAME",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Polls until `/readyz` answers 200 over HTTPS with the admin certificate of the kubeconfig the
/// server writes (read as soon as it appears).
async fn wait_ready(child: &mut Child, dir: &Path, port: u16) -> Result<(Endpoint, Duration)> {
    let start = Instant::now();
    let kubeconfig = data_dir(dir).join("kubeconfig.yaml");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut endpoint: Option<Endpoint> = None;
    let mut last_err = String::new();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "rudder server exited ({status}) before it was ready; its log:\n{}",
                log_tail(dir, 30)
            );
        }
        if endpoint.is_none() {
            // The kubeconfig is written atomically; one left by an earlier run on this data dir
            // names the same CA and port, so it is valid too.
            if let Ok(ep) = Endpoint::from_kubeconfig(&kubeconfig) {
                if ep.addr == addr {
                    endpoint = Some(ep);
                }
            }
        }
        if let Some(ep) = &endpoint {
            match readyz(ep).await {
                Ok(()) => return Ok((ep.clone(), start.elapsed())),
                Err(e) => last_err = format!("{e:#}"),
            }
        }
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "rudder server not ready after {START_TIMEOUT:?} (last error: {last_err}); its log:\n{}",
                log_tail(dir, 30)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn readyz(ep: &Endpoint) -> Result<()> {
    let mut c = ep.connect(Proto::H1).await?;
    let (status, body) = c.call(hyper::Method::GET, "/readyz", None, None).await?;
    if status != StatusCode::OK {
        bail!("/readyz: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// etcd started by hand for the cold-start peer: the same flags as `rudder_testkit::EtcdProcess`
/// (single member on loopback), polled every 2 ms. Killed on drop.
pub struct TimedEtcd {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    client_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TimedEtcd {
    /// Starts etcd on a fresh data dir; returns it and the time from spawn to `/health` true.
    pub fn start(parent: &Path) -> Result<(TimedEtcd, Duration)> {
        let bin = etcd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("rudder-bench-etcd-")
            .tempdir_in(parent)?;
        let client_port = free_port()?;
        let mut peer_port = free_port()?;
        while peer_port == client_port {
            peer_port = free_port()?;
        }
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args = vec![
            "--name=bench".to_string(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=bench={peer}"),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token=bench-{client_port}"),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ];
        let mut etcd = TimedEtcd {
            child: None,
            bin,
            args,
            client_port,
            log: dir.path().join("etcd.log"),
            _dir: dir,
        };
        let took = etcd.spawn_and_wait()?;
        Ok((etcd, took))
    }

    /// Stops etcd (SIGTERM) and starts it again on its data; returns the time to healthy.
    pub fn restart(&mut self) -> Result<Duration> {
        self.stop();
        self.spawn_and_wait()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }

    fn spawn_and_wait(&mut self) -> Result<Duration> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(key);
            }
        }
        let start = Instant::now();
        let mut child = cmd.spawn().context("starting etcd")?;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "etcd exited ({status}) before it was healthy (log: {})",
                    self.log.display()
                );
            }
            if health(self.client_port) {
                let took = start.elapsed();
                self.child = Some(child);
                return Ok(took);
            }
            if start.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "etcd not healthy after {START_TIMEOUT:?} (log: {})",
                    self.log.display()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for TimedEtcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET /health` answered `"health":"true"`.
fn health(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.") && out.contains(" 200 ") && out.contains("\"health\":\"true\"")
}

/// The etcd binary, found as `rudder_testkit` finds it.
pub fn etcd_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(rudder_testkit::ETCD_BIN_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let default = PathBuf::from(rudder_testkit::DEFAULT_ETCD_BIN);
    if default.is_file() {
        return Ok(default);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("etcd").is_file() {
                return Ok(dir.join("etcd"));
            }
        }
    }
    bail!("etcd is not installed (apt-get install etcd-server)")
}
