"""Lists: paging with `limit` and `_continue` (every item exactly once, one consistent snapshot,
remainingItemCount when the server sends it), label selectors of every operator, field
selectors, and selectors combined with paging."""

from kubernetes import client

from common import check, check_eq, expect_status, run, step

NS = "paging"
OTHER = "paging-other"
COUNT = 23


def pages(list_fn, limit, **kwargs):
    """Every page of a paged list: [(names, metadata)], following `_continue`."""
    out, token = [], None
    while True:
        page = list_fn(limit=limit, _continue=token, **kwargs)
        check(len(page.items) <= limit, f"a page holds at most {limit} items: {len(page.items)}")
        out.append(([i.metadata.name for i in page.items], page.metadata))
        token = page.metadata._continue
        if not token:
            return out
        check(len(out) <= COUNT + 1, "paging does not end")


def main(api):
    v1 = client.CoreV1Api(api)
    for ns in (NS, OTHER):
        v1.create_namespace({"metadata": {"name": ns}})

    step(f"{COUNT} configmaps with labels")
    want = []
    for i in range(COUNT):
        labels = {"parity": "even" if i % 2 == 0 else "odd", "index": str(i)}
        if i % 5 == 0:
            labels["fifth"] = "yes"
        name = f"cm-{i:02d}"
        v1.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels},
                                             "data": {"i": str(i)}})
        want.append(name)
    v1.create_namespaced_config_map(OTHER, {"metadata": {"name": "elsewhere",
                                                         "labels": {"parity": "even"}}})
    full = v1.list_namespaced_config_map(NS)
    check_eq([i.metadata.name for i in full.items], want, "an unpaged list, in name order")
    check(full.metadata._continue in (None, ""), "an unpaged list has no continue token")

    step("pages of 5: every item exactly once, in order")
    got = pages(lambda **kw: v1.list_namespaced_config_map(NS, **kw), 5)
    names = [n for page, _ in got for n in page]
    check_eq(names, want, "the pages together")
    check_eq([len(page) for page, _ in got], [5, 5, 5, 5, 3], "page sizes")
    rvs = {meta.resource_version for _, meta in got}
    check_eq(len(rvs), 1, f"every page is read at the first page's resourceVersion: {rvs}")
    seen = 0
    for page, meta in got:
        seen += len(page)
        if meta.remaining_item_count is not None:
            check_eq(meta.remaining_item_count, COUNT - seen, f"remainingItemCount after {seen}")
    check(got[0][1].remaining_item_count is not None,
          "remainingItemCount is sent on a page of an unfiltered list (as upstream)")
    check(got[-1][1].remaining_item_count in (None, 0), "no remainingItemCount on the last page")

    step("a write between pages does not show up in later pages")
    first = v1.list_namespaced_config_map(NS, limit=10)
    v1.create_namespaced_config_map(NS, {"metadata": {"name": "zz-late"}})
    v1.delete_namespaced_config_map("cm-20", NS)
    rest, token = [], first.metadata._continue
    while token:
        page = v1.list_namespaced_config_map(NS, limit=10, _continue=token)
        rest += [i.metadata.name for i in page.items]
        token = page.metadata._continue
    check_eq([i.metadata.name for i in first.items] + rest, want,
             "the paged list is the snapshot of its first page")
    now = [i.metadata.name for i in v1.list_namespaced_config_map(NS).items]
    check("zz-late" in now and "cm-20" not in now, f"a new list sees the writes: {now}")
    v1.delete_namespaced_config_map("zz-late", NS)
    v1.create_namespaced_config_map(NS, {"metadata": {"name": "cm-20", "labels": {
        "parity": "even", "index": "20", "fifth": "yes"}}, "data": {"i": "20"}})

    step("a bad continue token is 400 BadRequest")
    expect_status(400, "BadRequest", v1.list_namespaced_config_map, NS, limit=5,
                  _continue="not-a-token")

    step("label selectors")

    def by_label(sel, ns=NS):
        items = v1.list_namespaced_config_map(ns, label_selector=sel).items
        return [i.metadata.name for i in items]

    evens = [f"cm-{i:02d}" for i in range(0, COUNT, 2)]
    odds = [f"cm-{i:02d}" for i in range(1, COUNT, 2)]
    fifths = [f"cm-{i:02d}" for i in range(0, COUNT, 5)]
    check_eq(by_label("parity=even"), evens, "parity=even")
    check_eq(by_label("parity==odd"), odds, "parity==odd")
    check_eq(by_label("parity!=even"), odds, "parity!=even")
    check_eq(by_label("index in (3,4,30)"), ["cm-03", "cm-04"], "set-based in")
    check_eq(by_label("parity=even,index notin (0,2,4)"),
             [n for n in evens if n not in ("cm-00", "cm-02", "cm-04")], "notin")
    check_eq(by_label("fifth"), fifths, "exists")
    check_eq(by_label("!fifth"), [n for n in want if n not in fifths], "does not exist")
    check_eq(by_label("fifth,parity=odd"), ["cm-05", "cm-15"], "two requirements")
    check_eq(by_label("parity=none"), [], "no match")
    st = expect_status(400, "BadRequest", v1.list_namespaced_config_map, NS,
                       label_selector="a b c")
    check("unable to parse requirement" in st["message"], f"message: {st['message']}")

    step("field selectors")

    def by_field(sel, **kw):
        return [(i.metadata.namespace, i.metadata.name)
                for i in v1.list_config_map_for_all_namespaces(field_selector=sel, **kw).items]

    check_eq(by_field("metadata.name=cm-07"), [(NS, "cm-07")], "metadata.name=")
    check_eq(by_field("metadata.namespace=paging-other"), [(OTHER, "elsewhere")],
             "metadata.namespace=")
    everywhere = [(i.metadata.namespace, i.metadata.name)
                  for i in v1.list_config_map_for_all_namespaces().items]
    check_eq(by_field(f"metadata.namespace!={OTHER}"),
             [x for x in everywhere if x[0] != OTHER], "metadata.namespace!=")
    check_eq(by_field("metadata.name=elsewhere", label_selector="parity=even"),
             [(OTHER, "elsewhere")], "field and label selector together")
    check_eq(by_field("metadata.name=cm-07,metadata.namespace=paging-other"), [],
             "two field requirements")
    named = v1.list_namespace(field_selector="metadata.name=paging").items
    check_eq([n.metadata.name for n in named], [NS], "field selector on a cluster-scoped list")
    active = v1.list_namespace(field_selector="status.phase=Active",
                               label_selector=f"kubernetes.io/metadata.name in ({NS},{OTHER})")
    check_eq([n.metadata.name for n in active.items], [NS, OTHER], "namespaces by status.phase")
    st = expect_status(400, "BadRequest", v1.list_namespaced_config_map, NS,
                       field_selector="data.i=3")
    check_eq(st["message"], '"data.i" is not a known field selector: only "metadata.name", "metadata.namespace"', "unsupported field label")

    step("selectors with paging: every match exactly once")
    got = pages(lambda **kw: v1.list_namespaced_config_map(NS, label_selector="parity=odd",
                                                            **kw), 4)
    check_eq([n for page, _ in got for n in page], odds, "odd configmaps, paged by 4")
    got = pages(lambda **kw: v1.list_config_map_for_all_namespaces(
        label_selector="parity=even", **kw), 3)
    check_eq(sorted(n for page, _ in got for n in page), sorted(evens + ["elsewhere"]),
             "even configmaps in all namespaces, paged by 3")


run(main)
