//! The resource catalogue: every kind the API server serves, as data.
//!
//! Owns: the group/version/kind/resource table ([`catalogue`]) with scope, verbs, short names,
//! categories and subresources, and the discovery documents built from it ([`discovery`]).
//! Strategies (defaulting, validation, status/scale rules) and printer columns live here too as
//! they are added: a new kind is a table entry and a strategy, never a new handler.
//!
//! Must not touch: HTTP, the store, authentication. This crate is pure data and functions over
//! JSON objects, so every rule in it is unit-testable.

/// The Kubernetes version Rudder serves (the API) and its agents report (kubelet version).
pub const KUBERNETES_VERSION: (u32, u32, u32) = (1, 33, 0);

pub mod apiregistration;
pub mod catalogue;
pub mod conversion;
pub mod discovery;
pub mod fields;
pub mod join;
pub mod managed;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod pruned;
pub mod quota;
pub mod schema;
pub mod selector;
pub mod strategy;
pub mod tls;
pub mod upgrade;
pub mod validation;
pub mod value;
