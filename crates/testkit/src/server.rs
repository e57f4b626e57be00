//! A real `rudder server` child process on a free loopback port with a temporary data dir, and
//! the real kubectl pointed at it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The kubectl every end-to-end test uses unless it names a version: 1.32 (`/usr/bin/kubectl`
/// on the development machines dispatches on the server's version, so it is not used).
pub const KUBECTL_DEFAULT_MINOR: u32 = 32;

/// Path of kubectl 1.`minor` (1.27–1.33 are installed side by side).
pub fn kubectl_path(minor: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"))
}

/// A running `rudder server`; stopped (SIGKILL) and its data dir removed on drop.
pub struct RudderServer {
    child: Child,
    dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`
    pub url: String,
}

impl RudderServer {
    /// Starts `bin server` with `extra` flags and waits until it is ready (its log says
    /// "api server ready" and the kubeconfig exists).
    pub fn start(bin: &Path, extra: &[&str]) -> anyhow::Result<RudderServer> {
        Self::start_on(bin, "127.0.0.1", extra)
    }

    /// [`RudderServer::start`] with the API server on `address` (its kubeconfig names it):
    /// for agents in other network namespaces.
    pub fn start_on(bin: &Path, address: &str, extra: &[&str]) -> anyhow::Result<RudderServer> {
        let dir = tempfile::Builder::new()
            .prefix("rudder-server-")
            .tempdir()
            .context("temp data dir")?;
        let mut child = Command::new(bin)
            .args([
                "server",
                "--https-listen-port",
                "0",
                "--bind-address",
                address,
                // Servers of parallel tests each have a node of their own.
                "--kubelet-port",
                "0",
                "--cluster-dns-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .env_remove("RUDDER_DATA_DIR")
            .env_remove("RUDDER_DATASTORE_ENDPOINT")
            // Simulated pods unless a test asks for containers (`--runtime cri`).
            .env("RUDDER_RUNTIME", "fake")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take().context("server stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("api server ready") {
                        let _ = tx.send(());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "rudder server exited ({status}) before it was ready:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "rudder server not ready after 30 s:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        }
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let text = std::fs::read_to_string(&kubeconfig).context("read the kubeconfig")?;
        let url = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .context("server URL in the kubeconfig")?
            .trim()
            .trim_matches('"')
            .to_string();
        Ok(RudderServer {
            child,
            dir,
            log,
            kubeconfig,
            url,
        })
    }

    /// Starts the API server alone (`--disable-agent --disable-controller-manager
    /// --disable-scheduler`): for tests of the API itself, where no control loop may change
    /// what they create (hand-made nodes stay as written, pods stay unscheduled).
    pub fn api_only(bin: &Path, extra: &[&str]) -> anyhow::Result<RudderServer> {
        let mut args = vec![
            "--disable-agent",
            "--disable-controller-manager",
            "--disable-scheduler",
        ];
        args.extend_from_slice(extra);
        RudderServer::start(bin, &args)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server process's id (to read its `/proc/PID/status`, e.g. peak memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("VmHWM in /proc/PID/status")?;
        Ok(kb * 1024)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A kubectl 1.`minor` command with this server's kubeconfig and a private cache dir.
    pub fn kubectl_cmd(&self, minor: u32) -> Command {
        let mut c = Command::new(kubectl_path(minor));
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .arg(format!(
                "--cache-dir={}",
                self.dir
                    .path()
                    .join(format!("kube-cache-{minor}"))
                    .display()
            ));
        c
    }

    /// Runs kubectl (default version) with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_version(KUBECTL_DEFAULT_MINOR, args)
    }

    pub fn kubectl_version(&self, minor: u32, args: &[&str]) -> Kubectl {
        let out = self
            .kubectl_cmd(minor)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run kubectl 1.{minor}: {e}"));
        Kubectl {
            args: args.join(" "),
            out,
        }
    }

    /// Runs kubectl with `stdin` as its standard input (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Kubectl {
        self.kubectl_version_stdin(KUBECTL_DEFAULT_MINOR, args, stdin)
    }

    /// Runs kubectl 1.`minor` with `stdin` as its standard input.
    pub fn kubectl_version_stdin(&self, minor: u32, args: &[&str], stdin: &str) -> Kubectl {
        use std::io::Write as _;
        let mut child = self
            .kubectl_cmd(minor)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run kubectl 1.{minor}: {e}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write kubectl stdin");
        let out = child.wait_with_output().expect("kubectl output");
        Kubectl {
            args: args.join(" "),
            out,
        }
    }
}

impl Drop for RudderServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished kubectl run.
pub struct Kubectl {
    pub args: String,
    pub out: Output,
}

impl Kubectl {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert!(
            self.out.status.success(),
            "kubectl {} failed ({}):\n{}{}",
            self.args,
            self.out.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn fails(&self) -> String {
        assert!(
            !self.out.status.success(),
            "kubectl {} should have failed:\n{}",
            self.args,
            self.stdout()
        );
        self.stderr()
    }
}

/// The HTTP status and body of a raw request (see [`RudderServer::request`]).
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.body))
    }
}

impl RudderServer {
    /// A raw HTTPS request with the admin client certificate, through curl: what kubectl would
    /// never send (YAML bodies, broken bodies, oversized bodies).
    pub fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        use std::io::Write as _;
        let tls = self.dir.path().join("server/tls");
        let mut child = Command::new("curl")
            // HTTP/1.1: kubectl covers HTTP/2, and curl's HTTP/2 reports an upload the server
            // refused early (413) as a framing error rather than the answer.
            .args(["-sS", "--http1.1", "-X", method, "--data-binary", "@-"])
            .args(["-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(tls.join("client-admin.crt"))
            .arg("--key")
            .arg(tls.join("client-admin.key"))
            .args(["-H", &format!("Content-Type: {content_type}")])
            .arg(format!("{}{path}", self.url))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        let mut stdin = child.stdin.take().expect("stdin");
        // The server may answer (413) before reading everything.
        let _ = stdin.write_all(body);
        drop(stdin);
        let out = child.wait_with_output().expect("curl output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Answer {
            code: code.trim().parse().unwrap_or_else(|_| {
                panic!(
                    "curl {method} {path}: no status ({})",
                    String::from_utf8_lossy(&out.stderr)
                )
            }),
            body: body.to_string(),
        }
    }
}

impl RudderServer {
    /// The cluster CA of the kubeconfig, base64 (its `certificate-authority-data`).
    pub fn ca_data(&self) -> String {
        self.kubectl(&[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ])
        .ok()
    }

    /// The node token agents join with (`<data-dir>/server/node-token`).
    pub fn node_token(&self) -> anyhow::Result<String> {
        let t = std::fs::read_to_string(self.dir.path().join("server/node-token"))
            .context("read the node token")?;
        Ok(t.trim().to_string())
    }

    /// Registers node `name` with the node token as a joining agent does (no certificates),
    /// and returns the password it then authenticates with over HTTP basic authentication, as
    /// simulated nodes do.
    pub fn register_node(&self, name: &str) -> anyhow::Result<String> {
        let password = format!("{name}-password-made-by-the-test");
        let body = serde_json::json!({"nodeName": name, "nodePassword": password});
        let out = Command::new("curl")
            .args(["-sS", "-k", "-X", "POST", "-w", "\n%{http_code}"])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", self.node_token()?),
            ])
            .args(["--data-binary", &body.to_string()])
            .arg(format!("{}/v1-rudder/node-certificates", self.url))
            .output()
            .context("run curl")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.ends_with("\n200") {
            anyhow::bail!("registering node {name} failed: {text}");
        }
        Ok(password)
    }
}

/// A `rudder agent` process joined to a server (node IP 127.0.0.1, its own data dir),
/// killed on drop.
pub struct AgentProcess {
    pub child: Child,
    dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts `bin agent` against `server` with `token` and the `extra` flags.
    pub fn start(
        bin: &Path,
        server: &RudderServer,
        token: &str,
        extra: &[&str],
    ) -> anyhow::Result<AgentProcess> {
        let dir = tempfile::tempdir().context("agent data dir")?;
        let child = Self::spawn(bin, server, token, dir.path(), extra)?;
        Ok(AgentProcess { child, dir })
    }

    /// Kills the agent and starts it again on the same data dir (the machine coming back,
    /// with its node password and certificates), with the `extra` flags.
    pub fn restart(
        &mut self,
        bin: &Path,
        server: &RudderServer,
        token: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(bin, server, token, self.dir.path(), extra)?;
        Ok(())
    }

    /// The agent's data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(
        bin: &Path,
        server: &RudderServer,
        token: &str,
        dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Child> {
        Command::new(bin)
            .args(["agent", "--server", &server.url, "--token", token])
            .args(["--node-ip", "127.0.0.1", "--kubelet-port", "0"])
            .args(["--cluster-dns-port", "0"])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env_remove("RUDDER_TOKEN")
            .env_remove("RUDDER_URL")
            .env("RUDDER_RUNTIME", "fake")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} agent", bin.display()))
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
