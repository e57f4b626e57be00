"""ConfigMaps through CoreV1Api: create, read, replace (and 409 on a stale resourceVersion),
the three patch types, delete with a propagation policy and preconditions, and the Status
objects of 404 NotFound, 409 AlreadyExists and 422 Invalid."""

from kubernetes import client

from common import as_dict, check, check_eq, expect_status, run, step

NS = "default"


def main(api):
    v1 = client.CoreV1Api(api)

    step("create")
    cm = v1.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings", labels={"app": "web"}),
            data={"color": "blue", "size": "large"},
        ),
    )
    check_eq(cm.metadata.name, "settings", "created name")
    check_eq(cm.metadata.namespace, NS, "created namespace")
    check_eq(cm.data, {"color": "blue", "size": "large"}, "created data")
    check(cm.metadata.uid, "a uid is assigned")
    check(cm.metadata.creation_timestamp is not None, "creationTimestamp is set")
    rv1 = int(cm.metadata.resource_version)
    check(rv1 > 0, f"resourceVersion is a positive integer: {rv1}")

    st = expect_status(409, "AlreadyExists", v1.create_namespaced_config_map, NS,
                       {"metadata": {"name": "settings"}})
    check_eq(st["details"]["name"], "settings", "AlreadyExists details.name")
    check_eq(st["details"]["kind"], "configmaps", "AlreadyExists details.kind")
    check_eq(st["message"], 'configmaps "settings" already exists', "AlreadyExists message")

    step("read")
    got = v1.read_namespaced_config_map("settings", NS)
    check_eq(got.metadata.uid, cm.metadata.uid, "read returns the created object")
    check_eq(got.metadata.resource_version, cm.metadata.resource_version, "read resourceVersion")
    check_eq(got.metadata.labels, {"app": "web"}, "labels")

    step("replace")
    stale = got.metadata.resource_version
    got.data["color"] = "green"
    replaced = v1.replace_namespaced_config_map("settings", NS, got)
    check_eq(replaced.data, {"color": "green", "size": "large"}, "replaced data")
    check(int(replaced.metadata.resource_version) > rv1, "replace bumps the resourceVersion")
    check_eq(replaced.metadata.uid, cm.metadata.uid, "replace keeps the uid")
    check_eq(v1.read_namespaced_config_map("settings", NS).data["color"], "green",
             "the replacement is stored")

    step("replace with a stale resourceVersion: 409 Conflict")
    got.metadata.resource_version = stale
    got.data["color"] = "red"
    st = expect_status(409, "Conflict", v1.replace_namespaced_config_map, "settings", NS, got)
    check_eq(st["details"]["name"], "settings", "Conflict details.name")
    check_eq(st["details"]["kind"], "configmaps", "Conflict details.kind")
    check_eq(
        st["message"],
        'Operation cannot be fulfilled on configmaps "settings": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict message",
    )
    check_eq(v1.read_namespaced_config_map("settings", NS).data["color"], "green",
             "a refused replace writes nothing")

    step("replace without a resourceVersion is unconditional")
    body = {"metadata": {"name": "settings", "labels": {"app": "web"}},
            "data": {"color": "teal", "size": "large"}}
    replaced = v1.replace_namespaced_config_map("settings", NS, body)
    check_eq(replaced.data["color"], "teal", "unconditional replace")

    step("patch: a dict is a strategic merge patch")
    patched = v1.patch_namespaced_config_map("settings", NS, {"data": {"shape": "round"}})
    check_eq(patched.data, {"color": "teal", "size": "large", "shape": "round"},
             "strategic merge adds a key and keeps the others")
    patched = v1.patch_namespaced_config_map(
        "settings", NS, {"metadata": {"labels": {"tier": "front"}}, "data": {"size": None}})
    check_eq(patched.data, {"color": "teal", "shape": "round"}, "null deletes a key")
    check_eq(patched.metadata.labels, {"app": "web", "tier": "front"}, "labels merged")

    step("patch: a list is a JSON patch")
    patched = v1.patch_namespaced_config_map("settings", NS, [
        {"op": "replace", "path": "/data/color", "value": "black"},
        {"op": "remove", "path": "/data/shape"},
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "json-patch"}},
    ])
    check_eq(patched.data, {"color": "black"}, "JSON patch result")
    check_eq(patched.metadata.annotations, {"note": "json-patch"}, "JSON patch annotation")
    expect_status(422, "Invalid", v1.patch_namespaced_config_map, "settings", NS,
                  [{"op": "test", "path": "/data/color", "value": "white"}])
    check_eq(v1.read_namespaced_config_map("settings", NS).data, {"color": "black"},
             "a failed JSON patch test writes nothing")

    step("patch with a stale resourceVersion: 409 Conflict")
    expect_status(409, "Conflict", v1.patch_namespaced_config_map, "settings", NS,
                  {"metadata": {"resourceVersion": stale}, "data": {"color": "red"}})

    step("patch of a missing object: 404")
    expect_status(404, "NotFound", v1.patch_namespaced_config_map, "nope", NS,
                  {"data": {"a": "b"}})

    step("generateName")
    gen = v1.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
    check(gen.metadata.name.startswith("gen-") and len(gen.metadata.name) > len("gen-"),
          f"a name is generated from generateName: {gen.metadata.name}")

    step("dry run writes nothing")
    dry = v1.create_namespaced_config_map(NS, {"metadata": {"name": "dry"}}, dry_run="All")
    check_eq(dry.metadata.name, "dry", "dry-run create answers with the object")
    expect_status(404, "NotFound", v1.read_namespaced_config_map, "dry", NS)

    step("delete preconditions: 409 Conflict")
    st = expect_status(
        409, "Conflict", v1.delete_namespaced_config_map, "settings", NS,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=stale)))
    check("Precondition failed" in st["message"], f"precondition message: {st['message']}")
    expect_status(
        409, "Conflict", v1.delete_namespaced_config_map, "settings", NS,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid")))
    v1.read_namespaced_config_map("settings", NS)

    step("delete with propagationPolicy=Background")
    current = v1.read_namespaced_config_map("settings", NS)
    out = as_dict(v1.delete_namespaced_config_map("settings", NS, propagation_policy="Background"))
    check_eq(out.get("kind"), "Status", f"delete answers with a Status: {out}")
    check_eq(out.get("status"), "Success", "delete Status.status")
    check_eq(out["details"]["name"], "settings", "delete details.name")
    check_eq(out["details"]["uid"], current.metadata.uid, "delete details.uid")

    step("404 NotFound")
    st = expect_status(404, "NotFound", v1.read_namespaced_config_map, "settings", NS)
    check_eq(st["details"], {"name": "settings", "kind": "configmaps"}, "NotFound details")
    check_eq(st["message"], 'configmaps "settings" not found', "NotFound message")
    expect_status(404, "NotFound", v1.delete_namespaced_config_map, "settings", NS)
    expect_status(404, "NotFound", v1.replace_namespaced_config_map, "settings", NS,
                  {"metadata": {"name": "settings", "resourceVersion": stale}})
    names = [i.metadata.name for i in v1.list_namespaced_config_map(NS).items]
    check("settings" not in names, f"deleted object is not listed: {names}")

    step("invalid propagationPolicy: 422")
    st = expect_status(422, "Invalid", v1.delete_namespaced_config_map, gen.metadata.name, NS,
                       propagation_policy="Sideways")
    check_eq([c["field"] for c in st["details"]["causes"]], ["propagationPolicy"],
             "propagationPolicy cause")
    v1.read_namespaced_config_map(gen.metadata.name, NS)

    step("422 Invalid on an invalid name")
    st = expect_status(422, "Invalid", v1.create_namespaced_config_map, NS,
                       {"metadata": {"name": "Not_Valid"}, "data": {"a": "b"}})
    check_eq(st["details"]["name"], "Not_Valid", "Invalid details.name")
    check_eq(st["details"]["kind"], "ConfigMap", "Invalid details.kind")
    causes = st["details"]["causes"]
    check_eq(len(causes), 1, f"one cause: {causes}")
    check_eq(causes[0]["field"], "metadata.name", "cause field")
    check_eq(causes[0]["reason"], "FieldValueInvalid", "cause reason")
    check(causes[0]["message"].startswith(
        'Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain'),
        f"cause message: {causes[0]['message']}")
    check(st["message"].startswith(
        'ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value'),
        f"Invalid message: {st['message']}")
    expect_status(404, "NotFound", v1.read_namespaced_config_map, "Not_Valid", NS)

    step("422 Invalid on a bad label key, a bad data key, a missing name")
    st = expect_status(422, "Invalid", v1.create_namespaced_config_map, NS,
                       {"metadata": {"name": "bad-label", "labels": {"bad key!": "v"}}})
    check_eq([(c["field"], c["reason"]) for c in st["details"]["causes"]],
             [("metadata.labels", "FieldValueInvalid")], "label key cause")
    st = expect_status(422, "Invalid", v1.create_namespaced_config_map, NS,
                       {"metadata": {"name": "bad-data"}, "data": {"bad key": "v"}})
    check_eq([(c["field"], c["reason"]) for c in st["details"]["causes"]],
             [("data[bad key]", "FieldValueInvalid")], "data key cause")
    st = expect_status(422, "Invalid", v1.create_namespaced_config_map, NS, {"metadata": {}})
    check_eq([(c["field"], c["reason"]) for c in st["details"]["causes"]],
             [("metadata.name", "FieldValueRequired")], "missing name cause")


run(main)
