//! The official Kubernetes Python client (`kubernetes` on PyPI, the version in RUDDER_TEST_PIP
//! of scripts/lib.sh) against the built API server alone (`RudderServer::api_only`). Each test starts its
//! own server and runs one script of `tests/python/`, which asserts what the server answered
//! and exits non-zero with a message saying what differed; the script's output and the end of
//! the server's log are shown on failure.

use std::path::{Path, PathBuf};

use rudder_testkit::RudderServer;

fn server(extra: &[&str]) -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), extra)
        .expect("start rudder server")
}

fn script(name: &str) -> PathBuf {
    manifest_dir().join("tests/python").join(name)
}

/// Runs `tests/python/<name>` against a new server started with `extra` flags.
fn run(name: &str, extra: &[&str]) {
    let s = server(extra);
    let out = s.python(&script(name));
    assert!(
        out.lines().any(|l| l == format!("PASS {name}")),
        "{name} exited 0 without reporting PASS:\n{out}"
    );
}

/// Create, read, replace (409 on a stale resourceVersion), the three patch types, delete with
/// propagationPolicy and preconditions; 404, 409 and 422 Status objects.
#[test]
fn python_configmaps_crud_and_errors() {
    run("configmaps.py", &[]);
}

/// Namespaces, apps/v1 Deployments and Services through the typed APIs: defaults, strategic
/// merge patches of lists, ClusterIP and NodePort allocation, Orphan/Foreground/Background
/// deletion, namespace deletion (marked Terminating, then finalized through `namespaces/NAME/finalize`).
#[test]
fn python_namespaces_deployments_services() {
    run("workloads.py", &[]);
}

/// limit + continue (every item once, one snapshot, remainingItemCount), label and field
/// selectors, selectors with paging.
#[test]
fn python_list_paging_and_selectors() {
    run("paging.py", &[]);
}

/// Watch().stream resumed from a resourceVersion, live events, selectors, cluster-scoped and
/// apps/v1 watches.
#[test]
fn python_watch_resume() {
    run("watch.py", &[]);
}

/// 410 Gone (reason Expired) for a list, a continue token and a watch below the compacted
/// revision. The server compacts every 100 ms, keeping one revision, so old revisions go
/// through the real automatic compaction.
#[test]
fn python_compacted_resource_version_is_gone() {
    run(
        "compaction.py",
        &[
            "--compaction-retention",
            "0",
            "--compaction-keep-revisions",
            "1",
            "--compaction-interval",
            "100ms",
        ],
    );
}

/// kubernetes.dynamic.DynamicClient: discovery, then get/list/create/patch/replace/delete/watch.
#[test]
fn python_dynamic_client() {
    run("dynamic_client.py", &[]);
}

/// What the official client's own e2e suites rely on: `watch=True`, PartialObjectMetadata
/// (dynamic client, single objects, watch events, 406 for unserved conversions), the built-in
/// APIServices, and Status bodies byte for byte as upstream writes them.
#[test]
fn python_client_e2e_behaviours() {
    run("client_e2e.py", &[]);
}

/// Server-side apply through `DynamicClient.server_side_apply`: create, managedFields,
/// conflicts, force, removal of dropped fields, dry run, fieldManager required.
#[test]
fn python_server_side_apply() {
    run("apply.py", &[]);
}

/// The official client's own suites against a new server without nodes, through the
/// `rudder_upstream` plugin ([`RudderServer::python_upstream`]).
fn upstream(suites: &[&str], e2e_dir: Option<&Path>) -> String {
    let s = server(&[]);
    s.python_upstream(
        &manifest_dir().join("tests/python/upstream"),
        suites,
        e2e_dir,
    )
}

/// kubernetes-client/python's `kubernetes/dynamic/test_client.py` and `test_discovery.py`, as
/// the installed `kubernetes` package ships them: 10 pass; 4 fail on upstream too (listed,
/// with reasons, in rudder_upstream.py).
#[test]
fn python_upstream_dynamic_suites() {
    let summary = upstream(
        &[
            "--pyargs",
            "kubernetes.dynamic.test_client",
            "kubernetes.dynamic.test_discovery",
        ],
        None,
    );
    assert!(summary.contains(" xfailed=4 "), "{summary}");
}

/// The package's directory, from the environment the test runs in (cargo and nextest set
/// it): a test binary that another checkout sharing the target directory built, and that
/// cargo takes for fresh here, still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}
