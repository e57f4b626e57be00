//! Rudder's benchmarks and fault-injection harnesses, run by `scripts/bench NAME`.
//!
//! Owns: measuring Rudder against its peer in the same run (a real etcd for the store and for the API server, …) and
//! printing each figure for both with the ratio; crash-safety rounds with real process deaths.
//! Must not touch: any component's internals; everything goes through public APIs.

pub mod api;
pub mod crash;
pub mod store;
