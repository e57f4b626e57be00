"""Shared helpers for the end-to-end tests that drive `rudder server` with the official
Kubernetes Python client (crates/rudder/tests/python.rs runs each script with KUBECONFIG set).

A script calls `run(main)`: `main` gets a configured ApiClient, `step()` prints progress, and
the `check*`/`expect_status` helpers raise `Failed` with a message that says what was expected
and what the server answered. Any failure ends the script with exit status 1 and the message on
stderr; success prints "PASS <script>".
"""

import json
import os
import sys
import traceback

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

SCRIPT = os.path.basename(sys.argv[0])


class Failed(Exception):
    """An expectation about the server's behaviour did not hold."""


def step(what):
    print(f"-- {what}", flush=True)


def check(cond, what):
    if not cond:
        raise Failed(what)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failed(f"{what}: expected {expected!r}, got {actual!r}")


def as_dict(obj):
    """The JSON form of a client model (or a dict, returned as is)."""
    return client.ApiClient().sanitize_for_serialization(obj)


def status_body(exc):
    """The Status object the server sent with an error response."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        raise Failed(f"HTTP {exc.status}: the body is not a JSON Status: {body!r}")


def expect_status(code, reason, fn, *args, **kwargs):
    """Calls fn, which must fail with HTTP `code`; checks the Status body (kind, apiVersion,
    status, code, reason) and returns it."""
    what = f"{fn.__name__}{tuple(a for a in args if isinstance(a, str))}"
    try:
        result = fn(*args, **kwargs)
    except ApiException as e:
        st = status_body(e)
        check_eq(e.status, code, f"{what}: HTTP status (body {st})")
        check_eq(st.get("kind"), "Status", f"{what}: kind of the error body")
        check_eq(st.get("apiVersion"), "v1", f"{what}: apiVersion of the Status")
        check_eq(st.get("status"), "Failure", f"{what}: Status.status")
        check_eq(st.get("code"), code, f"{what}: Status.code")
        check_eq(st.get("reason"), reason, f"{what}: Status.reason (message {st.get('message')!r})")
        return st
    raise Failed(f"{what} should have failed with {code} {reason}, "
                 f"but returned {as_dict(result)!r}")


# The server ends a watch after this many seconds, so a missing event fails the test (with the
# events that did arrive) instead of hanging it. A bound, not a timing assertion.
WATCH_BOUND = 60


def events(list_fn, *args, count, on_event=None, **kwargs):
    """The first `count` events of `Watch().stream(list_fn, …)`, as (type, name,
    resourceVersion, object). `on_event(i, event)` runs after the i-th event, while the watch
    stays open."""
    w = watch.Watch()
    stream = w.stream(list_fn, *args, timeout_seconds=WATCH_BOUND,
                      _request_timeout=WATCH_BOUND + 30, **kwargs)
    out = []
    try:
        for e in stream:
            obj = e["object"]
            out.append((e["type"], obj.metadata.name, int(obj.metadata.resource_version), obj))
            if on_event:
                on_event(len(out), e)
            if len(out) == count:
                break
    finally:
        w.stop()
        stream.close()
    check_eq(len(out), count,
             f"events that arrived within {WATCH_BOUND} s: {[(t, n, rv) for t, n, rv, _ in out]}")
    return out


def connect():
    """An ApiClient for the cluster in $KUBECONFIG."""
    check("KUBECONFIG" in os.environ, "KUBECONFIG is not set")
    config.load_kube_config()
    return client.ApiClient()


def run(main):
    try:
        main(connect())
    except Failed as e:
        traceback.print_exc()
        print(f"FAIL {SCRIPT}: {e}", file=sys.stderr)
        sys.exit(1)
    except ApiException as e:
        traceback.print_exc()
        print(f"FAIL {SCRIPT}: unexpected API error {e.status} {e.reason}: {e.body}",
              file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # the client itself failed (bad JSON, missing field, …)
        traceback.print_exc()
        print(f"FAIL {SCRIPT}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"PASS {SCRIPT}")
