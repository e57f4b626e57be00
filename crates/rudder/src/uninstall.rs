//! `rudder uninstall [--data-dir DIR] [--keep-data]`: takes away what Rudder made on this
//! machine, as k3s's `k3s-killall.sh` and `k3s-uninstall.sh` do. In order:
//!
//! 1. the `rudder server` and `rudder agent` processes of that data dir are stopped (SIGTERM,
//!    then SIGKILL after 30 s);
//! 2. the agent's containerd, its shims and every process of the pods they run are killed, and
//!    the pods' network namespaces removed;
//! 3. the node's networking goes: the service proxy's table, the pods' hostPort rules, the
//!    pod routes, the VXLAN device, the masquerading table and the pods' bridge;
//! 4. whatever is still mounted under the data dir (pods' volumes, image snapshots) is
//!    unmounted;
//! 5. the data dir is removed (not with `--keep-data`, which only stops and cleans up, as
//!    `k3s-killall.sh`).
//!
//! Processes are told apart by the data dir they were given (their arguments, or
//! `RUDDER_DATA_DIR`), so other Rudder instances on the machine are left alone; the pods'
//! network namespaces pinned under `/run/netns` by the sandboxes' bundles in the data dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A process: its id, parent, and arguments.
#[derive(Debug)]
struct Process {
    pid: i32,
    ppid: i32,
    args: Vec<String>,
    env_data_dir: Option<String>,
}

fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ppid = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                // The command name may hold spaces and parentheses: fields follow the last ')'.
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        let env_data_dir = std::fs::read(e.path().join("environ"))
            .ok()
            .and_then(|env| {
                env.split(|b| *b == 0).find_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    kv.strip_prefix("RUDDER_DATA_DIR=").map(str::to_string)
                })
            });
        out.push(Process {
            pid,
            ppid,
            args,
            env_data_dir,
        });
    }
    out
}

/// The data dir a `rudder server` or `rudder agent` process uses, if it is one.
fn rudder_data_dir(p: &Process, default: &Path) -> Option<PathBuf> {
    let program = Path::new(p.args.first()?).file_name()?.to_str()?;
    if program != "rudder" || !matches!(p.args.get(1)?.as_str(), "server" | "agent") {
        return None;
    }
    let mut given = None;
    let mut args = p.args.iter();
    while let Some(a) = args.next() {
        if a == "--data-dir" {
            given = args.next().cloned();
        } else if let Some(v) = a.strip_prefix("--data-dir=") {
            given = Some(v.to_string());
        }
    }
    Some(
        given
            .or_else(|| p.env_data_dir.clone())
            .map_or_else(|| default.to_path_buf(), PathBuf::from),
    )
}

/// Whether one of `p`'s arguments is a path under `dir` (the agent's containerd is given its
/// configuration there, its shims their socket).
fn names_path_under(p: &Process, dir: &Path) -> bool {
    p.args.iter().any(|a| {
        let path = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
        Path::new(path).starts_with(dir)
    })
}

/// Whether `pid` still runs (an exited one its parent has not reaped yet does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn signal(pids: &BTreeSet<i32>, sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill(2) on processes found above; a gone one is ESRCH, ignored.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits up to `limit` for `pids` to be gone: those still there.
fn wait_gone(pids: &BTreeSet<i32>, limit: Duration) -> BTreeSet<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: BTreeSet<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `roots` and all their descendants.
fn with_descendants(all: &[Process], roots: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut out = roots.clone();
    loop {
        let more: Vec<i32> = all
            .iter()
            .filter(|p| out.contains(&p.ppid) && !out.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

/// The mount points under `dir`, deepest first (from `/proc/self/mountinfo`, whose paths
/// escape spaces and such as octal).
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        PathBuf::from(String::from_utf8_lossy(&out).into_owned())
    };
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// The network namespace a pod sandbox's OCI bundle (`config.json`) joins, if it is one
/// containerd pinned under `/run/netns` (the pods'; containerd names them `cni-<random>`, so
/// only the bundles tell ours from another runtime's).
fn netns_of(bundle_config: &str) -> Option<PathBuf> {
    let config: serde_json::Value = serde_json::from_str(bundle_config).ok()?;
    let path = config["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?["path"]
        .as_str()?;
    let path = Path::new(path);
    let plain = path.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    let pinned = path
        .parent()
        .is_some_and(|p| p == Path::new("/run/netns") || p == Path::new("/var/run/netns"));
    (plain && pinned).then(|| path.to_path_buf())
}

/// The network namespaces of the pods whose bundles are under containerd's task state
/// directory `tasks` (`<namespace>/<id>/config.json`).
fn pod_netns(tasks: &Path) -> BTreeSet<PathBuf> {
    let dirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    dirs(tasks)
        .iter()
        .flat_map(|ns| dirs(ns))
        .filter_map(|bundle| std::fs::read_to_string(bundle.join("config.json")).ok())
        .filter_map(|c| netns_of(&c))
        .collect()
}

fn unmount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: umount2(2) with a NUL-terminated path; detached, as it may still be busy.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

/// Does what the module says for the data dir `dir` (`default` is where a process given none
/// keeps its data); returns what was done, a line each.
pub async fn uninstall(dir: &Path, default: &Path, keep_data: bool) -> Result<Vec<String>> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("{}: no such data dir", dir.display()))?;
    let looks_like_ours = ["server", "agent"].iter().any(|d| dir.join(d).is_dir());
    if dir.parent().is_none() || !looks_like_ours {
        bail!(
            "{} is not a Rudder data dir (it has neither server/ nor agent/): nothing removed",
            dir.display()
        );
    }
    let default = std::fs::canonicalize(default).unwrap_or_else(|_| default.to_path_buf());
    let mut done = Vec::new();
    let own = std::process::id() as i32;

    // 1. The server and agents of this data dir.
    let all = processes();
    let rudders: BTreeSet<i32> = all
        .iter()
        .filter(|p| p.pid != own)
        .filter(|p| {
            rudder_data_dir(p, &default)
                .and_then(|d| std::fs::canonicalize(d).ok())
                .is_some_and(|d| d == dir)
        })
        .map(|p| p.pid)
        .collect();
    if !rudders.is_empty() {
        signal(&rudders, libc::SIGTERM);
        let left = wait_gone(&rudders, Duration::from_secs(30));
        signal(&left, libc::SIGKILL);
        wait_gone(&left, Duration::from_secs(5));
        done.push(format!("stopped {} rudder process(es)", rudders.len()));
    }

    // 2. Its containerd, the shims and the pods' processes under them; then the pods'
    // network namespaces, which their bundles name.
    let containerd = rudder_agent::containerd::Layout::new(dir.join("agent").join("containerd"));
    let netns = pod_netns(&containerd.state().join("io.containerd.runtime.v2.task"));
    let all = processes();
    let runtime: BTreeSet<i32> = all
        .iter()
        .filter(|p| {
            let program = p
                .args
                .first()
                .and_then(|a| Path::new(a).file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            program.starts_with("containerd") && names_path_under(p, &dir)
        })
        .map(|p| p.pid)
        .collect();
    if !runtime.is_empty() {
        let everything = with_descendants(&all, &runtime);
        signal(&everything, libc::SIGKILL);
        let left = wait_gone(&everything, Duration::from_secs(10));
        if !left.is_empty() {
            tracing::warn!(?left, "processes still there after SIGKILL");
        }
        done.push(format!(
            "killed containerd, its shims and the pods' processes ({} in all)",
            everything.len()
        ));
    }
    let freed = netns
        .iter()
        .filter(|ns| {
            unmount(ns);
            std::fs::remove_file(ns).is_ok()
        })
        .count();
    if freed > 0 {
        done.push(format!("removed {freed} pod network namespace(s)"));
    }

    // 3. The node's networking (what is not there is no error).
    let steps = [
        (
            "the service proxy's table",
            rudder_net::proxy::cleanup()
                .await
                .map_err(anyhow::Error::from),
        ),
        (
            "the pods' hostPort rules",
            rudder_net::iptables::cleanup_hostports(rudder_agent::cri_runtime::NETWORK)
                .await
                .map_err(anyhow::Error::from),
        ),
        (
            "the pod routes, the VXLAN device and the masquerading table",
            rudder_net::pods::cleanup()
                .await
                .map_err(anyhow::Error::from),
        ),
    ];
    for (what, result) in steps {
        match result {
            Ok(()) => done.push(format!("removed {what}")),
            Err(e) => done.push(format!("could not remove {what}: {e:#}")),
        }
    }
    let bridge = rudder_agent::cri_runtime::BRIDGE;
    match rudder_net::pods::delete_link(bridge).await {
        Ok(true) => done.push(format!("removed the pods' bridge {bridge}")),
        Ok(false) => {}
        Err(e) => done.push(format!("could not remove the pods' bridge {bridge}: {e}")),
    }

    // 4. What is mounted under the data dir.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mounts_under(&mountinfo, &dir);
    let unmounted = mounts.iter().filter(|m| unmount(m)).count();
    if !mounts.is_empty() {
        done.push(format!("unmounted {unmounted} of {} mounts", mounts.len()));
    }

    // 5. The data.
    if !keep_data {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        done.push(format!("removed {}", dir.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, args: &[&str], env: Option<&str>) -> Process {
        Process {
            pid,
            ppid,
            args: args.iter().map(|a| a.to_string()).collect(),
            env_data_dir: env.map(str::to_string),
        }
    }

    #[test]
    fn processes_are_told_apart_by_their_data_dir() {
        let default = Path::new("/var/lib/rudder");
        let dd = |p: &Process| rudder_data_dir(p, default);
        assert_eq!(
            dd(&p(
                1,
                0,
                &["/usr/bin/rudder", "server", "--data-dir", "/d"],
                None
            )),
            Some("/d".into())
        );
        assert_eq!(
            dd(&p(1, 0, &["rudder", "agent", "--data-dir=/e"], Some("/x"))),
            Some("/e".into())
        );
        assert_eq!(
            dd(&p(1, 0, &["rudder", "agent"], Some("/x"))),
            Some("/x".into())
        );
        assert_eq!(
            dd(&p(1, 0, &["rudder", "server"], None)),
            Some(default.into())
        );
        assert_eq!(dd(&p(1, 0, &["rudder", "version"], None)), None);
        assert_eq!(dd(&p(1, 0, &["kubectl", "server"], None)), None);
        let shim = p(
            5,
            1,
            &[
                "containerd-shim-runc-v2",
                "-namespace",
                "k8s.io",
                "-address",
                "/d/agent/containerd/containerd.sock",
            ],
            None,
        );
        assert!(names_path_under(&shim, Path::new("/d")));
        assert!(!names_path_under(&shim, Path::new("/dd")));
        let all = [
            shim,
            p(6, 5, &["sh"], None),
            p(7, 6, &["sleep"], None),
            p(8, 1, &["other"], None),
        ];
        assert_eq!(
            with_descendants(&all, &BTreeSet::from([5])),
            BTreeSet::from([5, 6, 7])
        );
    }

    #[test]
    fn a_pods_network_namespace_is_the_one_its_bundle_pins() {
        let bundle = |path: &str| {
            serde_json::json!({"linux": {"namespaces": [
                {"type": "pid"}, {"type": "network", "path": path}]}})
            .to_string()
        };
        assert_eq!(
            netns_of(&bundle("/var/run/netns/cni-1234")),
            Some(PathBuf::from("/var/run/netns/cni-1234"))
        );
        // Another process's namespace, or anything not pinned there, is not a pod's to remove.
        assert_eq!(netns_of(&bundle("/proc/42/ns/net")), None);
        assert_eq!(netns_of(&bundle("/run/netns/../../etc/passwd")), None);
        assert_eq!(netns_of(&bundle("/run/netns/..")), None);
        assert_eq!(
            netns_of(r#"{"linux": {"namespaces": [{"type": "pid"}]}}"#),
            None
        );
        assert_eq!(netns_of("not json"), None);
    }

    #[test]
    fn mounts_under_the_data_dir_come_deepest_first() {
        let info = "22 1 0:21 / /proc rw - proc proc rw
30 22 0:40 / /var/lib/rudder/agent/pods/u1/volumes/kubernetes.io~secret/s rw - tmpfs tmpfs rw
31 22 0:41 / /var/lib/rudder/agent/containerd/root/snap rw - overlay overlay rw
32 30 0:42 / /var/lib/rudder/agent/pods/u1/volumes/kubernetes.io~secret/s/deeper\\040dir rw - tmpfs tmpfs rw
33 22 0:43 / /var/lib/rudder2/x rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_under(info, Path::new("/var/lib/rudder")),
            [
                PathBuf::from(
                    "/var/lib/rudder/agent/pods/u1/volumes/kubernetes.io~secret/s/deeper dir"
                ),
                PathBuf::from("/var/lib/rudder/agent/pods/u1/volumes/kubernetes.io~secret/s"),
                PathBuf::from("/var/lib/rudder/agent/containerd/root/snap"),
            ]
        );
    }
}
