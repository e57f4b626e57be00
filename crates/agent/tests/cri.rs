//! The agent's own containerd and its CRI, for real: containerd started as the agent starts it,
//! the sandbox image and a busybox image made on the spot (no registry), and a pod sandbox with
//! one container run through the CRI to its exit, its log read from the file the runtime wrote.
//! Needs root and containerd, runc and busybox-static (scripts/test installs them).

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_agent::containerd::{self, Containerd, Layout, Settings};
use rudder_agent::cri::{api, Cri};
use rudder_agent::image::{self, PAUSE_IMAGE};

const BUSYBOX: &str = "rudder.local/test/busybox:1";

/// A busybox image from the host's static busybox.
fn busybox_archive() -> Vec<u8> {
    let data = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (Debian busybox-static; scripts/test installs it)");
    image::busybox_archive(BUSYBOX, data, &["sh", "echo", "cat", "sleep"]).unwrap()
}

async fn import(layout: &Layout, dir: &Path, name: &str, archive: Vec<u8>) {
    let path = dir.join(format!("{name}.tar"));
    std::fs::write(&path, archive).unwrap();
    containerd::import(&layout.socket(), &path).await.unwrap();
}

/// The namespaces of a pod on the node's network (the pod network is not set up here).
fn namespaces() -> Option<api::NamespaceOption> {
    Some(api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn containerd_runs_a_pod_from_images_made_on_the_node() {
    let dir = tempfile::Builder::new()
        .prefix("rudder-cri-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let layout = Layout::new(dir.path().join("containerd"));
    let mut ctd = Containerd::start(layout.clone(), &Settings::for_this_machine(PAUSE_IMAGE))
        .await
        .unwrap();
    assert!(ctd.pid().is_some());
    // An agent started again while its containerd still runs uses that containerd.
    let again = Containerd::start(layout.clone(), &Settings::for_this_machine(PAUSE_IMAGE))
        .await
        .unwrap();
    assert!(again.pid().is_none(), "the running containerd is used");
    drop(again);
    import(
        &layout,
        dir.path(),
        "pause",
        image::pause_archive().unwrap(),
    )
    .await;
    import(&layout, dir.path(), "busybox", busybox_archive()).await;

    let cri = Cri::connect(&layout.socket()).await.unwrap();
    let v = cri.version().await.unwrap();
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(cri.image(PAUSE_IMAGE).await.unwrap().is_some());
    assert!(cri.image(BUSYBOX).await.unwrap().is_some());
    assert!(cri.image("rudder.local/missing:1").await.unwrap().is_none());

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("c")).unwrap();
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "p".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: namespaces(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rt = cri.runtime.clone();
    let sandbox = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let container = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into(), "-c".into(), "echo hello; exit 3".into()],
                log_path: "c/0.log".into(),
                linux: Some(api::LinuxContainerConfig {
                    security_context: Some(api::LinuxContainerSecurityContext {
                        namespace_options: namespaces(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(api::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .unwrap();
    // A deadline against a hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = rt
            .container_status(api::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == api::ContainerState::ContainerExited as i32 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the container did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.exit_code, 3, "{status:?}");
    assert_eq!(status.reason, "Error", "{status:?}");
    let log = std::fs::read_to_string(logs.join("c/0.log")).unwrap();
    assert!(log.contains(" stdout F hello\n"), "{log:?}");

    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .unwrap();
    let left = rt
        .list_containers(api::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    ctd.stop(Duration::from_secs(10)).await;
}

/// Re-runs the calling test in a private mount namespace of its own (`unshare`, util-linux):
/// true in the re-run, false in the caller once the re-run passed.
fn in_private_mount_namespace(test: &str) -> bool {
    const INSIDE: &str = "RUDDER_TEST_PRIVATE_MOUNTS";
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    // A test name the harness did not find would pass too, having run nothing.
    assert!(
        out.status.success() && text.contains("test result: ok. 1 passed"),
        "{test} in a private mount namespace ({}):\n{text}",
        out.status
    );
    false
}

/// The mount points at `dir` in this mount namespace, each with its propagation fields.
fn mounts_at(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

/// Pins this process's network namespace at `file`, as containerd pins a pod's.
fn pin_netns(file: &Path) {
    std::fs::write(file, "").unwrap();
    let st = std::process::Command::new("mount")
        .args(["--bind", "/proc/self/ns/net"])
        .arg(file)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Unmounts and removes a pin as containerd does when its pod is deleted.
fn unpin_netns(file: &Path) -> std::io::Result<()> {
    let _ = std::process::Command::new("umount").arg(file).status();
    std::fs::remove_file(file)
}

#[test]
fn pods_netns_pins_stay_removable_when_ip_netns_add_runs_later() {
    const NAME: &str = "pods_netns_pins_stay_removable_when_ip_netns_add_runs_later";
    if !in_private_mount_namespace(NAME) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // What `ip netns add` does to its directory: made a shared mount point, by binding it onto
    // itself when it is not one yet.
    let ip_netns_add = |dir: &Path| containerd::share_netns_dir(dir).unwrap();

    // Without the agent's step: the pin made in the plain directory is hidden under the bind
    // mount, and can no longer be removed.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    pin_netns(&plain.join("cni-1"));
    ip_netns_add(&plain);
    let err = unpin_netns(&plain.join("cni-1")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    // Only with the bind mount gone is the original pin reached, and removed.
    assert!(std::process::Command::new("umount")
        .arg(&plain)
        .status()
        .unwrap()
        .success());
    unpin_netns(&plain.join("cni-1")).unwrap();

    // With it: the directory is a shared mount point before any pin, `ip netns add` adds no
    // mount over it, and pins are removed.
    let dir = tmp.path().join("netns");
    containerd::share_netns_dir(&dir).unwrap();
    let points = mounts_at(&dir);
    assert_eq!(points.len(), 1, "{points:?}");
    assert!(points[0].contains(" shared:"), "{points:?}");
    pin_netns(&dir.join("cni-2"));
    ip_netns_add(&dir);
    assert_eq!(mounts_at(&dir).len(), 1);
    unpin_netns(&dir.join("cni-2")).unwrap();
    assert!(mounts_at(&dir.join("cni-2")).is_empty());
}
