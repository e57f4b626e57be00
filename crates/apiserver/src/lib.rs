//! The Kubernetes API server.
//!
//! Owns: HTTPS (rustls) with the cluster's PKI ([`pki`]), authentication (x509 client
//! certificates, bearer tokens), authorization, the one generic registry that serves every kind
//! in `rudder_api::catalogue` over the store, the watch cache, discovery and openapi.
//!
//! Must not touch: the store's files (only the `Store` trait), kind-specific rules (those are
//! strategies in `rudder-api`).

pub mod admission;
pub mod authz;
pub mod decode;
pub mod error;
pub mod handlers;
pub mod hooks;
pub mod join;
pub mod kubelet;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod namespaces;
pub mod negotiate;
pub mod openapi_routes;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod resource_metrics;
pub mod resources;
pub mod server;
pub mod services;
pub mod subresources;
pub mod table;
pub mod watchcache;
