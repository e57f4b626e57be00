//! `apiregistration.k8s.io/v1` APIService: the kube-aggregator's type, which k8s-openapi does not
//! carry (it generates only k8s.io/api). Written here with the same fields, JSON names and
//! schema (`io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.*`) as upstream's OpenAPI
//! document, so APIServices are typed like every other built-in kind: wrong JSON types are
//! refused at decoding, unknown fields pruned, and the schema published in `/openapi`. List and
//! patch extensions (conditions merged by `type`) are added where every kind gets them
//! (`openapi::FIELD_EXTENSIONS`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use k8s_openapi::ByteString;
use serde::Deserialize;

const PREFIX: &str = "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.";

/// APIService represents a server for a particular GroupVersion. Name must be "version.group".
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct APIService {
    #[serde(rename = "apiVersion")]
    pub api_version: Option<String>,
    pub kind: Option<String>,
    /// Absent or null is an empty ObjectMeta, as k8s-openapi's types decode it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    pub spec: Option<APIServiceSpec>,
    pub status: Option<APIServiceStatus>,
}

/// Where the group/version is served: `service` null means by this server itself.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIServiceSpec {
    pub ca_bundle: Option<ByteString>,
    pub group: Option<String>,
    pub group_priority_minimum: Option<i32>,
    #[serde(rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: Option<bool>,
    pub service: Option<ServiceReference>,
    pub version: Option<String>,
    pub version_priority: Option<i32>,
}

/// A Service by namespace and name (and port, 443 by default).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ServiceReference {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub port: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct APIServiceStatus {
    pub conditions: Option<Vec<APIServiceCondition>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIServiceCondition {
    pub last_transition_time: Option<Time>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl k8s_openapi::Resource for APIService {
    const API_VERSION: &'static str = "apiregistration.k8s.io/v1";
    const GROUP: &'static str = "apiregistration.k8s.io";
    const KIND: &'static str = "APIService";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "apiservices";
    type Scope = k8s_openapi::ClusterResourceScope;
}

fn described<T: JsonSchema>(g: &mut SchemaGenerator, description: &str) -> Schema {
    let mut s = g.subschema_for::<T>();
    s.ensure_object()
        .insert("description".into(), description.into());
    s
}

impl JsonSchema for APIService {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{PREFIX}APIService").into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "APIService represents a server for a particular GroupVersion. Name must be \"version.group\".",
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                    "type": "string",
                },
                "kind": {
                    "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                    "type": "string",
                },
                "metadata": described::<ObjectMeta>(g, "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"),
                "spec": described::<APIServiceSpec>(g, "Spec contains information for locating and communicating with a server"),
                "status": described::<APIServiceStatus>(g, "Status contains derived information about an API server"),
            },
        })
    }
}

impl JsonSchema for APIServiceSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{PREFIX}APIServiceSpec").into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "APIServiceSpec contains information for locating and communicating with a server. Only https is supported, though you are able to disable certificate verification.",
            "type": "object",
            "properties": {
                "caBundle": {
                    "description": "CABundle is a PEM encoded CA bundle which will be used to validate an API server's serving certificate. If unspecified, system trust roots on the apiserver are used.",
                    "type": "string",
                    "format": "byte",
                },
                "group": {
                    "description": "Group is the API group name this server hosts",
                    "type": "string",
                },
                "groupPriorityMinimum": {
                    "description": "GroupPriorityMinimum is the priority this group should have at least. Higher priority means that the group is preferred by clients over lower priority ones. Note that other versions of this group might specify even higher GroupPriorityMinimum values such that the whole group gets a higher priority. The primary sort is based on GroupPriorityMinimum, ordered highest number to lowest (20 before 10). The secondary sort is based on the alphabetical comparison of the name of the object.  (v1.bar before v1.foo) We'd recommend something like: *.k8s.io (except extensions) at 18000 and PaaSes (OpenShift, Deis) are recommended to be in the 2000s",
                    "type": "integer",
                    "format": "int32",
                },
                "insecureSkipTLSVerify": {
                    "description": "InsecureSkipTLSVerify disables TLS certificate verification when communicating with this server. This is strongly discouraged.  You should use the CABundle instead.",
                    "type": "boolean",
                },
                "service": described::<ServiceReference>(g, "Service is a reference to the service for this API server.  It must communicate on port 443. If the Service is nil, that means the handling for the API groupversion is handled locally on this server. The call will simply delegate to the normal handler chain to be fulfilled."),
                "version": {
                    "description": "Version is the API version this server hosts.  For example, \"v1\"",
                    "type": "string",
                },
                "versionPriority": {
                    "description": "VersionPriority controls the ordering of this API version inside of its group.  Must be greater than zero. The primary sort is based on VersionPriority, ordered highest to lowest (20 before 10). Since it's inside of a group, the number can be small, probably in the 10s. In case of equal version priorities, the version string will be used to compute the order inside a group. If the version string is \"kube-like\", it will sort above non \"kube-like\" version strings, which are ordered lexicographically. \"Kube-like\" versions start with a \"v\", then are followed by a number (the major version), then optionally the string \"alpha\" or \"beta\" and another number (the minor version). These are sorted first by GA > beta > alpha (where GA is a version with no suffix such as beta or alpha), and then by comparing major version, then minor version. An example sorted list of versions: v10, v2, v1, v11beta2, v10beta3, v3beta1, v12alpha1, v11alpha2, foo1, foo10.",
                    "type": "integer",
                    "format": "int32",
                },
            },
            "required": ["groupPriorityMinimum", "versionPriority"],
        })
    }
}

impl JsonSchema for ServiceReference {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{PREFIX}ServiceReference").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "ServiceReference holds a reference to Service.legacy.k8s.io",
            "type": "object",
            "properties": {
                "name": {"description": "Name is the name of the service", "type": "string"},
                "namespace": {"description": "Namespace is the namespace of the service", "type": "string"},
                "port": {
                    "description": "If specified, the port on the service that hosting webhook. Default to 443 for backward compatibility. `port` should be a valid port number (1-65535, inclusive).",
                    "type": "integer",
                    "format": "int32",
                },
            },
        })
    }
}

impl JsonSchema for APIServiceStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{PREFIX}APIServiceStatus").into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "APIServiceStatus contains derived information about an API server",
            "type": "object",
            "properties": {
                "conditions": {
                    "description": "Current service state of apiService.",
                    "type": "array",
                    "items": g.subschema_for::<APIServiceCondition>(),
                },
            },
        })
    }
}

impl JsonSchema for APIServiceCondition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{PREFIX}APIServiceCondition").into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "APIServiceCondition describes the state of an APIService at a particular point",
            "type": "object",
            "properties": {
                "lastTransitionTime": described::<Time>(g, "Last time the condition transitioned from one status to another."),
                "message": {"description": "Human-readable message indicating details about last transition.", "type": "string"},
                "reason": {"description": "Unique, one-word, CamelCase reason for the condition's last transition.", "type": "string"},
                "status": {"description": "Status is the status of the condition. Can be True, False, Unknown.", "type": "string"},
                "type": {"description": "Type is the type of the condition.", "type": "string"},
            },
            "required": ["type", "status"],
        })
    }
}
