//! Rudder's testkit: starts real peers and servers for tests and benchmarks.
//!
//! Owns: launching real processes on free loopback ports with throw-away data directories, and
//! tearing them down again: [`RudderServer`] (the built `rudder server` with the real kubectl,
//! and scripts using the official Python client, pointed at it) and [`EtcdProcess`], a
//! single-member etcd (the Debian
//! `etcd-server` package's `/usr/bin/etcd`) that the etcd store backend's tests and the store
//! benchmarks run against.
//!
//! Must not touch: anything outside loopback, anything it did not start, and production code
//! paths. This is test support, so it reports failures with `anyhow` and a message that says what
//! to do about them (which package to install, what the peer printed before it died).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

mod python;
mod server;
pub use python::PYTHON;
pub use server::{
    kubectl_path, AgentProcess, Answer, Kubectl, RudderServer, KUBECTL_DEFAULT_MINOR,
};

/// Moves the calling thread (and the threads and processes it starts later) into a new
/// network namespace with loopback up and an address `ip`/24 that is not loopback, as a node
/// has one: on one end of a veth pair whose other end is up too, with the default route
/// through it (the kernel routes a packet before service rules rewrite its destination, and a
/// cluster IP has no other route). No packet leaves the namespace.
pub fn enter_node_netns(ip: &str) -> anyhow::Result<()> {
    // SAFETY: unshare(2) changes only this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET): {} (needs root)",
            std::io::Error::last_os_error()
        );
    }
    let addr = format!("{ip}/24");
    for args in [
        vec!["link", "set", "lo", "up"],
        vec![
            "link",
            "add",
            "node0",
            "type",
            "veth",
            "peer",
            "name",
            "node0-peer",
        ],
        vec!["addr", "add", addr.as_str(), "dev", "node0"],
        vec!["link", "set", "node0", "up"],
        vec!["link", "set", "node0-peer", "up"],
        vec!["route", "add", "default", "dev", "node0"],
    ] {
        let st = Command::new("ip")
            .args(&args)
            .status()
            .context("ip (Debian iproute2)")?;
        if !st.success() {
            bail!("ip {args:?}: {st}");
        }
    }
    Ok(())
}

/// Stops a child as a service manager would: SIGTERM, then SIGKILL if it is still running
/// after `patience` (a rudder agent stops its containerd on SIGTERM; SIGKILL would leave it).
pub fn terminate(child: &mut std::process::Child, patience: std::time::Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + patience;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where Debian's `etcd-server` package installs the server.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// Environment variable that overrides the etcd binary to run.
pub const ETCD_BIN_ENV: &str = "RUDDER_ETCD_BIN";

/// How long etcd may take to answer `/health` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a start is retried when etcd could not bind the ports picked for it (another
/// process grabbed one between the probe and etcd's bind).
const START_ATTEMPTS: usize = 4;

/// Lines of etcd's log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// A real single-member etcd on free loopback ports, with its own temporary data directory.
///
/// Started with a short progress-notification interval (1 s, so watch progress can be tested
/// quickly), an 8 GiB backend quota (room for benchmarks) and a 10 MiB request limit (so that
/// every write the store contract accepts, up to `rudder_store::MAX_WRITE_BYTES` of key and
/// value inside a transaction, also fits etcd). Dropping it kills etcd and deletes the directory.
pub struct EtcdProcess {
    child: Child,
    client_port: u16,
    peer_port: u16,
    log_path: PathBuf,
    data_dir: PathBuf,
    // Declared last so that it is removed after the process is gone.
    _dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Start etcd with the default settings, in a directory under the system's temp dir.
    pub fn start() -> anyhow::Result<EtcdProcess> {
        Self::start_with_args(&[])
    }

    /// Start etcd with extra command-line flags appended (later flags win, so these can
    /// override the defaults, e.g. `--experimental-watch-progress-notify-interval=5s`).
    pub fn start_with_args(extra: &[&str]) -> anyhow::Result<EtcdProcess> {
        Self::start_in(&std::env::temp_dir(), extra)
    }

    /// Start etcd with its data directory under `parent` (benchmarks put it on the same file
    /// system as the store they compare it with).
    pub fn start_in(parent: &Path, extra: &[&str]) -> anyhow::Result<EtcdProcess> {
        let bin = etcd_binary()?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            match start_once(&bin, parent, extra)? {
                Started::Running(process) => return Ok(process),
                Started::PortTaken(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("etcd did not start"))).context(format!(
            "etcd could not bind free ports in {START_ATTEMPTS} attempts"
        ))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer port on 127.0.0.1.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The process id of etcd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// etcd's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The last `lines` lines etcd wrote to its log (stdout and stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    /// Kill etcd now (SIGKILL) and wait for it to exit, keeping its data directory until drop;
    /// for tests of what clients do when their etcd goes away.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill().context("killing etcd")?;
        }
        self.child.wait().context("waiting for etcd to exit")?;
        Ok(())
    }

    /// Fetch a plain-HTTP path from etcd's client port (e.g. `/metrics`, `/health`) and return
    /// the response body.
    pub fn http_get(&self, path: &str) -> anyhow::Result<String> {
        http_get(self.client_port, path, Duration::from_secs(5))
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // Errors here mean the process is already gone; nothing more to do.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Started {
    Running(EtcdProcess),
    /// etcd exited complaining about an address in use: pick new ports and try again.
    PortTaken(anyhow::Error),
}

fn start_once(bin: &Path, parent: &Path, extra: &[&str]) -> anyhow::Result<Started> {
    let dir = tempfile::Builder::new()
        .prefix("rudder-etcd-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory under {}", parent.display()))?;
    let data_dir = dir.path().join("data");
    let log_path = dir.path().join("etcd.log");
    let (client_port, peer_port) = free_port_pair()?;

    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = File::create(&log_path)
        .with_context(|| format!("creating etcd's log file {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening etcd's log file {}", log_path.display()))?;

    let mut args: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: &str| {
        args.push(format!("--{name}={value}").into());
    };
    flag("name", "rudder-test");
    flag("data-dir", &data_dir.to_string_lossy());
    flag("listen-client-urls", &client_url);
    flag("advertise-client-urls", &client_url);
    flag("listen-peer-urls", &peer_url);
    flag("initial-advertise-peer-urls", &peer_url);
    flag("initial-cluster", &format!("rudder-test={peer_url}"));
    flag("initial-cluster-state", "new");
    flag(
        "initial-cluster-token",
        &format!("rudder-test-{client_port}"),
    );
    flag("quota-backend-bytes", &(8u64 << 30).to_string());
    flag("max-request-bytes", &(10u64 << 20).to_string());
    flag("experimental-watch-progress-notify-interval", "1s");
    flag("logger", "zap");
    flag("log-outputs", "stderr");
    args.extend(extra.iter().map(OsString::from));

    let mut cmd = Command::new(bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    // etcd reads every ETCD_* variable as a flag; keep the caller's environment out of it.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;

    let mut process = EtcdProcess {
        child,
        client_port,
        peer_port,
        log_path,
        data_dir,
        _dir: dir,
    };

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = process
            .child
            .try_wait()
            .context("checking whether etcd is still running")?
        {
            let log = process.log_tail(LOG_TAIL_LINES);
            let err = anyhow::anyhow!(
                "etcd exited with {status} before it became healthy; the end of its log:\n{log}"
            );
            if log.contains("address already in use") {
                return Ok(Started::PortTaken(err));
            }
            return Err(err);
        }
        if let Ok(body) = http_get(client_port, "/health", Duration::from_secs(2)) {
            if body.contains("\"health\":\"true\"") {
                return Ok(Started::Running(process));
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "etcd at {} did not report healthy within {:?}; the end of its log:\n{}",
                process.endpoint(),
                START_TIMEOUT,
                process.log_tail(LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The etcd binary: `$RUDDER_ETCD_BIN`, else Debian's `/usr/bin/etcd`, else `etcd` on `PATH`.
fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(ETCD_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{ETCD_BIN_ENV} is set to {}, which is not a file",
            bin.display()
        );
    }
    let default = PathBuf::from(DEFAULT_ETCD_BIN);
    if default.is_file() {
        return Ok(default);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("etcd");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "etcd is not installed: no {DEFAULT_ETCD_BIN} and no etcd on PATH. Install the Debian \
         package etcd-server (apt-get install etcd-server), or point {ETCD_BIN_ENV} at an etcd \
         3.4+ binary"
    )
}

/// Two distinct free ports on 127.0.0.1. Both listeners are held until both ports are known, so
/// the two differ; they are released before etcd binds them (a race that [`START_ATTEMPTS`]
/// covers).
fn free_port_pair() -> anyhow::Result<(u16, u16)> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let a = TcpListener::bind(any).context("binding a free port on 127.0.0.1")?;
    let b = TcpListener::bind(any).context("binding a free port on 127.0.0.1")?;
    let pa = a.local_addr().context("reading a bound port")?.port();
    let pb = b.local_addr().context("reading a bound port")?.port();
    Ok((pa, pb))
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:`port`; returns the body of a 200 response.
fn http_get(port: u16, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending GET {path} to {addr}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to GET {path} from {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP answer to GET {path} from {addr}"))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200") {
        bail!("GET {path} from {addr} answered {status_line}");
    }
    Ok(body.to_string())
}

/// The last `lines` lines of a text file (empty if it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_cleans_up() -> anyhow::Result<()> {
        let etcd = EtcdProcess::start()?;
        assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
        assert_ne!(etcd.client_port(), etcd.peer_port());
        let health = etcd.http_get("/health")?;
        assert!(health.contains("true"), "{health}");
        let dir = etcd.data_dir().to_path_buf();
        assert!(dir.is_dir());
        let pid = etcd.pid();
        drop(etcd);
        assert!(!dir.exists(), "data dir {} left behind", dir.display());
        // Drop kills and reaps the child, so its /proc entry is gone.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "etcd (pid {pid}) still running"
        );
        Ok(())
    }

    #[test]
    fn two_instances_run_side_by_side() -> anyhow::Result<()> {
        let a = EtcdProcess::start()?;
        let b = EtcdProcess::start()?;
        assert_ne!(a.endpoint(), b.endpoint());
        assert!(a.http_get("/health")?.contains("true"));
        assert!(b.http_get("/health")?.contains("true"));
        Ok(())
    }
}
