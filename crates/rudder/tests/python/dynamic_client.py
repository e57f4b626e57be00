"""kubernetes.dynamic.DynamicClient: discovery (groups, versions, resources with their verbs,
short names, categories, scope and subresources), then get, list, create, patch, replace,
delete and watch through the discovered resources, and its NotFoundError on a 404."""

from kubernetes import dynamic
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

from common import check, check_eq, run, step

NS = "default"


def main(api):
    dc = dynamic.DynamicClient(api)

    step("discovery")
    version = dc.version["kubernetes"]
    check_eq((version["major"], version["minor"]), ("1", "33"), f"server version {version}")
    check(version["gitVersion"].startswith("v1.33."), f"gitVersion {version['gitVersion']}")

    cms = dc.resources.get(api_version="v1", kind="ConfigMap")
    check_eq((cms.name, cms.namespaced, cms.group, cms.api_version), ("configmaps", True, "", "v1"),
             "ConfigMap resource")
    check_eq(cms.short_names, ["cm"], "ConfigMap short names")
    for verb in ["create", "delete", "get", "list", "patch", "update", "watch"]:
        check(verb in cms.verbs, f"configmaps verbs {cms.verbs} include {verb}")

    deploy = dc.resources.get(api_version="apps/v1", kind="Deployment")
    check_eq((deploy.name, deploy.namespaced, deploy.group_version),
             ("deployments", True, "apps/v1"), "Deployment resource")
    check_eq(deploy.short_names, ["deploy"], "Deployment short names")
    check("all" in deploy.categories, f"deployments are in category all: {deploy.categories}")
    check("status" in deploy.subresources, f"deployments/status: {list(deploy.subresources)}")

    ns = dc.resources.get(api_version="v1", kind="Namespace")
    check_eq((ns.name, ns.namespaced, ns.short_names), ("namespaces", False, ["ns"]),
             "Namespace resource")
    svc = dc.resources.get(api_version="v1", kind="Service")
    check_eq((svc.name, svc.short_names), ("services", ["svc"]), "Service resource")
    check("status" in svc.subresources, f"services/status: {list(svc.subresources)}")

    check_eq(dc.resources.get(kind="Deployment").group_version, "apps/v1",
             "a kind found without its group")
    found = {(r.group_version, r.kind) for r in dc.resources.search(group="apps")}
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]:
        check(("apps/v1", kind) in found, f"apps/v1 {kind} found by group: {sorted(found)}")
    groups = set(dc.resources.parse_api_groups(request_resources=False)["apis"])
    for g in ["apps", "batch", "autoscaling", "rbac.authorization.k8s.io", "networking.k8s.io"]:
        check(g in groups, f"group {g} discovered: {sorted(groups)}")
    try:
        dc.resources.get(api_version="v1", kind="NoSuchKind")
        check(False, "an unknown kind is not found")
    except ResourceNotFoundError:
        pass

    step("get: the built-in objects")
    kubernetes = svc.get(name="kubernetes", namespace=NS)
    check_eq(kubernetes.spec.clusterIP, "10.43.0.1", "the kubernetes service's clusterIP")
    check_eq(kubernetes.metadata.labels["component"], "apiserver", "its labels")
    names = [n.metadata.name for n in ns.get().items]
    check_eq(names, ["default", "kube-node-lease", "kube-public", "kube-system"],
             "the built-in namespaces")
    check_eq(ns.get().kind, "NamespaceList", "list kind")
    check_eq([s.metadata.name for s in svc.get(label_selector="component=apiserver").items],
             ["kubernetes"], "a list across namespaces with a label selector")

    step("create, get, patch, replace, delete a ConfigMap")
    created = cms.create(namespace=NS, body={
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dyn", "labels": {"via": "dynamic"}}, "data": {"a": "1"}})
    check_eq(created.data.a, "1", "created data")
    got = cms.get(name="dyn", namespace=NS)
    check_eq(got.metadata.uid, created.metadata.uid, "get the created object")
    check_eq([i.metadata.name for i in cms.get(namespace=NS, label_selector="via=dynamic").items],
             ["dyn"], "list with a label selector")
    merged = cms.patch(name="dyn", namespace=NS, body={"data": {"b": "2"}},
                       content_type="application/merge-patch+json")
    check_eq(merged.to_dict()["data"], {"a": "1", "b": "2"}, "merge patch")
    smp = cms.patch(name="dyn", namespace=NS, body={"data": {"c": "3"}},
                    content_type="application/strategic-merge-patch+json")
    check_eq(smp.to_dict()["data"], {"a": "1", "b": "2", "c": "3"}, "strategic merge patch")
    body = smp.to_dict()
    body["data"] = {"only": "this"}
    replaced = cms.replace(namespace=NS, body=body)
    check_eq(replaced.to_dict()["data"], {"only": "this"}, "replace")
    try:
        cms.replace(namespace=NS, body=body)  # body still holds the old resourceVersion
        check(False, "a replace with a stale resourceVersion is refused")
    except ConflictError as e:
        check_eq(e.status, 409, "stale replace status")
    deleted = cms.delete(name="dyn", namespace=NS)
    check_eq((deleted.kind, deleted.status), ("Status", "Success"), "delete answers a Status")
    try:
        cms.get(name="dyn", namespace=NS)
        check(False, "a deleted object is not found")
    except NotFoundError as e:
        check_eq(e.status, 404, "NotFoundError status")
        check('configmaps "dyn" not found' in e.summary(), f"NotFoundError summary {e.summary()}")

    step("create and read a Deployment through discovery")
    labels = {"app": "dyn"}
    deploy.create(namespace=NS, body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dyn"},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "registry.local/app:1"}]}}}})
    d = deploy.get(name="dyn", namespace=NS)
    check_eq((d.spec.replicas, d.spec.strategy.type), (1, "RollingUpdate"), "defaults")
    status = deploy.status.get(name="dyn", namespace=NS)
    check_eq(status.metadata.name, "dyn", "the status subresource")

    step("watch through the dynamic client")
    start = cms.get(namespace=NS).metadata.resourceVersion
    cms.create(namespace=NS, body={"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "watched"}})
    cms.delete(name="watched", namespace=NS)
    seen = []
    for event in cms.watch(namespace=NS, resource_version=start, timeout=60):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            break
    check_eq(seen, [("ADDED", "watched"), ("DELETED", "watched")], "dynamic watch events")


run(main)
