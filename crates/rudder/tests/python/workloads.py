"""Namespaces, Deployments (apps/v1) and Services through the typed CoreV1Api and AppsV1Api:
create with typed models, upstream's defaults, read, replace (409 on a stale resourceVersion),
strategic merge patches that merge lists by key, ClusterIP and NodePort allocation, deletion
with the Orphan, Foreground and Background propagation policies, and namespace deletion."""

import ipaddress
import time

from kubernetes import client

from common import as_dict, check, check_eq, expect_status, run, step

NS = "team-a"
SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")


def deployment(name, image="registry.local/web:1.0", replicas=2):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(
                        name="app", image=image,
                        ports=[client.V1ContainerPort(container_port=8080)]),
                ]),
            ),
        ),
    )


def wait_gone(read, what):
    """Polls `read` until it answers 404 (deletion that finishes in the background)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            read()
        except client.ApiException as e:
            if e.status == 404:
                return
            raise
        time.sleep(0.2)
    check(False, f"{what} still exists 60 s after its deletion")


def drop_finalizer(read, patch, finalizer, what):
    """Removes `finalizer` as its owner (the garbage collector) would, then the object must go."""
    try:
        obj = read()
    except client.ApiException as e:
        if e.status == 404:
            return  # a garbage collector already finished it
        raise
    rest = [f for f in (obj.metadata.finalizers or []) if f != finalizer]
    patch([{"op": "replace", "path": "/metadata/finalizers", "value": rest}])
    wait_gone(read, what)


def namespaces(v1):
    step("namespace: create with a typed model")
    ns = v1.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NS, labels={"team": "a"})))
    check_eq(ns.status.phase, "Active", "a new namespace is Active")
    check_eq(ns.spec.finalizers, ["kubernetes"], "namespace spec.finalizers")
    check_eq(ns.metadata.labels, {"team": "a", "kubernetes.io/metadata.name": NS},
             "the name label is added")
    names = [n.metadata.name for n in v1.list_namespace().items]
    for want in ["default", "kube-node-lease", "kube-public", "kube-system", NS]:
        check(want in names, f"namespace {want} listed: {names}")

    step("namespace: replace, stale replace, patch")
    got = v1.read_namespace(NS)
    stale = got.metadata.resource_version
    got.metadata.labels["env"] = "test"
    replaced = v1.replace_namespace(NS, got)
    check_eq(replaced.metadata.labels.get("env"), "test", "replaced namespace labels")
    got.metadata.resource_version = stale
    expect_status(409, "Conflict", v1.replace_namespace, NS, got)
    patched = v1.patch_namespace(NS, {"metadata": {"annotations": {"owner": "team-a"}}})
    check_eq(patched.metadata.annotations, {"owner": "team-a"}, "namespace annotation")
    check_eq(patched.metadata.labels.get("env"), "test", "patch keeps the labels")
    check_eq([n.metadata.name for n in v1.list_namespace(label_selector="team=a").items], [NS],
             "namespaces by label")
    expect_status(404, "NotFound", v1.read_namespace, "nowhere")
    st = expect_status(404, "NotFound", v1.create_namespaced_config_map, "nowhere",
                       {"metadata": {"name": "x"}})
    check_eq(st["message"], 'namespaces "nowhere" not found', "content needs its namespace")


def deployments(apps):
    step("deployment: create with a typed model, upstream's defaults")
    d = apps.create_namespaced_deployment(NS, deployment("web"))
    check_eq(d.metadata.generation, 1, "generation")
    check_eq(d.spec.replicas, 2, "replicas")
    check_eq(d.spec.strategy.type, "RollingUpdate", "default strategy")
    check_eq(as_dict(d.spec.strategy.rolling_update), {"maxSurge": "25%", "maxUnavailable": "25%"},
             "default rollingUpdate")
    check_eq(d.spec.revision_history_limit, 10, "default revisionHistoryLimit")
    check_eq(d.spec.progress_deadline_seconds, 600, "default progressDeadlineSeconds")
    pod = d.spec.template.spec
    check_eq(pod.restart_policy, "Always", "default restartPolicy")
    check_eq(pod.dns_policy, "ClusterFirst", "default dnsPolicy")
    check_eq(pod.termination_grace_period_seconds, 30, "default terminationGracePeriodSeconds")
    check_eq(pod.containers[0].image_pull_policy, "IfNotPresent", "pull policy of a tagged image")
    check_eq(pod.containers[0].ports[0].protocol, "TCP", "default port protocol")

    step("deployment: read, replace, stale replace")
    got = apps.read_namespaced_deployment("web", NS)
    check_eq(got.metadata.uid, d.metadata.uid, "read the created deployment")
    stale = got.metadata.resource_version
    got.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("web", NS, got)
    check_eq(replaced.spec.replicas, 3, "replaced replicas")
    check_eq(replaced.metadata.generation, 2, "a spec change bumps the generation")
    got.metadata.resource_version = stale
    got.spec.replicas = 5
    st = expect_status(409, "Conflict", apps.replace_namespaced_deployment, "web", NS, got)
    check_eq(st["details"], {"name": "web", "group": "apps", "kind": "deployments"},
             "Conflict details")
    check(st["message"].startswith('Operation cannot be fulfilled on deployments.apps "web"'),
          f"Conflict message: {st['message']}")
    check_eq(apps.read_namespaced_deployment("web", NS).spec.replicas, 3,
             "a refused replace writes nothing")

    step("deployment: strategic merge patch merges containers by name")
    p = apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.local/web:2.0"},
        {"name": "sidecar", "image": "registry.local/proxy:1.0"},
    ]}}}})
    cs = {c.name: c for c in p.spec.template.spec.containers}
    check_eq(sorted(cs), ["app", "sidecar"], "containers after the patch")
    check_eq(cs["app"].image, "registry.local/web:2.0", "patched image")
    check_eq(cs["app"].ports[0].container_port, 8080, "the patch keeps the app's ports")
    check_eq(cs["sidecar"].image_pull_policy, "IfNotPresent", "the new container is defaulted")
    check_eq(p.metadata.generation, 3, "generation after the patch")
    p = apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"spec": {"containers": [
        {"$patch": "delete", "name": "sidecar"},
    ]}}}})
    check_eq([c.name for c in p.spec.template.spec.containers], ["app"], "$patch: delete")
    p = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"tier": "front"}}})
    check_eq(p.metadata.labels, {"app": "web", "tier": "front"}, "labels merged")
    check_eq(p.metadata.generation, 4, "a metadata patch keeps the generation")

    step("deployment: 422 Invalid with several causes")
    bad = deployment("bad", replicas=-1)
    bad.spec.template.metadata.labels = {"app": "other"}
    st = expect_status(422, "Invalid", apps.create_namespaced_deployment, NS, bad)
    check_eq(st["details"]["kind"], "Deployment", "Invalid details.kind")
    check_eq(st["details"]["group"], "apps", "Invalid details.group")
    fields = sorted(c["field"] for c in st["details"]["causes"])
    check_eq(fields, ["spec.replicas", "spec.template.metadata.labels"], "Invalid causes")
    expect_status(404, "NotFound", apps.read_namespaced_deployment, "bad", NS)

    step("deployment: list across namespaces")
    all_names = [(x.metadata.namespace, x.metadata.name)
                 for x in apps.list_deployment_for_all_namespaces().items]
    check_eq(all_names, [(NS, "web")], "deployments in all namespaces")

    step("deployment: delete with propagationPolicy=Orphan")
    out = as_dict(apps.delete_namespaced_deployment("web", NS, propagation_policy="Orphan"))
    # The object is kept, marked for deletion, until the garbage collector has orphaned its
    # dependents and removed the finalizer.
    check_eq(out.get("kind"), "Deployment", f"Orphan answers with the object: {out}")
    check(out["metadata"].get("deletionTimestamp"), "deletionTimestamp is set")
    check("orphan" in out["metadata"].get("finalizers", []), f"orphan finalizer: {out['metadata']}")
    drop_finalizer(lambda: apps.read_namespaced_deployment("web", NS),
                   lambda body: apps.patch_namespaced_deployment("web", NS, body),
                   "orphan", "deployment web")
    expect_status(404, "NotFound", apps.read_namespaced_deployment, "web", NS)

    step("deployment: delete with propagationPolicy=Foreground")
    apps.create_namespaced_deployment(NS, deployment("api"))
    out = as_dict(apps.delete_namespaced_deployment("api", NS, propagation_policy="Foreground"))
    check_eq(out.get("kind"), "Deployment", f"Foreground answers with the object: {out}")
    check(out["metadata"].get("deletionTimestamp"), "deletionTimestamp is set")
    check("foregroundDeletion" in out["metadata"].get("finalizers", []),
          f"foregroundDeletion finalizer: {out['metadata']}")
    drop_finalizer(lambda: apps.read_namespaced_deployment("api", NS),
                   lambda body: apps.patch_namespaced_deployment("api", NS, body),
                   "foregroundDeletion", "deployment api")

    step("deployment: delete with propagationPolicy=Background")
    apps.create_namespaced_deployment(NS, deployment("batch"))
    out = as_dict(apps.delete_namespaced_deployment("batch", NS, propagation_policy="Background"))
    check_eq((out.get("kind"), out.get("status")), ("Status", "Success"), f"Background: {out}")
    check_eq(out["details"]["group"], "apps", "delete details.group")
    expect_status(404, "NotFound", apps.read_namespaced_deployment, "batch", NS)
    expect_status(404, "NotFound", apps.delete_namespaced_deployment, "batch", NS)


def services(v1):
    step("service: a ClusterIP is allocated")
    svc = v1.create_namespaced_service(NS, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[client.V1ServicePort(name="http", port=80, target_port=8080)]),
    ))
    ip = svc.spec.cluster_ip
    check(ip and ipaddress.ip_address(ip) in SERVICE_CIDR, f"clusterIP {ip!r} in {SERVICE_CIDR}")
    check(ip != "10.43.0.1", "10.43.0.1 belongs to the kubernetes service")
    check_eq(svc.spec.cluster_ips, [ip], "clusterIPs")
    check_eq(svc.spec.type, "ClusterIP", "default type")
    check_eq(svc.spec.ip_families, ["IPv4"], "ipFamilies")
    check_eq(svc.spec.ip_family_policy, "SingleStack", "ipFamilyPolicy")
    check_eq(svc.spec.session_affinity, "None", "sessionAffinity")
    check_eq(svc.spec.internal_traffic_policy, "Cluster", "internalTrafficPolicy")
    check_eq(svc.spec.ports[0].protocol, "TCP", "port protocol")
    check_eq(svc.spec.ports[0].target_port, 8080, "targetPort")
    check_eq(v1.read_namespaced_service("web", NS).spec.cluster_ip, ip, "read clusterIP")

    step("service: every service its own address; headless; NodePort")
    other = v1.create_namespaced_service(
        NS, {"metadata": {"name": "api"}, "spec": {"ports": [{"port": 443}]}})
    check(other.spec.cluster_ip not in (ip, "10.43.0.1"),
          f"distinct clusterIPs: {ip} and {other.spec.cluster_ip}")
    check_eq(other.spec.ports[0].target_port, 443, "targetPort defaults to the port")
    headless = v1.create_namespaced_service(NS, {"metadata": {"name": "db"}, "spec": {
        "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})
    check_eq(headless.spec.cluster_ip, "None", "headless clusterIP")
    np = v1.create_namespaced_service(NS, {"metadata": {"name": "edge"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80}]}})
    node_port = np.spec.ports[0].node_port
    check(node_port is not None and 30000 <= node_port <= 32767, f"nodePort {node_port}")
    check(ipaddress.ip_address(np.spec.cluster_ip) in SERVICE_CIDR, "a NodePort has a clusterIP")
    check_eq(np.spec.external_traffic_policy, "Cluster", "externalTrafficPolicy")
    st = expect_status(422, "Invalid", v1.create_namespaced_service, NS, {
        "metadata": {"name": "taken"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
    check_eq([c["field"] for c in st["details"]["causes"]], ["spec.clusterIPs"],
             "an allocated address is refused")

    step("service: replace keeps the address; it cannot change")
    got = v1.read_namespaced_service("web", NS)
    got.spec.ports[0].port = 8000
    replaced = v1.replace_namespaced_service("web", NS, got)
    check_eq((replaced.spec.cluster_ip, replaced.spec.ports[0].port), (ip, 8000),
             "replace keeps the clusterIP")
    body = as_dict(replaced)
    del body["spec"]["clusterIP"], body["spec"]["clusterIPs"]
    check_eq(v1.replace_namespaced_service("web", NS, body).spec.cluster_ip, ip,
             "a replace that leaves the clusterIP out keeps it")
    body = as_dict(v1.read_namespaced_service("web", NS))
    addr = ipaddress.ip_address(ip)
    moved = addr + 1 if addr + 1 in SERVICE_CIDR else addr - 1
    body["spec"]["clusterIP"] = body["spec"]["clusterIPs"][0] = str(moved)
    st = expect_status(422, "Invalid", v1.replace_namespaced_service, "web", NS, body)
    check_eq([c["field"] for c in st["details"]["causes"]], ["spec.clusterIPs[0]"],
             "clusterIP is immutable")
    stale = as_dict(got)
    stale["spec"]["ports"][0]["port"] = 9000
    expect_status(409, "Conflict", v1.replace_namespaced_service, "web", NS, stale)
    p = v1.patch_namespaced_service("web", NS, {"spec": {"ports": [
        {"name": "metrics", "port": 9090}]}})
    check_eq(sorted(pt.name for pt in p.spec.ports), ["http", "metrics"],
             "strategic merge patch merges ports by port number")

    step("service: delete frees the address")
    # (Not deserialized: the client expects the deleted Service, as upstream answers; Rudder
    # answers with a Status, which the client cannot read as a Service.)
    resp = v1.delete_namespaced_service("web", NS, propagation_policy="Background",
                                        _preload_content=False)
    check_eq(resp.status, 200, "delete service HTTP status")
    expect_status(404, "NotFound", v1.read_namespaced_service, "web", NS)
    again = v1.create_namespaced_service(NS, {"metadata": {"name": "again"}, "spec": {
        "clusterIP": ip, "ports": [{"port": 80}]}})
    check_eq(again.spec.cluster_ip, ip, "a freed clusterIP can be asked for again")


def namespace_deletion(v1):
    step("namespace: delete marks it Terminating; emptied and finalized, it goes")
    out = as_dict(v1.delete_namespace(NS))
    check_eq(out.get("kind"), "Namespace", f"namespace delete answers with the namespace: {out}")
    check_eq(out["status"]["phase"], "Terminating", "phase after delete")
    check(out["metadata"].get("deletionTimestamp"), "deletionTimestamp is set")
    check_eq(out["spec"]["finalizers"], ["kubernetes"], "spec.finalizers while terminating")
    # No controllers run here: do the namespace controller's part through the API.
    for svc in v1.list_namespaced_service(NS).items:
        v1.delete_namespaced_service(svc.metadata.name, NS)
    for cm in v1.list_namespaced_config_map(NS).items:
        v1.delete_namespaced_config_map(cm.metadata.name, NS)
    check_eq(v1.read_namespace(NS).status.phase, "Terminating", "still Terminating")
    ns = v1.read_namespace(NS)
    ns.spec.finalizers = []
    v1.replace_namespace_finalize(NS, ns)
    wait_gone(lambda: v1.read_namespace(NS), f"namespace {NS}")
    for kind, items in [("services", v1.list_namespaced_service(NS).items),
                        ("configmaps", v1.list_namespaced_config_map(NS).items)]:
        check_eq([i.metadata.name for i in items], [], f"{kind} left in the deleted namespace")


def main(api):
    v1 = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    namespaces(v1)
    deployments(apps)
    services(v1)
    namespace_deletion(v1)


run(main)
