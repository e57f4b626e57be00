//! Streams to the containers through the agent's server, with every kubectl: exec, attach,
//! port-forward, debug (an ephemeral container), top, and logs with rotation.

use super::*;

/// `kubectl port-forward` of `target` to a free local port, running until dropped: the
/// process and the local port it reported.
struct PortForward(Child, u16);

impl PortForward {
    fn start(s: &RudderServer, minor: u32, target: &str, port: u16) -> PortForward {
        use std::io::BufRead as _;
        let mut child = s
            .kubectl_cmd(minor)
            .args(["port-forward", target, &format!(":{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "Forwarding from 127.0.0.1:41234 -> 8080"
        let local = line
            .split_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kubectl 1.{minor} port-forward said {line:?}"));
        // The rest of its output is not read: keep the pipe drained.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        PortForward(child, local)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_attach_and_port_forward_reach_the_containers_on_every_kubectl() {
    in_new_netns(|| {
        let (s, _dir, log, _agent) = cluster("stream-node");
        let pods = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "shell", "namespace": "default"},
             "spec": {"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "main", "image": BUSYBOX,
                                      "command": ["sh", "-c", "while true; do echo tick; sleep 1; done"]}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web", "namespace": "default"},
             "spec": {"terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "httpd", "image": BUSYBOX, "command": ["sh", "-c",
                        "mkdir -p /www && echo hello-through-the-tunnel > /www/index.html && \
                         exec httpd -f -p 8080 -h /www"]}]}}]});
        s.kubectl_stdin(&["apply", "-f", "-"], &pods.to_string())
            .ok();
        for pod in ["shell", "web"] {
            eventually(&format!("{pod} Running"), &log, || running(&s, pod));
        }
        // 1.27 speaks SPDY for all of it; 1.32 and 1.33 WebSocket v5 for exec and attach and
        // SPDY tunnelled in WebSocket for port-forward.
        for minor in [27, 32, 33] {
            let run = s.kubectl_version(
                minor,
                &[
                    "exec",
                    "shell",
                    "--",
                    "sh",
                    "-c",
                    "echo out; echo err >&2; exit 3",
                ],
            );
            assert_eq!(
                run.out.status.code(),
                Some(3),
                "1.{minor}: {}",
                run.stderr()
            );
            assert_eq!(run.stdout(), "out\n", "1.{minor}");
            assert!(
                run.stderr().contains("err\n"),
                "1.{minor}: {}",
                run.stderr()
            );

            // stdin reaches the process, and its end ends `cat`.
            let run =
                s.kubectl_version_stdin(minor, &["exec", "-i", "shell", "--", "cat"], "one\ntwo\n");
            assert_eq!(run.ok(), "one\ntwo\n", "1.{minor}");

            // With a terminal (under script(1)): the process gets one too.
            let kubectl = kubectl_with(&s, minor);
            let out = Command::new("script")
                .args([
                    "-qec",
                    &format!("{kubectl} exec -it shell -- tty"),
                    "/dev/null",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("script (Debian bsdutils)");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("/dev/pts/"),
                "1.{minor}: {text:?} {:?}",
                out.status
            );

            // attach: the container's own output, as it comes.
            let out = Command::new("timeout")
                .args(["5"])
                .args(kubectl.split(' '))
                .args(["attach", "shell"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("tick\n"),
                "1.{minor}: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );

            // cp both ways (tar through exec, its stdin closed at the end of the archive).
            let local = tempfile::tempdir().unwrap();
            let there = format!("shell:/copied-{minor}");
            let original = local.path().join("original");
            std::fs::write(&original, format!("copied with 1.{minor}\n")).unwrap();
            s.kubectl_version(minor, &["cp", original.to_str().unwrap(), &there])
                .ok();
            let back = local.path().join("back");
            s.kubectl_version(minor, &["cp", &there, back.to_str().unwrap()])
                .ok();
            assert_eq!(
                std::fs::read_to_string(&back).unwrap(),
                format!("copied with 1.{minor}\n")
            );

            // port-forward: the pod's HTTP page through a local port.
            let forward = PortForward::start(&s, minor, "pod/web", 8080);
            let page = http_get(&format!("127.0.0.1:{}", forward.1)).unwrap();
            assert!(
                page.ends_with("hello-through-the-tunnel\n"),
                "1.{minor}: {page:?}"
            );
            // A second connection through the same forward.
            let page = http_get(&format!("127.0.0.1:{}", forward.1)).unwrap();
            assert!(
                page.ends_with("hello-through-the-tunnel\n"),
                "1.{minor}: {page:?}"
            );
        }
        // The official Python client: exec over WebSocket v5, port-forward over v4.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/streaming.py");
        assert_eq!(s.python(&script), "ok\n");
        // Each protocol was spoken, none fallen back from.
        let said = std::fs::read_to_string(&log).unwrap();
        for (kind, protocol) in [
            ("Exec", "SPDY/3.1"),
            ("Exec", "v5.channel.k8s.io"),
            ("Attach", "SPDY/3.1"),
            ("Attach", "v5.channel.k8s.io"),
            ("PortForward", "SPDY/3.1"),
            ("PortForward", "SPDY/3.1 tunnelled in WebSocket"),
            ("PortForward", "WebSocket, passed through"),
        ] {
            let protocol = format!("{protocol:?}");
            assert!(
                said.lines().any(|l| l.contains("streaming session")
                    && l.contains(kind)
                    && l.contains(&protocol)),
                "no {kind} session over {protocol} in the agent's log:\n{said}"
            );
        }
        // What cannot be streamed says why.
        let err = s
            .kubectl(&["exec", "shell", "-c", "nope", "--", "true"])
            .fails();
        assert!(
            err.contains("container nope is not valid for pod shell"),
            "{err}"
        );
    });
}

/// `kubectl debug` adds an ephemeral container to a running pod that sees the target
/// container's processes, and attaches to it; on every kubectl.
#[test]
fn kubectl_debug_attaches_an_ephemeral_container_to_a_running_pod() {
    let (s, _dir, log, _agent) = cluster("debug-node");
    start_pod(&s, &log, &pod("app", "echo up; exec sleep 3600", "Always"));
    for minor in [27, 32, 33] {
        let name = format!("debugger{minor}");
        let debug = format!(
            "{} debug app -i{} --image={BUSYBOX} --image-pull-policy=Never -c {name} --target=main -- sh",
            kubectl_with(&s, minor),
            if minor == 33 { "t" } else { "" }
        );
        // 1.33 with a terminal (under script(1)), the others through pipes.
        let cmd = if minor == 33 {
            let mut c = Command::new("script");
            c.args(["-qec", &debug, "/dev/null"]);
            c
        } else {
            let mut words = debug.split(' ');
            let mut c = Command::new(words.next().unwrap());
            c.args(words);
            c
        };
        // The target's process as its pid namespace has it (pid 1), seen once attached.
        let out = converse(cmd, "ps -o pid,args\n", "1 sleep 3600", "exit 0\n");
        assert!(out.contains("1 sleep 3600"), "1.{minor}: {out:?}");
        eventually(&format!("{name} exits"), &log, || {
            get(&s, "pod/app")["status"]["ephemeralContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["name"] == name.as_str()
                        && c["state"]["terminated"]["exitCode"] == 0
                        && c["ready"] == false
                })
        });
    }
    // An exited ephemeral container is not run again, and the pod's own container was left
    // alone.
    let pod = get(&s, "pod/app");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(pod["status"]["phase"], "Running");
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=app",
        ])
        .ok();
    assert!(events.contains("Started container debugger27"), "{events}");
    // Its logs stay readable.
    let logs = s.kubectl(&["logs", "app", "-c", "debugger33"]).ok();
    assert!(logs.contains("sleep 3600"), "{logs}");
    s.kubectl(&["delete", "pod", "app", "--timeout=60s"]).ok();
}

/// `kubectl top pod` shows what a pod's containers use, measured by containerd.
#[test]
fn kubectl_top_shows_what_pods_use() {
    let (s, _dir, log, _agent) = cluster("top-node");
    start_pod(&s, &log, &pod("busy", "while :; do :; done", "Always"));
    for minor in [27, 32, 33] {
        let top = s
            .kubectl_version(minor, &["top", "pod", "busy", "--containers"])
            .ok();
        // POD NAME CPU(cores) MEMORY(bytes)
        let line = top
            .lines()
            .find(|l| l.starts_with("busy "))
            .unwrap_or_else(|| panic!("1.{minor}: {top}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "main", "{line}");
        let millicores: u64 = cols[2].trim_end_matches('m').parse().unwrap();
        // A busy loop on one of the node's cores.
        assert!(millicores >= 100, "1.{minor}: {line}");
        assert!(cols[3].ends_with("Mi"), "{line}");
    }
    let top = s.kubectl(&["top", "node"]).ok();
    assert!(top.contains("top-node"), "{top}");
    s.kubectl(&["delete", "pod", "busy", "--timeout=60s"]).ok();
}

/// A log that outgrows `--container-log-max-size` is rotated (renamed, then reopened by
/// containerd), at most `--container-log-max-files` kept, and `kubectl logs` reads on.
#[test]
fn container_logs_are_rotated() {
    let flags = [
        "--container-log-max-size",
        "16Ki",
        "--container-log-max-files",
        "3",
    ];
    let (s, dir, log, _agent) = cluster_with("log-node", &flags, |_| {});
    // About 40 KiB a second.
    let line = "x".repeat(400);
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &pod(
            "chatty",
            &format!("i=0; while :; do i=$((i+1)); echo \"$i {line}\"; sleep 0.01; done"),
            "Always",
        ),
    )
    .ok();
    let uid = {
        let mut uid = String::new();
        eventually("chatty runs", &log, || {
            let p = get(&s, "pod/chatty");
            uid = p["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        });
        uid
    };
    let logs_dir = dir
        .path()
        .join(format!("agent/pods/default_chatty_{uid}/main"));
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&logs_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    // Rotated twice (the agent looks every 10 s): two old files beside the current one.
    eventually("two rotations", &log, || files().len() == 3);
    let names = files();
    assert_eq!(names[0], "0.log", "{names:?}");
    assert!(
        names[1..].iter().all(|n| n.starts_with("0.log.")),
        "{names:?}"
    );
    // The current file is written again after each rotation, and read by kubectl logs.
    let tail = |s: &RudderServer| -> u64 {
        let out = s.kubectl(&["logs", "chatty", "--tail=1"]).ok();
        out.split(' ')
            .next()
            .unwrap_or("0")
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let before = tail(&s);
    eventually("the log goes on", &log, || tail(&s) > before);
    s.kubectl(&["delete", "pod", "chatty", "--timeout=60s"])
        .ok();
}

/// Runs `cmd`, writes `first` to its stdin, reads its output until `until` appears (a minute
/// at most), then writes `then`, closes its stdin and waits for it: everything it wrote.
fn converse(mut cmd: Command, first: &str, until: &str, then: &str) -> String {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first.as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&out).contains(until) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => out.extend(chunk),
            Err(_) => break,
        }
    }
    let _ = stdin.write_all(then.as_bytes());
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
        out.extend(chunk);
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {out:?}");
    out
}
