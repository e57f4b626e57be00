//! The agent's own containerd: with no `--container-runtime-endpoint`, the agent writes a
//! configuration under `<data-dir>/agent/containerd/` and runs `containerd` as its child (as k3s
//! does), stopping it when the agent stops.
//!
//! The configuration follows what this kind of machine needs (docs/architecture.md, "Node
//! agent"): the CRI plugin with runc (crun when installed on a cgroup-v2-only host) under the
//! cgroupfs driver, the overlayfs snapshotter, `restrict_oom_score_adj` (a process here may not
//! lower its OOM score), the CNI binaries of Debian's containernetworking-plugins, the locally
//! built sandbox image, and a registry configuration folder (`hosts.toml` per registry).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Where Debian's containernetworking-plugins puts the CNI binaries.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// How long containerd may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("containerd is not on PATH: install it (Debian: apt-get install containerd runc)")]
    NotInstalled,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("containerd exited before it was ready ({status}); the end of its log:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("importing {}: {message}", archive.display())]
    Import { archive: PathBuf, message: String },
    #[error("containerd did not open {} within {:?}; the end of its log:\n{log}", socket.display(), START_TIMEOUT)]
    NotReady { socket: PathBuf, log: String },
}

/// The files of the agent's containerd, all under one directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }
    pub fn registries(&self) -> PathBuf {
        self.dir.join("registries.d")
    }
}

/// What goes into the configuration besides the layout.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The sandbox (pause) image's name; it must be imported before a pod starts.
    pub sandbox_image: String,
    /// The OCI runtime binary (`runc` or `crun`), by path or name.
    pub runtime_binary: String,
}

impl Settings {
    /// crun when installed (it starts containers faster and smaller) and the host has only the
    /// unified cgroup hierarchy, else runc: crun refuses hybrid hosts (cgroup v1 controllers
    /// with a cgroup2 tree beside them) with "cgroups in hybrid mode not supported".
    pub fn for_this_machine(sandbox_image: &str) -> Settings {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let runtime_binary = if on_path("crun").is_some() && cgroup_unified(&mounts) {
            "crun"
        } else {
            "runc"
        };
        Settings {
            sandbox_image: sandbox_image.into(),
            runtime_binary: runtime_binary.into(),
        }
    }
}

/// Whether the mount table (`/proc/self/mounts`) has cgroup2 itself at /sys/fs/cgroup.
fn cgroup_unified(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split(' ').skip(1);
        (f.next(), f.next()) == (Some("/sys/fs/cgroup"), Some("cgroup2"))
    })
}

/// A TOML basic string: quoted, with `"` and `\` escaped.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// containerd's configuration (format version 2, which containerd 1.6 and 1.7 read).
pub fn config(layout: &Layout, s: &Settings) -> String {
    let p = |p: PathBuf| toml_str(&p.to_string_lossy());
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"# Written by rudder agent; rewritten on every start.
version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[{cri}]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = {binary}

[{cri}.cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}

[{cri}.registry]
  config_path = {registries}
"#,
        root = p(layout.root()),
        state = p(layout.state()),
        socket = p(layout.socket()),
        sandbox = toml_str(&s.sandbox_image),
        binary = toml_str(&s.runtime_binary),
        cni_bin = toml_str(CNI_BIN_DIR),
        cni_conf = p(layout.cni_conf_dir()),
        registries = p(layout.registries()),
    )
}

/// Where containerd's CRI pins pods' network namespaces (`cni-<random>` files; its default,
/// `netns_mounts_under_state_dir = false`).
pub const NETNS_DIR: &str = "/var/run/netns";

/// Makes `dir` a mount point of its own with shared propagation, as `ip netns add` does before
/// it pins a namespace there. containerd pins pods' namespaces in the plain directory. If
/// `ip netns add` then runs (an administrator, a test, a CNI plugin), it bind-mounts the
/// directory onto itself: the pins are copied into the new mount and the originals hidden
/// beneath it. Deleting the pod, containerd unmounts the copy, and the file, still a mount
/// point underneath, cannot be removed (EBUSY): the namespace outlives its pod. Pins made
/// before this runs (containerd's, from an agent without it) are copied the same way, once.
pub fn share_netns_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;

    std::fs::create_dir_all(dir)?;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mount = |source: Option<&std::ffi::CStr>, flags: libc::c_ulong| {
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call (or null for an
        // unused source), no filesystem type or data: a propagation change or a bind.
        let rc = unsafe {
            libc::mount(
                source.map_or(std::ptr::null(), |s| s.as_ptr()),
                target.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let make_shared = || mount(None, libc::MS_SHARED | libc::MS_REC);
    match make_shared() {
        // EINVAL: not a mount point yet.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            mount(Some(&target), libc::MS_BIND | libc::MS_REC)?;
            make_shared()
        }
        other => other,
    }
}

/// The first `name` in PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The last lines of containerd's log, for an error.
fn log_tail(layout: &Layout) -> String {
    let text = std::fs::read(layout.log()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A running containerd child; stopped (SIGTERM, then SIGKILL) on [`Containerd::stop`] or drop.
pub struct Containerd {
    layout: Layout,
    child: Option<Child>,
    /// A containerd an earlier agent started and left running (it was killed): adopted, and
    /// stopped by pid as the child would be.
    adopted: Option<i32>,
}

impl Containerd {
    /// Writes the configuration and starts containerd; returns once its socket accepts
    /// connections. A containerd still serving the socket (left running by an agent that was
    /// killed) is used as it is, so that its containers are adopted, not started twice.
    pub async fn start(layout: Layout, settings: &Settings) -> Result<Containerd, Error> {
        if tokio::net::UnixStream::connect(layout.socket())
            .await
            .is_ok()
        {
            let adopted = left_running(&layout);
            tracing::info!(socket = %layout.socket().display(), pid = ?adopted, "containerd already running; using it");
            return Ok(Containerd {
                layout,
                child: None,
                adopted,
            });
        }
        let bin = on_path("containerd").ok_or(Error::NotInstalled)?;
        for dir in [
            layout.dir.clone(),
            layout.cni_conf_dir(),
            layout.registries(),
        ] {
            create_private_dir(&dir)?;
        }
        let config_path = layout.config();
        std::fs::write(&config_path, config(&layout, settings))
            .map_err(io("writing", &config_path))?;
        let socket = layout.socket();
        // A socket left by a containerd that did not stop cleanly.
        let _ = std::fs::remove_file(&socket);
        let log_path = layout.log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("opening", &log_path))?;
        let log2 = log.try_clone().map_err(io("opening", &log_path))?;
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            // Its own process group: a Ctrl-C meant for the agent does not reach it, and the
            // agent stops it after its pods' workers.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting", &bin))?;
        if let Some(pid) = child.id() {
            let pid_file = layout.pid_file();
            std::fs::write(&pid_file, pid.to_string()).map_err(io("writing", &pid_file))?;
        }
        let mut me = Containerd {
            layout,
            child: Some(child),
            adopted: None,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let socket = self.layout.socket();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::Exited {
                        status,
                        log: log_tail(&self.layout),
                    });
                }
            }
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    socket,
                    log: log_tail(&self.layout),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The process id of the child, while it runs (`None` for a containerd that was found
    /// running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops containerd: SIGTERM, then SIGKILL after `grace`. Containers keep running under
    /// their shims, as with a containerd restarted by its service manager.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.adopted.take() {
            stop_pid(pid, grace).await;
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// The pid of the containerd an earlier agent started with this layout's configuration, if
/// that process still runs (its command line names the configuration).
fn left_running(layout: &Layout) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(layout.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = layout.config();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == config.as_os_str().as_encoded_bytes());
    ours.then_some(pid)
}

/// SIGTERM to `pid`, then SIGKILL if it still runs after `grace`.
async fn stop_pid(pid: i32, grace: Duration) {
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: kill(2) on a pid checked to be our containerd (left_running).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive() {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Imports an image archive (OCI layout or `docker save` tar) into the CRI's namespace of the
/// containerd at `socket`, unpacked for the overlayfs snapshotter, with containerd's own `ctr`
/// (installed with containerd).
pub async fn import(socket: &Path, archive: &Path) -> Result<(), Error> {
    let ctr = on_path("ctr").ok_or(Error::NotInstalled)?;
    let out = Command::new(&ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import"])
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io("running", &ctr))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Import {
        archive: archive.to_path_buf(),
        message: format!(
            "ctr images import: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Creates `dir` (and its parents) and makes it private to the agent's user.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("setting the mode of", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_needs_the_unified_cgroup_hierarchy() {
        let unified = "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        assert!(cgroup_unified(unified));
        assert!(!cgroup_unified(hybrid));
        assert!(!cgroup_unified(""));
    }

    #[test]
    fn the_configuration_names_every_path_and_quotes_them() {
        let layout = Layout::new("/data/agent/con\"tainerd");
        let text = config(
            &layout,
            &Settings {
                sandbox_image: "rudder.local/pause:1".into(),
                runtime_binary: "runc".into(),
            },
        );
        assert!(text.contains(r#"address = "/data/agent/con\"tainerd/containerd.sock""#));
        assert!(text.contains(r#"sandbox_image = "rudder.local/pause:1""#));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("SystemdCgroup = false"));
        assert!(text.contains(r#"bin_dir = "/usr/lib/cni""#));
        assert!(text.contains(r#"config_path = "/data/agent/con\"tainerd/registries.d""#));
    }
}
