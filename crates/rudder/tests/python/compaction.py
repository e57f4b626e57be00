"""410 Gone once history is compacted. The server runs with automatic compaction every 100 ms
keeping one revision (`--compaction-retention 0 --compaction-keep-revisions 1
--compaction-interval 100ms`), the real path by which old revisions go. After waiting until a
list at a revision answers 410, a list at an older exact resourceVersion, a continue token from
before, and a watch from before are all refused with Status code 410, reason Expired; a
client that lists again and watches from the new resourceVersion gets its events."""

import json
import time

from kubernetes import client
from kubernetes.client.rest import ApiException

from common import check, check_eq, events, expect_status, run, step

NS = "default"


def wait_compacted(v1, rv):
    """Polls until revision `rv` is compacted away (a list at exactly `rv` answers 410)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            v1.list_namespaced_config_map(NS, resource_version=str(rv),
                                          resource_version_match="Exact")
        except ApiException as e:
            check_eq(e.status, 410, f"list at compacted revision {rv}: {e.body}")
            return
        time.sleep(0.1)
    check(False, f"revision {rv} was not compacted within 60 s (the server compacts every 100 ms)")


def main(api):
    v1 = client.CoreV1Api(api)

    step("objects, a first page and its continue token")
    for name in ("a", "b", "c"):
        v1.create_namespaced_config_map(NS, {"metadata": {"name": name}})
    page = v1.list_namespaced_config_map(NS, limit=1)
    token = page.metadata._continue
    check(token, "a first page of 1 out of 3 has a continue token")
    rv = int(page.metadata.resource_version)
    exact = v1.list_namespaced_config_map(NS, resource_version=str(rv),
                                          resource_version_match="Exact")
    check_eq(sorted(i.metadata.name for i in exact.items), ["a", "b", "c"],
             "a list at an exact resourceVersion that is not compacted yet")

    step("later writes; wait until the first page's revision is compacted")
    for v in range(3):
        v1.patch_namespaced_config_map("a", NS, {"data": {"v": str(v)}})
    wait_compacted(v1, rv + 1)

    step("a list at a compacted exact resourceVersion: 410 Expired")
    expect_status(410, "Expired", v1.list_namespaced_config_map, NS, resource_version=str(rv),
                  resource_version_match="Exact")

    step("a continue token from before the compaction: 410 Expired")
    st = expect_status(410, "Expired", v1.list_namespaced_config_map, NS, limit=1,
                       _continue=token)
    check("continue" in st["message"], f"message about the continue token: {st['message']}")
    fresh = (st.get("metadata") or {}).get("continue")
    check(fresh, f"the 410 offers a token for the rest of the list: {st}")
    rest = v1.list_namespaced_config_map(NS, limit=10, _continue=fresh)
    check_eq(len(rest.items), 2, "the inconsistent continuation lists what the first page did not")

    step("Watch().stream from a compacted resourceVersion: ApiException 410")
    try:
        got = events(v1.list_namespaced_config_map, NS, count=1, resource_version=str(rv))
        check(False, f"a watch from compacted {rv} should fail, got {got}")
    except ApiException as e:
        check_eq(e.status, 410, f"watch error status ({e.reason})")
        check(str(e.reason).startswith("Expired: "), f"watch error reason: {e.reason}")

    step("on the wire: HTTP 200, then an ERROR event holding a 410 Expired Status")
    resp = v1.list_namespaced_config_map(NS, watch=True, resource_version=str(rv),
                                         timeout_seconds=30, _preload_content=False)
    try:
        check_eq(resp.status, 200, "watch HTTP status")
        first = resp.readline()
    finally:
        resp.release_conn()
    event = json.loads(first)
    check_eq(event.get("type"), "ERROR", f"first event: {event}")
    st = event["object"]
    check_eq((st.get("kind"), st.get("apiVersion"), st.get("status")), ("Status", "v1", "Failure"),
             f"the ERROR event's object: {st}")
    check_eq((st.get("code"), st.get("reason")), (410, "Expired"), "the ERROR event's Status")

    step("list again, watch from the new resourceVersion: events arrive")
    fresh = v1.list_namespaced_config_map(NS)
    check_eq(sorted(i.metadata.name for i in fresh.items), ["a", "b", "c"], "a fresh list")

    v1.patch_namespaced_config_map("b", NS, {"data": {"after": "relist"}})
    evs = events(v1.list_namespaced_config_map, NS, count=1,
                 resource_version=fresh.metadata.resource_version)
    check_eq([(t, n) for t, n, _, _ in evs], [("MODIFIED", "b")], "the event after the relist")
    check_eq(evs[0][3].data, {"after": "relist"}, "its object")


run(main)
