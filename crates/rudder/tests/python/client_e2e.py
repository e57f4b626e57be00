"""What the official Python client's own e2e suites (kubernetes/e2e_test, dynamic/test_client.py)
rely on, checked against Rudder: query booleans spelled as Python spells them (`watch=True`),
`Accept: …;as=PartialObjectMetadata[List]` through the dynamic client and raw requests (lists,
objects, watch events; 406 for conversions that are not served), the APIServices a server
registers for its own group/versions, and Status bodies byte for byte as upstream writes them
(Go's field order and the encoder's trailing newline)."""

import json

from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient

from common import check, check_eq, expect_status, run, step

NS = "clientsuite"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
PARTIAL = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
NOT_ACCEPTABLE = ("only the following media types are accepted: application/json, "
                  "application/yaml, application/vnd.kubernetes.protobuf")


def raw(api, method, path, headers=None):
    """A request with the client's TLS identity and nothing else: (status, body bytes, headers)."""
    h = {"Accept": "application/json"}
    h.update(headers or {})
    token = api.configuration.api_key.get("authorization") or api.configuration.api_key.get(
        "BearerToken")
    if token:
        h["Authorization"] = token
    r = api.rest_client.pool_manager.request(method, api.configuration.host + path, headers=h,
                                             timeout=60)
    return r.status, r.data, r.headers


def lines(body):
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def check_partial(obj, what):
    check_eq(obj.get("kind"), "PartialObjectMetadata", f"{what}: kind")
    check_eq(obj.get("apiVersion"), "meta.k8s.io/v1", f"{what}: apiVersion")
    check_eq(sorted(obj), ["apiVersion", "kind", "metadata"], f"{what}: fields")


def main(api):
    v1 = client.CoreV1Api(api)
    v1.create_namespace({"metadata": {"name": NS}})
    for name in ["one", "two"]:
        v1.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": {"k": "v"}},
                                             "data": {"key": name}})
    base = f"/api/v1/namespaces/{NS}/configmaps"

    step("watch=True (and every spelling but false/0) is a watch, as apimachinery decodes it")
    for spelling in ["True", "true", "1", "TRUE", "yes", ""]:
        status, body, headers = raw(api, "GET", f"{base}?watch={spelling}&timeoutSeconds=1")
        check_eq(status, 200, f"watch={spelling!r}: HTTP status")
        evs = lines(body)
        check_eq([(e.get("type"), e["object"]["metadata"]["name"]) for e in evs],
                 [("ADDED", "one"), ("ADDED", "two")], f"watch={spelling!r}: events")
        check(body.startswith(b'{"type":"ADDED","object":{'),
              f"watch={spelling!r}: an event is written type first, as upstream: {body[:40]!r}")
    for spelling in ["false", "False", "0"]:
        status, body, _ = raw(api, "GET", f"{base}?watch={spelling}")
        check_eq(status, 200, f"watch={spelling!r}: HTTP status")
        check_eq(json.loads(body).get("kind"), "ConfigMapList", f"watch={spelling!r} lists")

    step("the client's own Watch().stream, which sends watch=True")
    w = watch.Watch()
    seen = []
    for e in w.stream(v1.list_namespaced_config_map, NS, timeout_seconds=5):
        seen.append((e["type"], e["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    check_eq(seen, [("ADDED", "one"), ("ADDED", "two")], "Watch().stream events")

    step("PartialObjectMetadataList through the dynamic client (any case of the header name)")
    dyn = DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    for header in ["Accept", "aCcePt"]:
        resp = cms.get(namespace=NS, header_params={header: PARTIAL_LIST})
        check_eq(resp.kind, "PartialObjectMetadataList", f"{header}: kind")
        check_eq(resp.apiVersion, "meta.k8s.io/v1", f"{header}: apiVersion")
        items = resp.to_dict()["items"]
        check_eq([i["metadata"]["name"] for i in items], ["one", "two"], f"{header}: items")
        for i in items:
            check_partial(i, f"{header}: item {i['metadata']['name']}")
    nodes = dyn.resources.get(api_version="v1", kind="Node")
    check_eq(nodes.get(header_params={"Accept": PARTIAL_LIST}).kind,
             "PartialObjectMetadataList", "nodes as PartialObjectMetadataList")

    step("PartialObjectMetadata of one object; the first acceptable entry of a list wins")
    status, body, _ = raw(api, "GET", f"{base}/one", {"Accept": PARTIAL})
    check_eq(status, 200, "one object as PartialObjectMetadata")
    obj = json.loads(body)
    check_partial(obj, "one object")
    check_eq(obj["metadata"]["labels"], {"k": "v"}, "its metadata")
    accept = ("application/json;as=PartialObjectMetadata;v=v1alpha1;g=meta.k8s.io, "
              "application/json")
    status, body, _ = raw(api, "GET", f"{base}/one", {"Accept": accept})
    check_eq((status, json.loads(body).get("kind")), (200, "ConfigMap"),
             "an unserved conversion followed by plain JSON")
    status, body, _ = raw(api, "GET", f"{base}/one", {
        "Accept": "application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io, " + PARTIAL})
    check_eq(json.loads(body).get("apiVersion"), "meta.k8s.io/v1beta1",
             "the first acceptable entry (v1beta1) wins")

    step("watch events as PartialObjectMetadata")
    status, body, _ = raw(api, "GET", f"{base}?watch=true&timeoutSeconds=1", {"Accept": PARTIAL})
    evs = lines(body)
    check_eq(len(evs), 2, f"watch events {evs}")
    for e in evs:
        check_partial(e["object"], f"watch event {e}")

    step("406 NotAcceptable for a conversion that is not served")
    for accept, path, message in [
        ("application/json;as=Foo;g=meta.k8s.io;v=v1", base, NOT_ACCEPTABLE),
        ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta2", base,
         NOT_ACCEPTABLE),
        (PARTIAL, base, "you requested PartialObjectMetadata, but the requested object is a "
                        "list (*core.ConfigMapList)"),
        (PARTIAL_LIST, f"{base}/one", "you requested PartialObjectMetadataList, but the "
                                      "requested object is not a list (*core.ConfigMap)"),
    ]:
        status, body, _ = raw(api, "GET", path, {"Accept": accept})
        check_eq(status, 406, f"{accept} on {path}: HTTP status ({body!r})")
        st = json.loads(body)
        check_eq((st["kind"], st["status"], st["reason"], st["code"]),
                 ("Status", "Failure", "NotAcceptable", 406), f"{accept}: Status")
        check_eq(st["message"], message, f"{accept}: message")

    step("APIServices of the built-in group/versions")
    reg = client.ApiregistrationV1Api(api)
    names = [s.metadata.name for s in reg.list_api_service().items]
    for want in ["v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.apiregistration.k8s.io",
                 "v1.coordination.k8s.io"]:
        check(want in names, f"APIService {want} in {names}")
    apps = reg.read_api_service("v1.apps")
    check_eq((apps.spec.group, apps.spec.version, apps.spec.group_priority_minimum,
              apps.spec.version_priority, apps.spec.service),
             ("apps", "v1", 17800, 15, None), "v1.apps spec")
    cond = [c for c in apps.status.conditions if c.type == "Available"]
    check_eq([(c.status, c.reason) for c in cond], [("True", "Local")], "v1.apps Available")
    core = reg.read_api_service("v1.")
    check_eq((core.spec.group, core.spec.version, core.spec.group_priority_minimum,
              core.spec.version_priority), (None, "v1", 18000, 1), "v1. spec")
    status, body, _ = raw(api, "GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1.apps")
    check('"service":null' in body.decode(), f"spec.service is written as null: {body!r}")
    expect_status(404, "NotFound", reg.read_api_service, "v1.nothing")

    step("Status bodies are upstream's bytes")
    status, body, _ = raw(api, "GET", f"{base}/missing")
    check_eq(status, 404, "missing configmap")
    check_eq(body.decode(),
             '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
             '"message":"configmaps \\"missing\\" not found","reason":"NotFound",'
             '"details":{"name":"missing","kind":"configmaps"},"code":404}\n',
             "NotFound Status")
    status, body, _ = raw(api, "GET", "/apis/apps/v1/namespaces/x/deployments/y")
    check_eq(body.decode(),
             '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
             '"message":"deployments.apps \\"y\\" not found","reason":"NotFound",'
             '"details":{"name":"y","group":"apps","kind":"deployments"},"code":404}\n',
             "NotFound Status of a grouped resource")
    st = expect_status(409, "AlreadyExists", v1.create_namespaced_config_map, NS,
                       {"metadata": {"name": "one"}})
    check_eq(st["message"], 'configmaps "one" already exists', "AlreadyExists message")
    uid = v1.read_namespaced_config_map("two", NS).metadata.uid
    status, body, _ = raw(api, "DELETE", f"{base}/two")
    check_eq(status, 200, "delete")
    check_eq(body.decode(),
             '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",'
             f'"details":{{"name":"two","kind":"configmaps","uid":"{uid}"}}}}\n',
             "the delete's success Status")
    status, body, _ = raw(api, "GET", f"{base}?fieldSelector=a%3Cb%3E%26c")
    check(b"\\u003c" in body and b"\\u0026" in body and b"<" not in body,
          f"<, > and & are escaped as Go escapes them: {body!r}")


if __name__ == "__main__":
    run(main)
