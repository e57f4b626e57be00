//! The built `rudder` binary, end to end: version, the server's start and clean stop on SIGTERM
//! with its data kept, its refusal to start on a missing store once the cluster exists (unless
//! `--cluster-reset`), its private data dir, and `rudder store snapshot save|restore` on the
//! embedded store (refused while a server holds it) and on a real etcd.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::etcd::EtcdStore;
use rudder_store::{snapshot, KeyRange, Store};

fn rudder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rudder"));
    c.env_remove("RUDDER_DATA_DIR")
        .env_remove("RUDDER_DATASTORE_ENDPOINT");
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run rudder");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed: {text}");
    text
}

fn store_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("server").join("db")
}

async fn fill(store: &dyn Store, n: usize) {
    for i in 0..n {
        store
            .create(
                Bytes::from(format!("/registry/configmaps/default/cm{i}")),
                Bytes::from(format!("{{\"data\":{i}}}")),
            )
            .await
            .unwrap();
    }
}

/// Starts `rudder server` and waits for "store ready" on its log.
fn start_server(data_dir: &Path) -> (Child, std::thread::JoinHandle<String>) {
    start_server_with(data_dir, &[])
}

fn server_cmd(data_dir: &Path, extra: &[&str]) -> Command {
    let mut c = rudder();
    c.args([
        "server",
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        // Tests run side by side, each server with a node of its own.
        "--kubelet-port",
        "0",
        "--cluster-dns-port",
        "0",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .args(extra)
    .env("RUDDER_RUNTIME", "fake");
    c
}

fn start_server_with(data_dir: &Path, extra: &[&str]) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = server_cmd(data_dir, extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rudder server");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("store ready") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!(
            "the server did not log 'store ready':\n{}",
            log.join().unwrap()
        );
    }
    (child, log)
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            // What it is doing: its threads' names and where in the kernel each waits.
            let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id()))
                .into_iter()
                .flatten()
                .flatten()
                .map(|t| {
                    let read =
                        |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                    format!("{} {}", read("comm").trim(), read("wchan"))
                })
                .collect::<Vec<_>>();
            let _ = child.kill();
            panic!("the server did not stop on SIGTERM; its threads: {tasks:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn version_and_help() {
    let v = run_ok(rudder().arg("version"));
    assert!(v.starts_with("rudder version v"), "{v}");
    let h = run_ok(rudder().arg("--help"));
    for word in ["server", "store", "version"] {
        assert!(h.contains(word), "help lists {word}: {h}");
    }
    let out = rudder().arg("no-such-command").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_keeps_data_and_snapshots_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let s = Embedded::open(EmbeddedOptions::new(store_dir(&data))).unwrap();
        fill(&s, 50).await;
    }

    // The server opens the store, and a snapshot cannot be taken behind its back.
    let (server, log) = start_server(&data);
    let snap = tmp.path().join("snap.db");
    let out = rudder()
        .args(["store", "snapshot", "save"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "snapshot while the server runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "clear error: {err}");
    assert!(!snap.exists(), "no partial snapshot left behind");
    let status = stop(server);
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let log = log.join().unwrap();
    assert!(log.contains("shutting down"), "{log}");

    // Stopped: save, then restore into a new data dir, revisions kept.
    let text = run_ok(
        rudder()
            .args(["store", "snapshot", "save"])
            .arg(&snap)
            .arg("--data-dir")
            .arg(&data),
    );
    // The 50 config maps and what the server created (namespaces, the kubernetes service).
    let (keys, revision) = {
        let s = Embedded::open(EmbeddedOptions::new(store_dir(&data))).unwrap();
        let keys = s.count(snapshot::whole_keyspace()).await.unwrap();
        (keys, s.current_revision().await.unwrap())
    };
    assert!(keys > 50, "{keys}");
    assert!(text.contains(&format!("{keys} keys")), "{text}");
    assert!(text.contains(&format!("revision {revision}")), "{text}");
    let other = tmp.path().join("other");
    let text = run_ok(
        rudder()
            .args(["store", "snapshot", "restore"])
            .arg(&snap)
            .arg("--data-dir")
            .arg(&other),
    );
    assert!(
        text.contains(&format!("Restored {keys} keys at revision {revision}")),
        "{text}"
    );
    let s = Embedded::open(EmbeddedOptions::new(store_dir(&other))).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), revision);
    let kv = s
        .get(Bytes::from("/registry/configmaps/default/cm7"), 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&kv.value[..], b"{\"data\":7}");
    assert_eq!(kv.mod_revision, 8);
    drop(s);

    // Restoring over an existing store moves it aside instead of deleting it.
    let text = run_ok(
        rudder()
            .args(["store", "snapshot", "restore"])
            .arg(&snap)
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(text.contains("moved to"), "{text}");
    let aside: Vec<_> = std::fs::read_dir(data.join("server"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("db.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");

    // A damaged snapshot is refused with the file named, and changes nothing.
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 10);
    let bad = tmp.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    let out = rudder()
        .args(["store", "snapshot", "restore"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.db") && err.contains("corrupt"), "{err}");
    let s = Embedded::open(EmbeddedOptions::new(store_dir(&other))).unwrap();
    assert_eq!(s.count(snapshot::whole_keyspace()).await.unwrap(), keys);

    // The server comes back up on the restored store.
    drop(s);
    let (server, _log) = start_server(&other);
    assert!(stop(server).success());
}

/// Runs a `rudder server` that is expected to refuse to start; returns its stderr.
fn refused_start(data_dir: &Path) -> String {
    let mut child = server_cmd(data_dir, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rudder server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a missing store");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "refused with an error status");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn missing_store_is_refused_unless_cluster_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A first start creates the cluster: certificates, token, store, all private.
    let (server, _log) = start_server(&data);
    assert!(stop(server).success());
    let db = store_dir(&data);
    assert!(data.join("server").join("tls").exists());
    assert!(data.join("server").join("node-token").exists());
    assert!(
        db.join("clean-shutdown").exists(),
        "a clean stop closes the store cleanly"
    );
    for dir in [data.clone(), data.join("server"), db.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for f in std::fs::read_dir(&db).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }

    // The store is gone, the rest of the server's state is not: refused, saying why and how.
    std::fs::remove_dir_all(&db).unwrap();
    let err = refused_start(&data);
    assert!(err.contains("store") && err.contains("missing"), "{err}");
    assert!(
        err.contains(&*db.to_string_lossy()),
        "names the directory: {err}"
    );
    assert!(
        err.contains("--cluster-reset"),
        "says how to start empty: {err}"
    );
    assert!(!db.exists(), "a refused start creates no store");

    // An empty db directory is no better.
    std::fs::create_dir_all(&db).unwrap();
    let err = refused_start(&data);
    assert!(err.contains("no WAL segment or checkpoint"), "{err}");

    // Deliberately: --cluster-reset starts with an empty store.
    let (server, log) = start_server_with(&data, &["--cluster-reset"]);
    assert!(stop(server).success());
    let log = log.join().unwrap();
    assert!(
        log.contains("--cluster-reset"),
        "the reset is logged: {log}"
    );
    assert!(std::fs::read_dir(&db).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".seg")));
    // From then on the store exists and the server starts without the flag.
    let (server, _log) = start_server(&data);
    assert!(stop(server).success());

    // The log deleted but other files of the store left: refused too.
    for e in std::fs::read_dir(&db).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".seg") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let err = refused_start(&data);
    assert!(err.contains("the log was deleted"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_moves_data_between_etcd_and_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let etcd = rudder_testkit::EtcdProcess::start().unwrap();
    let ep = etcd.endpoint();
    {
        let s = EtcdStore::connect(std::slice::from_ref(&ep)).await.unwrap();
        fill(&s, 30).await;
    }
    let snap = tmp.path().join("from-etcd.db");
    let text = run_ok(
        rudder()
            .args(["store", "snapshot", "save"])
            .arg(&snap)
            .args(["--datastore-endpoint", &ep]),
    );
    assert!(text.contains("30 keys"), "{text}");

    let data = tmp.path().join("data");
    run_ok(
        rudder()
            .args(["store", "snapshot", "restore"])
            .arg(&snap)
            .arg("--data-dir")
            .arg(&data),
    );
    let s = Embedded::open(EmbeddedOptions::new(store_dir(&data))).unwrap();
    assert_eq!(
        s.count(KeyRange::prefix("/registry/configmaps/"))
            .await
            .unwrap(),
        30
    );

    // And back into a second, empty etcd; a non-empty one is refused.
    let etcd2 = rudder_testkit::EtcdProcess::start().unwrap();
    let text = run_ok(
        rudder()
            .args(["store", "snapshot", "restore"])
            .arg(&snap)
            .args(["--datastore-endpoint", &etcd2.endpoint()]),
    );
    assert!(text.contains("Restored 30 keys"), "{text}");
    let out = rudder()
        .args(["store", "snapshot", "restore"])
        .arg(&snap)
        .args(["--datastore-endpoint", &etcd2.endpoint()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s2 = EtcdStore::connect(&[etcd2.endpoint()]).await.unwrap();
    assert_eq!(
        s2.count(KeyRange::prefix("/registry/configmaps/"))
            .await
            .unwrap(),
        30
    );
}
