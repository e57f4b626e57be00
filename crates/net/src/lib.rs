//! Rudder's service networking, run by every node agent.
//!
//! Owns: the cluster DNS ([`dns`]): the names of Services and their endpoints, answered from
//! the API's Services and EndpointSlices, everything else forwarded to the node's own
//! resolvers. The service proxy and the pod network join it here.
//!
//! Must not touch: the API server's internals (it is a client of the API like any other), or
//! any network configuration of the machine it was not asked to serve on.

pub mod dns;
