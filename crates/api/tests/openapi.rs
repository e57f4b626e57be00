//! The OpenAPI documents: they parse, carry what kubectl reads (GVK extensions, inline
//! `fieldValidation`, patch request types, patch extensions) and hash the same on every build.

use rudder_api::catalogue::{self, Verb};
use rudder_api::openapi;
use serde_json::Value;

fn v3_doc(key: &str) -> Value {
    let doc = openapi::v3_document(key).unwrap_or_else(|| panic!("no v3 document {key}"));
    serde_json::from_slice(&doc.body()).expect("v3 document is JSON")
}

fn schema_with_gvk<'a>(
    doc: &'a Value,
    group: &str,
    version: &str,
    kind: &str,
) -> Option<&'a Value> {
    doc["components"]["schemas"]
        .as_object()?
        .values()
        .find(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| {
                    l.iter().any(|g| {
                        g["group"] == group && g["version"] == version && g["kind"] == kind
                    })
                })
        })
}

/// Follows `$ref` / `allOf[0].$ref` / `items` the way strategicpatch's PatchMetaFromOpenAPIV3
/// does.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    let s = s.get("allOf").and_then(|a| a.get(0)).unwrap_or(s);
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => s,
    }
}

#[test]
fn index_lists_every_served_group_version_with_its_hash() {
    let v3 = openapi::v3();
    let index: Value = serde_json::from_slice(&v3.index.body()).unwrap();
    let paths = index["paths"].as_object().unwrap();
    let mut served = vec![openapi::v3_key("", "v1")];
    for g in catalogue::API_GROUPS
        .iter()
        .filter(|g| g.name != openapi::METRICS_GROUP)
    {
        for v in g.versions {
            served.push(openapi::v3_key(g.name, v));
        }
    }
    assert_eq!(paths.len(), served.len());
    for key in served {
        let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
        let doc = openapi::v3_document(&key).unwrap();
        assert_eq!(url, format!("/openapi/v3/{key}?hash={}", doc.hash));
        assert_eq!(doc.hash.len(), 128);
        assert!(doc
            .hash
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(doc.etag(), format!("\"{}\"", doc.hash));
    }
}

#[test]
fn documents_are_deterministic() {
    let a = openapi::build_v3();
    let b = openapi::build_v3();
    assert_eq!(a.index, b.index);
    assert_eq!(a.group_versions, b.group_versions);
    assert_eq!(openapi::v3().index, a.index);
    let c = openapi::build_v2();
    assert_eq!(c.json, openapi::v2().json);
    assert_eq!(c.protobuf, openapi::v2().protobuf);
}

#[test]
fn every_served_kind_has_a_schema_with_its_gvk() {
    for row in catalogue::RESOURCES
        .iter()
        .filter(|r| r.group != openapi::METRICS_GROUP)
    {
        let doc = v3_doc(&openapi::v3_key(row.group, row.version));
        assert!(
            schema_with_gvk(&doc, row.group, row.version, row.kind).is_some(),
            "{}/{} {} has no schema",
            row.group,
            row.version,
            row.kind
        );
        if row.supports(Verb::List) {
            assert!(
                schema_with_gvk(&doc, row.group, row.version, &row.list_kind()).is_some(),
                "{} has no list schema",
                row.list_kind()
            );
        }
        for sub in row.subresources {
            if sub.kind.ends_with("Options") || sub.name == "log" {
                continue;
            }
            let gv = sub.object_group_version.unwrap_or(row.group_version());
            assert!(
                schema_with_gvk(&doc, gv.group, gv.version, sub.kind).is_some(),
                "{}/{} has no schema",
                row.plural,
                sub.name
            );
        }
    }
}

#[test]
fn every_reference_resolves() {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => out.push(s.clone()),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    for key in openapi::v3().group_versions.keys() {
        let doc = v3_doc(key);
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{key}: odd ref {r}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{key}: dangling {r}"
            );
        }
    }
    let v2: Value = serde_json::from_slice(&openapi::v2().json.body()).unwrap();
    let mut all = Vec::new();
    refs(&v2, &mut all);
    for r in all {
        let name = r.strip_prefix("#/definitions/").unwrap();
        assert!(v2["definitions"].get(name).is_some(), "v2: dangling {r}");
    }
}

#[test]
fn pod_containers_merge_by_name() {
    let doc = v3_doc("api/v1");
    let pod = schema_with_gvk(&doc, "", "v1", "Pod").unwrap();
    let spec = resolve(&doc, &pod["properties"]["spec"]);
    let containers = &spec["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["type"], "array");
    let container = resolve(&doc, &containers["items"]);
    let env = &container["properties"]["env"];
    assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    let ports = &container["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        serde_json::json!(["containerPort", "protocol"])
    );
    assert_eq!(
        container["properties"]["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    assert_eq!(
        spec["properties"]["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert!(spec["properties"]["tolerations"]
        .get("x-kubernetes-patch-strategy")
        .is_none());
    // explain prints descriptions.
    assert!(containers["description"]
        .as_str()
        .unwrap()
        .contains("containers"));
    // Upstream requires neither metadata nor defaulted names (explain prints `-required-`).
    assert!(pod.get("required").is_none());
    let meta = resolve(&doc, &pod["properties"]["metadata"]);
    assert_eq!(
        meta["properties"]["finalizers"]["x-kubernetes-patch-strategy"],
        "merge"
    );
    assert_eq!(
        meta["properties"]["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
}

#[test]
fn deployment_patch_advertises_field_validation_and_patch_types() {
    let doc = v3_doc("apis/apps/v1");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params = patch["parameters"].as_array().unwrap();
    for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
        assert!(
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "PATCH lacks {name}"
        );
    }
    let content = patch["requestBody"]["content"].as_object().unwrap();
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(t), "PATCH lacks {t}");
    }
    let put = item["put"]["parameters"].as_array().unwrap();
    assert!(put.iter().any(|p| p["name"] == "fieldValidation"));
    let create = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
    assert!(create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    // The scale subresource's operations carry autoscaling/v1 Scale.
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    assert!(schema_with_gvk(&doc, "autoscaling", "v1", "Scale").is_some());
    let spec = resolve(
        &doc,
        &schema_with_gvk(&doc, "apps", "v1", "Deployment").unwrap()["properties"]["spec"],
    );
    assert_eq!(
        spec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
}

/// What every mutating operation of every document must carry for cli-runtime's
/// query-parameter verifier and kubectl's apply.
#[test]
fn every_patch_operation_is_verifiable() {
    for key in openapi::v3().group_versions.keys() {
        let doc = v3_doc(key);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !["post", "put", "patch"].contains(&method.as_str())
                    || op["x-kubernetes-action"] == "connect"
                {
                    continue;
                }
                let mut params: Vec<&Value> = op["parameters"]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                params.extend(item["parameters"].as_array().into_iter().flatten());
                for name in ["fieldValidation", "dryRun"] {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == name && p["in"] == "query"),
                        "{method} {path} lacks {name}"
                    );
                }
                if method == "patch" {
                    assert!(
                        op["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == "fieldValidation"),
                        "{path}: fieldValidation must be inline on PATCH"
                    );
                    let gvk = &op["x-kubernetes-group-version-kind"];
                    assert!(gvk.is_object(), "{path}: PATCH without GVK");
                    let has_schema = schema_with_gvk(
                        &doc,
                        gvk["group"].as_str().unwrap(),
                        gvk["version"].as_str().unwrap(),
                        gvk["kind"].as_str().unwrap(),
                    )
                    .is_some();
                    assert!(has_schema, "{path}: PATCH GVK has no schema");
                    assert!(op["requestBody"]["content"]
                        .get("application/strategic-merge-patch+json")
                        .is_some());
                }
            }
        }
    }
}

/// kubectl explain finds the GVK on the collection or item path of the resource.
#[test]
fn explain_finds_every_resource() {
    for row in catalogue::RESOURCES
        .iter()
        .filter(|r| r.group != openapi::METRICS_GROUP)
    {
        let doc = v3_doc(&openapi::v3_key(row.group, row.version));
        let base = if row.group.is_empty() {
            format!("/api/{}", row.version)
        } else {
            format!("/apis/{}/{}", row.group, row.version)
        };
        let candidates = [
            format!("{base}/{}", row.plural),
            format!("{base}/{}/{{name}}", row.plural),
            format!("{base}/namespaces/{{namespace}}/{}", row.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", row.plural),
        ];
        let found = candidates.iter().any(|p| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .any(|m| doc["paths"][p][m]["x-kubernetes-group-version-kind"]["kind"] == row.kind)
        });
        assert!(found, "explain cannot find {}/{}", row.group, row.plural);
    }
}

#[test]
fn v2_json_and_protobuf_agree() {
    let v2 = openapi::v2();
    let doc: Value = serde_json::from_slice(&v2.json.body()).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch["consumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "application/strategic-merge-patch+json"));
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
    // v2 keeps `$ref` with sibling descriptions and references #/definitions/.
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    // The protobuf decodes as a generic message tree whose definitions count matches.
    let protobuf = v2.protobuf.body();
    assert!(!protobuf.is_empty());
    let definitions = doc["definitions"].as_object().unwrap().len();
    let top = fields(&protobuf);
    let defs_msg = top
        .iter()
        .find(|(tag, _)| *tag == 9)
        .expect("definitions")
        .1;
    let named = fields(defs_msg).len();
    assert_eq!(named, definitions);
    let paths_msg = top.iter().find(|(tag, _)| *tag == 8).expect("paths").1;
    assert_eq!(
        fields(paths_msg).len(),
        doc["paths"].as_object().unwrap().len()
    );
}

/// The length-delimited fields of a protobuf message (enough to walk the document's structure).
fn fields(mut buf: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).expect("key");
        let (tag, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut buf).expect("varint");
            }
            2 => {
                let len = prost::encoding::decode_varint(&mut buf).expect("len") as usize;
                out.push((tag, &buf[..len]));
                buf = &buf[len..];
            }
            1 => buf = &buf[8..],
            5 => buf = &buf[4..],
            w => panic!("wire type {w}"),
        }
    }
    out
}

/// `RUDDER_OPENAPI_DUMP=DIR cargo nextest run … dump` writes every document to DIR.
#[test]
fn dump() {
    let Some(dir) = std::env::var_os("RUDDER_OPENAPI_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let v3 = openapi::v3();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("v3.json"), v3.index.body()).unwrap();
    for (key, doc) in &v3.group_versions {
        std::fs::write(
            dir.join(format!("{}.json", key.replace('/', "_"))),
            doc.body(),
        )
        .unwrap();
    }
    let v2 = openapi::v2();
    std::fs::write(dir.join("v2.json"), v2.json.body()).unwrap();
    std::fs::write(dir.join("v2.pb"), v2.protobuf.body()).unwrap();
    let mut report = format!(
        "v3 build {:?}, v2 build {:?}\nindex {} bytes\n",
        v3.build_time,
        v2.build_time,
        v3.index.body().len()
    );
    for (key, doc) in &v3.group_versions {
        report.push_str(&format!("{key} {} bytes\n", doc.body().len()));
    }
    report.push_str(&format!(
        "v2 json {} bytes, protobuf {} bytes\n",
        v2.json.body().len(),
        v2.protobuf.body().len()
    ));
    std::fs::write(dir.join("sizes.txt"), report).unwrap();
}
