"""kubernetes.watch.Watch().stream against Rudder: resuming from a resourceVersion (every
change after it arrives, in order, and nothing at or before it), live events on an open watch,
the initial ADDED events of a watch without a resourceVersion, label and field selectors
(objects entering and leaving the selection), and watches of cluster-scoped and apps/v1 lists."""

from kubernetes import client

from common import check, check_eq, events, run, step

NS = "watched"


def summary(evs):
    return [(t, n) for t, n, _, _ in evs]


def main(api):
    v1 = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    v1.create_namespace({"metadata": {"name": NS}})

    step("history after a resourceVersion")
    before = v1.create_namespaced_config_map(NS, {"metadata": {"name": "before"}})
    rv0 = int(before.metadata.resource_version)
    a = v1.create_namespaced_config_map(NS, {"metadata": {"name": "a"}, "data": {"v": "1"}})
    a2 = v1.patch_namespaced_config_map("a", NS, {"data": {"v": "2"}})
    b = v1.create_namespaced_config_map(NS, {"metadata": {"name": "b"}})
    v1.delete_namespaced_config_map("b", NS)

    def live(i, _e):
        if i == 4:  # the history is through: change something while the watch is open
            v1.patch_namespaced_config_map("a", NS, {"data": {"v": "3"}})

    evs = events(v1.list_namespaced_config_map, NS, count=5, resource_version=str(rv0),
                 on_event=live)
    check_eq(summary(evs), [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "b"),
                            ("MODIFIED", "a")], "events after the resourceVersion")
    rvs = [rv for _, _, rv, _ in evs]
    check(all(rv > rv0 for rv in rvs), f"every event is after {rv0}: {rvs}")
    check_eq(rvs, sorted(set(rvs)), "resourceVersions increase")
    check_eq(rvs[0], int(a.metadata.resource_version), "ADDED carries the created version")
    check_eq(rvs[1], int(a2.metadata.resource_version), "MODIFIED carries the patched version")
    check_eq(rvs[2], int(b.metadata.resource_version), "ADDED b")
    check(rvs[3] > rvs[2], "DELETED carries the deletion's resourceVersion")
    check_eq(evs[0][3].data, {"v": "1"}, "ADDED object as created")
    check_eq(evs[1][3].data, {"v": "2"}, "MODIFIED object as patched")
    check_eq(evs[4][3].data, {"v": "3"}, "the live change")
    check_eq(type(evs[0][3]).__name__, "V1ConfigMap", "events are typed")

    step("resume from the middle: only what came after")
    evs2 = events(v1.list_namespaced_config_map, NS, count=3, resource_version=str(rvs[1]))
    check_eq([(t, n, rv) for t, n, rv, _ in evs2],
             [(t, n, rv) for t, n, rv, _ in evs[2:]], "events after the second one")

    step("no resourceVersion: ADDED for what exists, then changes")
    last = v1.read_namespaced_config_map("a", NS)

    def change(i, _e):
        if i == 2:
            v1.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})

    evs = events(v1.list_namespaced_config_map, NS, count=3, on_event=change)
    check_eq(sorted(summary(evs[:2])), [("ADDED", "a"), ("ADDED", "before")],
             "the initial events")
    a_initial = [e for e in evs[:2] if e[1] == "a"][0]
    check_eq(a_initial[2], int(last.metadata.resource_version), "initial event is the current a")
    check_eq(summary(evs[2:]), [("ADDED", "c")], "then the new object")

    step("label selector: entering and leaving the selection")
    start = int(v1.create_namespaced_config_map(NS, {"metadata": {
        "name": "sel", "labels": {"track": "no"}}}).metadata.resource_version)
    v1.create_namespaced_config_map(NS, {"metadata": {"name": "never", "labels": {"track": "no"}}})
    v1.patch_namespaced_config_map("sel", NS, {"metadata": {"labels": {"track": "yes"}}})
    v1.patch_namespaced_config_map("sel", NS, {"data": {"k": "v"}})
    v1.patch_namespaced_config_map("never", NS, {"data": {"k": "v"}})
    v1.patch_namespaced_config_map("sel", NS, {"metadata": {"labels": {"track": "no"}}})
    v1.patch_namespaced_config_map("sel", NS, {"metadata": {"labels": {"track": "yes"}}})
    v1.delete_namespaced_config_map("sel", NS)
    v1.delete_namespaced_config_map("never", NS)
    evs = events(v1.list_namespaced_config_map, NS, count=5, resource_version=str(start),
                 label_selector="track=yes")
    check_eq(summary(evs), [("ADDED", "sel"), ("MODIFIED", "sel"), ("DELETED", "sel"),
                            ("ADDED", "sel"), ("DELETED", "sel")], "events of the selection")
    check_eq(evs[1][3].data, {"k": "v"}, "MODIFIED inside the selection")
    check_eq(evs[2][3].metadata.labels, {"track": "yes"},
             "leaving the selection: DELETED carries the last state that matched")
    rvs = [rv for _, _, rv, _ in evs]
    check_eq(rvs, sorted(set(rvs)), "resourceVersions increase")

    step("field selector: one object by name")
    start = int(v1.read_namespaced_config_map("c", NS).metadata.resource_version)
    v1.patch_namespaced_config_map("a", NS, {"data": {"v": "4"}})
    v1.patch_namespaced_config_map("c", NS, {"data": {"v": "1"}})
    v1.delete_namespaced_config_map("c", NS)
    evs = events(v1.list_namespaced_config_map, NS, count=2, resource_version=str(start),
                 field_selector="metadata.name=c")
    check_eq(summary(evs), [("MODIFIED", "c"), ("DELETED", "c")], "events of c only")

    step("all namespaces, cluster-scoped namespaces, apps/v1 deployments")
    start = v1.list_config_map_for_all_namespaces().metadata.resource_version
    v1.create_namespace({"metadata": {"name": "second"}})
    v1.create_namespaced_config_map("second", {"metadata": {"name": "s"}})
    evs = events(v1.list_config_map_for_all_namespaces, count=1, resource_version=start)
    check_eq([(t, o.metadata.namespace, n) for t, n, _, o in evs], [("ADDED", "second", "s")],
             "a watch across namespaces")
    evs = events(v1.list_namespace, count=1, resource_version=start)
    check_eq(summary(evs), [("ADDED", "second")], "a watch of namespaces")
    check_eq(evs[0][3].status.phase, "Active", "namespace event object")
    dep_start = v1.list_namespace().metadata.resource_version
    labels = {"app": "w"}
    apps.create_namespaced_deployment(NS, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="w"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="img:1")])))))
    apps.patch_namespaced_deployment("w", NS, {"spec": {"replicas": 4}})
    evs = events(apps.list_namespaced_deployment, NS, count=2, resource_version=dep_start)
    check_eq(summary(evs), [("ADDED", "w"), ("MODIFIED", "w")], "deployment events")
    check_eq(type(evs[0][3]).__name__, "V1Deployment", "typed deployment events")
    check_eq((evs[0][3].spec.replicas, evs[1][3].spec.replicas), (1, 4), "replicas in the events")


run(main)
