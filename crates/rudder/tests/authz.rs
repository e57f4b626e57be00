//! Authorization through the real server: `system:masters` may do anything; the node token
//! alone only discovers and joins nodes, each name bound to the first machine's node password;
//! a node (`system:node:NAME` with its password) only does what upstream's Node authorizer and
//! NodeRestriction let a kubelet do; impersonation is for masters; the system namespaces
//! cannot be deleted.

use std::path::Path;
use std::process::Command;

use rudder_testkit::RudderServer;
use serde_json::{json, Value};

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

fn token(s: &RudderServer) -> String {
    std::fs::read_to_string(s.data_dir().join("server/node-token"))
        .expect("node token")
        .trim()
        .to_string()
}

/// A raw request with an Authorization header (no client certificate): (code, body).
fn call(s: &RudderServer, auth: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let headers: Vec<&str> = auth.split("\r\n").collect();
    let out = Command::new("curl")
        .args(["-sS", "-k", "--http1.1", "-X", method])
        .args(headers.iter().flat_map(|h| ["-H", h]))
        .args([
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
        ])
        .args(["--data-binary", &body.to_string()])
        .arg(format!("{}{path}", s.url))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {creds}")
}

/// Node `node`, registered with the token, authenticating with its node password.
fn node_auth(s: &RudderServer, node: &str) -> String {
    basic(node, &s.register_node(node).expect("register the node"))
}

fn assert_forbidden(answer: &(u16, Value), message: &str) {
    assert_eq!(answer.0, 403, "{}", answer.1);
    assert_eq!(answer.1["reason"], "Forbidden", "{}", answer.1);
    assert_eq!(answer.1["message"], message, "{}", answer.1);
}

#[test]
fn the_node_token_alone_cannot_make_itself_admin() {
    let s = server();
    let bearer = format!("Authorization: Bearer {}", token(&s));
    let crb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "pwned"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "system:bootstrappers", "apiGroup": "rbac.authorization.k8s.io"}],
    });
    assert_forbidden(
        &call(&s, &bearer, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", &crb),
        "clusterrolebindings.rbac.authorization.k8s.io is forbidden: User \"system:bootstrap:node-token\" cannot create resource \"clusterrolebindings\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
    );
    // Discovery and self-reviews are everyone's.
    assert_eq!(call(&s, &bearer, "GET", "/apis", &Value::Null).0, 200);
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let (code, body) = call(
        &s,
        &bearer,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &review,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:bootstrap:node-token"
    );
    // A wrong token is not a user at all.
    let wrong = "Authorization: Bearer K10nothing::server:wrong";
    assert_eq!(
        call(&s, wrong, "GET", "/api/v1/namespaces", &Value::Null).0,
        401
    );
    assert!(!s
        .kubectl(&["get", "clusterrolebindings", "-o", "name"])
        .ok()
        .contains("pwned"));
    // Nor is it any node: the token is not a node's password.
    assert_eq!(
        call(
            &s,
            &basic("n1", &token(&s)),
            "GET",
            "/api/v1/nodes",
            &Value::Null
        )
        .0,
        401
    );
}

#[test]
fn the_token_joins_a_name_once_and_only_the_token_joins() {
    let s = server();
    let bearer = format!("Authorization: Bearer {}", token(&s));
    let join =
        |auth: &str, body: Value| call(&s, auth, "POST", "/v1-rudder/node-certificates", &body);
    let password = "the-first-machines-password";
    let first = join(&bearer, json!({"nodeName": "n1", "nodePassword": password}));
    assert_eq!(first.0, 200, "{}", first.1);
    let n1 = basic("n1", password);
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    assert_eq!(call(&s, &n1, "POST", "/api/v1/nodes", &node).0, 201);
    // A wrong password is no one; another password for a name whose Node exists is refused.
    assert_eq!(
        call(
            &s,
            &basic("n1", "not-the-password"),
            "GET",
            "/api/v1/nodes/n1",
            &Value::Null
        )
        .0,
        401
    );
    assert_forbidden(
        &join(&bearer, json!({"nodeName": "n1", "nodePassword": "another-machines-password"})),
        "node \"n1\" is already registered by another machine (its node password differs): join with another --node-name, or delete the node (kubectl delete node n1) if that machine is gone",
    );
    // Once the Node is deleted the name is free again.
    s.kubectl(&["delete", "node", "n1"]).ok();
    let again = join(
        &bearer,
        json!({"nodeName": "n1", "nodePassword": "another-machines-password"}),
    );
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(call(&s, &n1, "GET", "/api/v1/nodes", &Value::Null).0, 401);
    // Bad requests are refused with a reason; nodes and nobody cannot join.
    let bad = [
        (
            json!({"nodeName": "Bad_Name", "nodePassword": password}),
            "invalid node name",
        ),
        (
            json!({"nodeName": "kubernetes", "nodePassword": password}),
            "the API server's own name",
        ),
        (
            json!({"nodeName": "n2", "nodePassword": "short"}),
            "16 to 256 characters",
        ),
        (
            json!({"nodeName": "n2", "nodePassword": password, "extra": 1}),
            "unknown field",
        ),
        (
            json!({"nodeName": "n2", "nodePassword": password,
                   "clientRequest": "junk", "servingRequest": "junk"}),
            "not a valid signed PKCS#10 request",
        ),
        (
            json!({"nodeName": "n2", "nodePassword": password, "addresses": ["10.43.0.1"],
                   "clientRequest": "x", "servingRequest": "x"}),
            "10.43.0.1 cannot be a node's address",
        ),
    ];
    for (body, message) in bad {
        let (code, answer) = join(&bearer, body);
        assert_eq!(code, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
    let node_join = join(
        &basic("n1", "another-machines-password"),
        json!({"nodeName": "n3", "nodePassword": password}),
    );
    assert_eq!(node_join.0, 403, "{}", node_join.1);
    assert_eq!(join("X-None: 1", json!({})).0, 401);
    // Refused from its announced length, before a byte of it is read: a client that waits
    // for `100 Continue`, as curl does for large bodies, gets the Status (one that sends at
    // once may see the connection closed under it, as with any server).
    let huge = "x".repeat(100 * 1024);
    let expecting = format!("{bearer}\r\nExpect: 100-continue");
    assert_eq!(
        join(
            &expecting,
            json!({"nodeName": huge, "nodePassword": password})
        )
        .0,
        413
    );
}

#[test]
fn a_node_does_what_the_node_authorizer_allows() {
    let s = server();
    let n1 = node_auth(&s, "n1");
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    assert_eq!(call(&s, &n1, "POST", "/api/v1/nodes", &node("n1")).0, 201);
    let other = call(
        &s,
        &node_auth(&s, "n2"),
        "POST",
        "/api/v1/nodes",
        &node("n2"),
    );
    assert_eq!(other.0, 201, "{}", other.1);
    assert_eq!(
        call(&s, &n1, "GET", "/api/v1/nodes/n1", &Value::Null).0,
        200
    );
    // Other nodes may be read, as upstream's system:node role allows (the pod network needs
    // their podCIDRs and addresses); not written.
    assert_eq!(
        call(&s, &n1, "GET", "/api/v1/nodes/n2", &Value::Null).0,
        200
    );
    assert_eq!(call(&s, &n1, "GET", "/api/v1/nodes", &Value::Null).0, 200);
    // Its lease, in kube-node-lease only.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
    assert_eq!(
        call(
            &s,
            &n1,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            &lease
        )
        .0,
        201
    );
    assert_eq!(
        call(
            &s,
            &n1,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            &lease
        )
        .0,
        403
    );

    // ConfigMaps and Secrets: only those its pods use.
    s.kubectl(&["create", "configmap", "used", "--from-literal=a=b"])
        .ok();
    s.kubectl(&["create", "configmap", "unused", "--from-literal=a=b"])
        .ok();
    s.kubectl(&["create", "secret", "generic", "token", "--from-literal=a=b"])
        .ok();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "image": "i", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "token", "key": "a"}}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "used"}}],
        },
    });
    let pod = serde_json::to_string(&pod).expect("pod");
    s.kubectl_stdin(&["create", "-f", "-"], &pod).ok();
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        call(&s, &n1, "GET", &format!("{cms}/used"), &Value::Null).0,
        200
    );
    assert_eq!(
        call(
            &s,
            &n1,
            "GET",
            "/api/v1/namespaces/default/secrets/token",
            &Value::Null
        )
        .0,
        200
    );
    assert_forbidden(
        &call(&s, &n1, "GET", &format!("{cms}/unused"), &Value::Null),
        "configmaps \"unused\" is forbidden: User \"system:node:n1\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object",
    );
    assert_eq!(
        call(
            &s,
            &node_auth(&s, "n2"),
            "GET",
            &format!("{cms}/used"),
            &Value::Null
        )
        .0,
        403
    );
    assert_eq!(
        call(&s, &n1, "GET", cms, &Value::Null).0,
        403,
        "no list of every configmap"
    );
    // Pods: its own, listed with its field selector; status updates; never a deployment.
    assert_eq!(
        call(
            &s,
            &n1,
            "GET",
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
            &Value::Null
        )
        .0,
        200
    );
    assert_eq!(call(&s, &n1, "GET", "/api/v1/pods", &Value::Null).0, 403);
    assert_eq!(
        call(
            &s,
            &node_auth(&s, "n2"),
            "GET",
            "/api/v1/namespaces/default/pods/p",
            &Value::Null
        )
        .0,
        403
    );
    let status = json!({"status": {"phase": "Running"}});
    let (code, body) = call(
        &s,
        &n1,
        "PATCH",
        "/api/v1/namespaces/default/pods/p/status",
        &status,
    );
    // Past the authorizer (a node may patch pod status): the body is what is refused.
    assert_eq!(code, 415, "{body}");
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    assert_eq!(
        call(
            &s,
            &n1,
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            &dep
        )
        .0,
        403
    );
    // kubectl as the node, through impersonation by the admin.
    let can = |args: &[&str]| {
        let mut all = vec![
            "auth",
            "can-i",
            "--as=system:node:n1",
            "--as-group=system:nodes",
        ];
        all.extend_from_slice(args);
        s.kubectl(&all).stdout().trim().to_string()
    };
    assert_eq!(can(&["get", "nodes/n1"]), "yes");
    assert_eq!(can(&["get", "nodes/n2"]), "yes");
    assert_eq!(can(&["delete", "nodes/n2"]), "no");
    assert_eq!(can(&["create", "deployments"]), "no");
    assert_eq!(
        s.kubectl(&["auth", "can-i", "create", "deployments"])
            .ok()
            .trim(),
        "yes"
    );
}

#[test]
fn impersonation_is_for_masters_and_system_namespaces_stay() {
    let s = server();
    let err = s.kubectl(&["get", "pods", "--as=alice"]).fails();
    assert!(
        err.contains("pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    let bearer = format!("Authorization: Bearer {}", token(&s));
    let (code, _) = call(
        &s,
        &format!("{bearer}\r\nImpersonate-User: admin"),
        "GET",
        "/api/v1/namespaces",
        &Value::Null,
    );
    assert_eq!(code, 403);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let err = s.kubectl(&["delete", "namespace", ns]).fails();
        assert!(
            err.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
    }
    assert_eq!(
        s.kubectl(&["get", "ns", "-o", "jsonpath={.items[*].status.phase}"])
            .ok(),
        "Active Active Active Active"
    );
}
