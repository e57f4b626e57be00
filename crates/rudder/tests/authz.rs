//! Authorization through the real server: `system:masters` may do anything; the node token
//! alone only discovers; a node (`system:node:NAME` with the token) only does what upstream's
//! Node authorizer lets a kubelet do; impersonation is for masters; the system namespaces
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

fn node_auth(s: &RudderServer, node: &str) -> String {
    use base64::Engine as _;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{node}:{}", token(s)));
    format!("Authorization: Basic {creds}")
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
