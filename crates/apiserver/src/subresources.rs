//! Subresources other than `status`: `scale` (autoscaling/v1 Scale over a workload's
//! replicas), namespaces' `finalize`, pods' `binding` and `eviction`, and the streaming ones
//! (`log`, `exec`, `attach`, `portforward`) that need a node agent to answer.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use rudder_api::printers::label_selector;
use rudder_api::validation::FieldError;
use serde_json::{json, Value};

use crate::error::{ApiError, Target};
use crate::handlers::{decode_body, json_response, AppState, Query};
use crate::patch::Patch;
use crate::registry::{DeleteOptions, ListOptions, Part, Registry, Res, Write};
use crate::resources::Served;

/// A request to `<object>/<sub>`; the handlers have checked the catalogue lists `sub` for the
/// resource.
pub struct SubRequest<'a> {
    pub served: &'a Served,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    pub sub: &'a str,
    pub method: Method,
    pub query: &'a Query,
    pub content_type: String,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub write: Write,
}

/// Serves `r`; `upgrade` is the connection's, for exec, attach and port-forward.
pub async fn serve(
    st: &AppState,
    r: SubRequest<'_>,
    upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let reg = &st.registry;
    let res = &r.served.res;
    match (r.sub, &r.method) {
        ("scale", &Method::GET) => {
            let obj = reg.get(res, r.ns, r.name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(res, &obj)))
        }
        ("scale", &Method::PUT) => {
            let scale = decode_body(&r.content_type, r.body)?;
            let updated =
                set_scale(reg, res, r.ns, r.name, &r.write, |_| Ok(scale.clone())).await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("scale", &Method::PATCH) => {
            let patch = Patch::parse(&r.content_type, r.body)?;
            if let Patch::Apply(config) = &patch {
                // Applied to the parent's replicas, recorded with `subresource: scale`.
                let mut config = config.clone();
                check_scale(r.name, &mut config)?;
                let given = config["metadata"]["name"].as_str().unwrap_or("");
                if given != r.name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({given}) does not match the name on the URL ({})",
                        r.name
                    )));
                }
                let mut parent = json!({
                    "apiVersion": res.api_version(),
                    "kind": res.kind,
                    "metadata": {"name": r.name},
                });
                if let Some(n) = config["spec"].get("replicas") {
                    rudder_api::value::set(&mut parent, &["spec", "replicas"], n.clone());
                }
                let (updated, _) = reg
                    .apply(res, r.ns, r.name, Part::Main, &r.write, parent)
                    .await?;
                return Ok(json_response(StatusCode::OK, &scale_of(res, &updated)));
            }
            let updated =
                set_scale(reg, res, r.ns, r.name, &r.write, |s| patch.apply_to(s)).await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("finalize", &Method::PUT) => {
            // spec.finalizers (and metadata) from the body; the status stays.
            let ns = decode_body(&r.content_type, r.body)?;
            let updated = reg
                .update(res, None, r.name, ns, Part::Main, &r.write)
                .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("binding", &Method::POST) => {
            let binding = typed_body(&r, "", "v1", "Binding")?;
            bind(reg, res, r.ns, r.name, &binding, &r.write).await?;
            Ok(created())
        }
        ("eviction", &Method::POST) => {
            let eviction = typed_body(&r, "policy", "v1", "Eviction")?;
            evict(reg, res, r.ns, r.name, &eviction, &r.write).await?;
            Ok(created())
        }
        ("log" | "exec" | "attach" | "portforward", _) => {
            let pod = reg.get(res, r.ns, r.name).await?;
            // As upstream: the container first (a port-forward is to the pod), then the host.
            let container = if r.sub == "portforward" {
                String::new()
            } else {
                crate::kubelet::container_of(&pod, crate::handlers::param(r.query, "container"))?
            };
            let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
                return Err(ApiError::bad_request(format!(
                    "pod {} does not have a host assigned",
                    r.name
                )));
            };
            let streaming = r.sub != "log";
            if r.method != Method::GET && !(streaming && r.method == Method::POST) {
                return Err(ApiError::method_not_allowed(r.method.as_str()));
            }
            let nodes = st
                .registry
                .resources()
                .resolve("", "v1", "nodes")
                .ok_or_else(|| ApiError::internal("the nodes resource is not served"))?;
            let node = reg.get(&nodes.res, None, node).await?;
            if !streaming {
                return st.kubelets.logs(&pod, &container, &node, r.query).await;
            }
            let upgrade =
                upgrade.ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
            let stream = crate::kubelet::Stream {
                pod: &pod,
                container: &container,
                node: &node,
                sub: r.sub,
                query: r.query,
                headers: r.headers,
                method: r.method,
            };
            st.kubelets.stream(stream, upgrade).await
        }
        (_, m) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// A subresource's own object (a Binding, an Eviction) from the body, its JSON types checked.
fn typed_body(
    r: &SubRequest<'_>,
    group: &str,
    version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let mut obj = decode_body(&r.content_type, r.body)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body must be a {kind} object"
        )));
    }
    rudder_api::schema::check_types(group, version, kind, &mut obj)
        .map_err(|e| ApiError::cannot_handle(kind, version, &e))?;
    Ok(obj)
}

/// `201 Created` with a success Status, as upstream answers bindings and evictions.
fn created() -> Response {
    crate::error::GoStatus::success(201).into_response()
}

/// The autoscaling/v1 Scale of a workload.
fn scale_of(res: &Res, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = &obj["spec"]["selector"];
    // ReplicationControllers select with a plain label map.
    let selector = if res.kind == "ReplicationController" {
        json!({"matchLabels": selector})
    } else {
        selector.clone()
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"],
            "namespace": m["namespace"],
            "uid": m["uid"],
            "resourceVersion": m["resourceVersion"],
            "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": label_selector(&selector).unwrap_or_default(),
        },
    })
}

/// Writes the replicas of the Scale that `change` makes of the current one; a resourceVersion
/// in that Scale is a precondition, as upstream.
async fn set_scale(
    reg: &Registry,
    res: &Res,
    ns: Option<&str>,
    name: &str,
    w: &Write,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let updated = reg
        .patch(res, ns, name, Part::Main, w, |old| {
            let current = scale_of(res, old);
            let mut scale = change(&current)?;
            check_scale(name, &mut scale)?;
            let mut new = old.clone();
            rudder_api::value::set(
                &mut new,
                &["spec", "replicas"],
                scale["spec"]["replicas"].clone(),
            );
            if let Some(rv) = scale["metadata"]["resourceVersion"]
                .as_str()
                .filter(|rv| !rv.is_empty())
            {
                rudder_api::value::set(&mut new, &["metadata", "resourceVersion"], json!(rv));
            }
            Ok(new)
        })
        .await?;
    Ok(scale_of(res, &updated))
}

fn check_scale(name: &str, scale: &mut Value) -> Result<(), ApiError> {
    if !scale.is_object() {
        return Err(ApiError::bad_request("the body must be a Scale object"));
    }
    rudder_api::schema::check_types("autoscaling", "v1", "Scale", scale)
        .map_err(|e| ApiError::cannot_handle("Scale", "v1", &e))?;
    if let Some(k) = scale["kind"].as_str().filter(|k| *k != "Scale") {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind (Scale)"
        )));
    }
    if let Some(n) = scale["metadata"]["name"].as_str().filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the request ({name})"
        )));
    }
    // The types are checked: replicas is absent or an int32.
    match scale["spec"]["replicas"].as_i64() {
        Some(r) if r < 0 => Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            vec![FieldError {
                field: "spec.replicas".into(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {r}: must be greater than or equal to 0"),
            }],
        )),
        _ => Ok(()),
    }
}

fn pod_target(name: &str) -> Target<'_> {
    Target {
        group: "",
        name_of_type: "pods",
        name,
    }
}

/// Assigns a pod to a node (what the scheduler does).
async fn bind(
    reg: &Registry,
    res: &Res,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    w: &Write,
) -> Result<(), ApiError> {
    if let Some(n) = binding["metadata"]["name"].as_str().filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the request ({name})"
        )));
    }
    let node = binding["target"]["name"].as_str().unwrap_or("");
    let kind = binding["target"]["kind"].as_str().unwrap_or("");
    if node.is_empty() || !(kind.is_empty() || kind == "Node") {
        let (field, message) = if node.is_empty() {
            ("target.name", "Required value".to_string())
        } else {
            (
                "target.kind",
                format!(
                    "Unsupported value: {}: supported values: \"Node\"",
                    json!(kind)
                ),
            )
        };
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            vec![FieldError {
                field: field.into(),
                reason: if node.is_empty() {
                    "FieldValueRequired"
                } else {
                    "FieldValueNotSupported"
                },
                message,
            }],
        ));
    }
    reg.guaranteed_update(res, ns, name, w.dry_run, |pod| {
        if pod["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                pod_target(name),
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                pod_target(name),
                &format!("pod {name} is already assigned to node {current:?}"),
            ));
        }
        rudder_api::value::set(pod, &["spec", "nodeName"], json!(node));
        if let Some(extra) = binding["metadata"]["annotations"].as_object() {
            for (k, v) in extra {
                rudder_api::value::set(pod, &["metadata", "annotations", k], v.clone());
            }
        }
        set_condition(pod, "PodScheduled", "True");
        Ok(())
    })
    .await
}

fn set_condition(pod: &mut Value, kind: &str, status: &str) {
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("an array");
    let at = list.iter().position(|c| c["type"] == kind);
    // As upstream's UpdatePodCondition: the condition is replaced whole (a reason and message
    // of an earlier status go), and keeps its transition time while its status stays.
    let since = match at.map(|i| &list[i]) {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(crate::registry::now_rfc3339()),
    };
    let condition = json!({
        "type": kind,
        "status": status,
        "lastProbeTime": null,
        "lastTransitionTime": since,
    });
    match at {
        Some(i) => list[i] = condition,
        None => list.push(condition),
    }
}

/// Deletes a pod unless that would break its PodDisruptionBudget (`kubectl drain`).
async fn evict(
    reg: &Registry,
    res: &Res,
    ns: Option<&str>,
    name: &str,
    eviction: &Value,
    w: &Write,
) -> Result<(), ApiError> {
    if let Some(n) = eviction["metadata"]["name"].as_str().filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {n}"
        )));
    }
    let mut opts = DeleteOptions {
        user: w.user.clone(),
        ..DeleteOptions::default()
    };
    crate::handlers::apply_delete_body(&eviction["deleteOptions"], &mut opts);
    opts.dry_run |= w.dry_run;
    let pod = reg.get(res, ns, name).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let unprotected = matches!(phase, "Succeeded" | "Failed" | "Pending" | "")
        || pod["metadata"].get("deletionTimestamp").is_some();
    if !unprotected {
        check_budget(
            reg,
            ns,
            name,
            &pod,
            &Write {
                dry_run: opts.dry_run,
                ..w.clone()
            },
        )
        .await?;
    }
    reg.delete(res, ns, name, &opts).await.map(|_| ())
}

fn too_many_requests(cause: String) -> ApiError {
    ApiError {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
        ..ApiError::new(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
    }
}

/// The one PodDisruptionBudget selecting the pod must allow a disruption; it is spent here.
async fn check_budget(
    reg: &Registry,
    ns: Option<&str>,
    pod_name: &str,
    pod: &Value,
    w: &Write,
) -> Result<(), ApiError> {
    let pdbs = reg
        .resolve("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))?;
    let list = reg.list(&pdbs.res, ns, &ListOptions::default()).await?;
    let labels = &pod["metadata"]["labels"];
    let matching: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            let sel = &p["spec"]["selector"];
            // policy/v1: a missing selector selects nothing, `{}` every pod.
            rudder_api::selector::label_selector_matches(Some(sel), Some(labels))
        })
        .collect();
    let pdb = match matching.as_slice() {
        [] => return Ok(()),
        [one] => *one,
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
    // A pod that is not Ready does not count as healthy: evicting it spends nothing, always
    // under the AlwaysAllow policy, and under IfHealthyBudget (the default) while the budget
    // has the healthy pods it wants.
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        let desired = pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0);
        let current = pdb["status"]["currentHealthy"].as_i64().unwrap_or(0);
        if pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
            || (current >= desired && desired > 0)
        {
            return Ok(());
        }
    }
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = pdb["status"]["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Err(too_many_requests(format!(
            "The disruption budget {pdb_name} is still being processed by the server."
        )));
    }
    let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        return Err(too_many_requests(format!(
            "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
            pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
            pdb["status"]["currentHealthy"].as_i64().unwrap_or(0),
        )));
    }
    // Spend one disruption, with a compare-and-swap on the budget read above.
    let rv = pdb["metadata"]["resourceVersion"].clone();
    reg.patch(&pdbs.res, ns, &pdb_name, Part::Status, w, |old| {
        let mut new = old.clone();
        rudder_api::value::set(&mut new, &["metadata", "resourceVersion"], rv.clone());
        rudder_api::value::set(
            &mut new,
            &["status", "disruptionsAllowed"],
            json!(allowed - 1),
        );
        rudder_api::value::set(
            &mut new,
            &["status", "disruptedPods", pod_name],
            json!(crate::registry::now_rfc3339()),
        );
        Ok(new)
    })
    .await
    .map_err(|e| {
        if e.code == 409 {
            too_many_requests(format!(
                "The disruption budget {pdb_name} changed while the eviction was checked; retry"
            ))
        } else {
            e
        }
    })?;
    Ok(())
}
