"""exec and port-forward through the official client, as its own e2e tests use them: exec
over WebSocket v5 (stdout, stderr, the exit code, stdin and its close), port-forward over
WebSocket v4 channels. Needs the pods `shell` (a running busybox) and `web` (busybox httpd
on 8080 serving "hello-through-the-tunnel") in `default`."""

from kubernetes import client, config
from kubernetes.stream import portforward, stream

config.load_kube_config()
v1 = client.CoreV1Api()


def exec_in(command, **kw):
    opts = dict(stderr=True, stdin=False, stdout=True, tty=False)
    opts.update(kw)
    return stream(v1.connect_get_namespaced_pod_exec, "shell", "default", command=command, **opts)


# The plain form: the output as a string.
out = exec_in(["echo", "plain"])
assert out == "plain\n", repr(out)

# Streams and the exit code.
resp = exec_in(["sh", "-c", "echo out; echo err >&2; exit 3"], _preload_content=False)
resp.run_forever(timeout=30)
assert resp.returncode == 3, resp.returncode
assert resp.read_stdout() == "out\n"
assert resp.read_stderr() == "err\n"

# stdin reaches the process; closing it (v5) ends `cat`.
resp = exec_in(["cat"], stdin=True, _preload_content=False)
assert resp.subprotocol == "v5.channel.k8s.io", resp.subprotocol
resp.write_stdin("hello\n")
resp.close_channel(0)
resp.run_forever(timeout=30)
out = resp.read_stdout()
assert out == "hello\n", (repr(out), resp.read_stderr(), resp.returncode)

# port-forward: an HTTP request through the forwarded port.
pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
sock = pf.socket(8080)
sock.setblocking(True)
sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
sock.close()
assert data.endswith(b"hello-through-the-tunnel\n"), data
assert pf.error(8080) is None, pf.error(8080)
pf.close()
print("ok")
