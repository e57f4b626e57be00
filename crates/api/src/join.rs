//! What an agent and the server say when the agent joins (`POST /v1-rudder/node-certificates`
//! with the node token as a bearer token): the server's side is `rudder_apiserver::join`, the
//! agent's `rudder_agent::connect`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where agents ask for their certificates.
pub const PATH: &str = "/v1-rudder/node-certificates";

/// What an agent sends.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    pub node_name: String,
    /// The secret that binds the name to this machine (kept in `<data-dir>/agent/node-password`).
    pub node_password: String,
    /// The addresses the node's server answers on (its serving certificate names them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// PEM PKCS#10 requests for the node's client and serving keys; without them the password
    /// is only registered (simulated nodes authenticate with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_request: Option<String>,
}

/// What the agent gets back: the certificates (PEM) asked for.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_certificate: Option<String>,
}
