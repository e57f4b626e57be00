#!/usr/bin/env python3
"""Start `BIN server`, send one attack of the "bounded work for every request" issue, and print
the answers, the server's peak RSS (VmHWM) before/after and the CPU seconds it spent.

usage: scripts/attacks.py BIN ATTACK   (ATTACK: yaml-aliases, yaml-nesting, jsonpatch-copy,
  jsonpatch-copy-dryrun, pb-deploymentlist, pb-pod-1M-containers, json-300k-containers,
  json-1M-containers, smp-60k-finalizers). Figures: crates/rudder/tests/bounded.rs and the commit log."""
import os, subprocess, sys, tempfile, time, json

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80); v >>= 7
    out.append(v); return bytes(out)

def field(tag, b): return varint(tag << 3 | 2) + varint(len(b)) + b

def env(av, kind, raw): return b"k8s\0" + field(1, field(1, av.encode()) + field(2, kind.encode())) + field(2, raw)

CMS = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"

def attacks():
    a = {}
    y = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx: &s " + "a" * 100000 + "\ndata:\n  k: [" + "*s, " * 5000 + "*s]\n"
    a["yaml-aliases"] = [("POST", CMS, "application/yaml", y.encode())]
    n = 40000
    a["yaml-nesting"] = [("POST", CMS, "application/yaml", ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: " + "{a: " * n + "1" + "}" * n + "\n").encode())]
    create = ("POST", CMS, "application/json", json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"a": "x" * 2000}}).encode())
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {}}] + [{"op": "copy", "from": "/metadata", "path": f"/metadata/annotations/c{i}"} for i in range(18)]
    a["jsonpatch-copy"] = [create, ("PATCH", CMS + "/p", "application/json-patch+json", json.dumps(ops).encode())]
    a["jsonpatch-copy-dryrun"] = [create, ("PATCH", CMS + "/p?dryRun=All", "application/json-patch+json", json.dumps(ops).encode())]
    a["pb-deploymentlist"] = [("POST", "/apis/apps/v1/namespaces/default/deployments", "application/vnd.kubernetes.protobuf", env("apps/v1", "DeploymentList", field(2, b"") * 200000))]
    pod = field(1, field(1, b"many")) + field(2, field(2, b"") * 1000000)
    a["pb-pod-1M-containers"] = [("POST", PODS, "application/vnd.kubernetes.protobuf", env("v1", "Pod", pod))]
    a["json-300k-containers"] = [("POST", PODS, "application/json", ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[' + ",".join(["{}"] * 300000) + "]}}").encode())]
    a["json-1M-containers"] = [("POST", PODS, "application/json", ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[' + ",".join(["{}"] * 999000) + "]}}").encode())]
    fins = [f"example.com/f{i}" for i in range(60000)]
    a["smp-60k-finalizers"] = [("POST", CMS, "application/json", b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f"}}'),
        ("PATCH", CMS + "/f?dryRun=All", "application/strategic-merge-patch+json", json.dumps({"metadata": {"finalizers": fins, "$setElementOrder/finalizers": fins}}).encode())]
    return a

def main():
    bin_, name = sys.argv[1], sys.argv[2]
    d = tempfile.mkdtemp(prefix="rudder-attack-")
    p = subprocess.Popen([bin_, "server", "--https-listen-port", "0", "--bind-address", "127.0.0.1", "--data-dir", d],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "RUST_LOG": "info"})
    for line in p.stderr:
        if b"api server ready" in line: break
    import threading
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    url = [l.split("server:")[1].strip().strip('"') for l in open(os.path.join(d, "kubeconfig.yaml")) if "server:" in l][0]
    tls = os.path.join(d, "server/tls")
    def stat():
        st = open(f"/proc/{p.pid}/status").read()
        hwm = int([l for l in st.splitlines() if l.startswith("VmHWM")][0].split()[1]) // 1024
        f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        return hwm, cpu
    time.sleep(2)
    h0, c0 = stat()
    out = []
    t0 = time.time()
    for m, path, ct, body in attacks()[name]:
        r = subprocess.run(["curl", "-sS", "--http1.1", "-X", m, "--data-binary", "@-", "-o", os.path.join(d, "resp"), "-w", "%{http_code} %{size_download}",
                            "--cacert", tls + "/ca.crt", "--cert", tls + "/client-admin.crt", "--key", tls + "/client-admin.key",
                            "-H", "Content-Type: " + ct, url + path], input=body, capture_output=True)
        out.append(r.stdout.decode())
    wall = time.time() - t0
    h1, c1 = stat()
    hz = subprocess.run(["curl", "-sS", "-m", "10", "--cacert", tls + "/ca.crt", url + "/healthz"], capture_output=True).stdout.decode()
    resp = open(os.path.join(d, "resp"), "rb").read()[:300].decode(errors="replace")
    print(f"{name}: answers {out}; peak RSS {h0} -> {h1} MiB; server CPU {c1 - c0:.2f} s; wall {wall:.1f} s; healthz {hz!r}\n  last answer: {resp}")
    p.kill(); p.wait()
    subprocess.run(["rm", "-rf", d])

main()
