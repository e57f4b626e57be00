"""Server-side apply through the official client's DynamicClient.server_side_apply: create on
apply, managedFields (manager, operation, fieldsV1), a conflict (409 naming the field and its
manager), force_conflicts, fields removed when their only applier stops applying them, dry run,
and fieldManager required for apply."""

import json

from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from common import check, check_eq, expect_status, run, step

NS = "default"


def cm(data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}


def entries(obj):
    return {(m["manager"], m["operation"]): m for m in obj["metadata"]["managedFields"]}


def main(api):
    dc = dynamic.DynamicClient(api)
    cms = dc.resources.get(api_version="v1", kind="ConfigMap")

    step("apply creates")
    created = cms.server_side_apply(body=cm({"a": "1", "b": "2"}), namespace=NS,
                                    field_manager="py").to_dict()
    check_eq(created["data"], {"a": "1", "b": "2"}, "created data")
    e = entries(created)
    check(("py", "Apply") in e, f"an Apply entry for py: {list(e)}")
    check_eq(e[("py", "Apply")]["fieldsType"], "FieldsV1", "fieldsType")
    check_eq(e[("py", "Apply")]["fieldsV1"], {"f:data": {"f:a": {}, "f:b": {}}}, "fieldsV1")
    check_eq(e[("py", "Apply")]["apiVersion"], "v1", "apiVersion of the entry")

    step("an update by another manager, then a conflicting apply")
    cms.patch(name="ssa", namespace=NS, body={"data": {"a": "changed"}},
              content_type="application/merge-patch+json", field_manager="editor")
    try:
        cms.server_side_apply(body=cm({"a": "1", "b": "2"}), namespace=NS, field_manager="py")
        raise AssertionError("the apply should conflict")
    except ApiException as ex:
        check_eq(ex.status, 409, "conflict status")
        st = json.loads(ex.body)
        check_eq(st["reason"], "Conflict", "reason")
        check_eq(st["message"],
                 'Apply failed with 1 conflict: conflict with "editor" using v1: .data.a',
                 "conflict message")
        check_eq(st["details"]["causes"],
                 [{"reason": "FieldManagerConflict", "message": 'conflict with "editor" using v1',
                   "field": ".data.a"}], "conflict causes")

    step("forced, and a field dropped from the configuration goes")
    forced = cms.server_side_apply(body=cm({"a": "1"}), namespace=NS, field_manager="py",
                                   force_conflicts=True).to_dict()
    check_eq(forced["data"], {"a": "1"}, "b removed, a taken back")
    check(("editor", "Update") not in entries(forced), f"editor owns nothing: {entries(forced)}")

    step("dry run")
    dry = cms.server_side_apply(body=cm({"a": "1", "c": "3"}), namespace=NS, field_manager="py",
                                dry_run="All").to_dict()
    check_eq(dry["data"], {"a": "1", "c": "3"}, "dry-run answer")
    check_eq(cms.get(name="ssa", namespace=NS).to_dict()["data"], {"a": "1"}, "not stored")

    step("fieldManager is required")
    def apply_without_manager():
        return cms.server_side_apply(body=cm({"a": "1"}), namespace=NS)

    st = expect_status(422, "Invalid", apply_without_manager)
    check_eq(st["message"],
             'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
             'is required for apply patch', "message")


run(main)
