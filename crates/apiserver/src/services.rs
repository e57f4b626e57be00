//! Service address allocation: ClusterIPs from the service CIDR and NodePorts from
//! 30000–32767, each held by a key in the store (`/registry/ranges/serviceips/<ip>`,
//! `/registry/ranges/servicenodeports/<port>`) taken with create-if-absent, so two servers
//! can never hand out the same one, and released when the service gives it up.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use rudder_api::validation::FieldError;
use rudder_store::{KeyRange, RangeRequest, Store, StoreError};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::hooks::Hooks;

const IPS: &str = "/registry/ranges/serviceips/";
const PORTS: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORTS: (u16, u16) = (30000, 32767);

/// An IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (ADDRESS/BITS)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: only IPv4 service networks are supported"))?;
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| (8..=30).contains(b))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8–30"))?;
        let mask = u32::MAX << (32 - bits);
        Ok(Cidr {
            base: u32::from(ip) & mask,
            bits,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.bits)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.bits);
        u32::from(ip) & mask == self.base
    }

    /// The first usable address: the `kubernetes` service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

pub struct Allocator {
    store: Arc<dyn Store>,
    cidr: Cidr,
}

/// What one service holds, to give back if its write fails or it goes away.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    pub ips: Vec<String>,
    pub ports: Vec<u16>,
}

fn owner(obj: &Value) -> Bytes {
    Bytes::from(
        json!({"namespace": obj["metadata"]["namespace"], "name": obj["metadata"]["name"]})
            .to_string(),
    )
}

fn invalid(obj: &Value, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        obj["metadata"]["name"].as_str().unwrap_or(""),
        errs,
    )
}

/// A NodePort problem: the value is a number, printed as one.
fn port_error(i: usize, port: u64, detail: &str) -> FieldError {
    FieldError {
        field: format!("spec.ports[{i}].nodePort"),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {port}: {detail}"),
    }
}

/// What a service object holds now.
pub fn held(obj: &Value) -> Held {
    let spec = &obj["spec"];
    let ips = spec["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .or_else(|| spec["clusterIP"].as_str().map(|ip| vec![ip.to_string()]))
        .unwrap_or_default()
        .into_iter()
        .filter(|ip: &String| ip != "None" && !ip.is_empty())
        .collect();
    let ports = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    Held { ips, ports }
}

fn wants_node_ports(obj: &Value) -> bool {
    matches!(
        obj["spec"]["type"].as_str(),
        Some("NodePort") | Some("LoadBalancer")
    )
}

/// What `a` holds and `b` does not.
fn minus(a: Held, b: &Held) -> Held {
    Held {
        ips: a.ips.into_iter().filter(|i| !b.ips.contains(i)).collect(),
        ports: a
            .ports
            .into_iter()
            .filter(|p| !b.ports.contains(p))
            .collect(),
    }
}

/// A Service's addresses are taken before it is written and given back when a write fails,
/// when an update drops them, and when the service goes.
#[async_trait::async_trait]
impl Hooks for Allocator {
    async fn before_write(
        &self,
        new: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        self.allocate(new, old, dry_run).await.map(|_| ())
    }

    async fn after_write(&self, old: Option<&Value>, new: &Value, written: bool) {
        let (before, after) = (old.map(held).unwrap_or_default(), held(new));
        let free = if written {
            minus(before, &after)
        } else {
            minus(after, &before)
        };
        self.release(&free).await;
    }

    async fn after_delete(&self, old: &Value) {
        self.release(&held(old)).await;
    }
}

impl Allocator {
    pub fn new(store: Arc<dyn Store>, cidr: Cidr) -> Allocator {
        Allocator { store, cidr }
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    async fn take(&self, key: String, who: &Bytes) -> Result<bool, ApiError> {
        match self.store.create(Bytes::from(key), who.clone()).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { current }) => Ok(current.value == *who),
            Err(e) => Err(e.into()),
        }
    }

    async fn give_back(&self, key: String) {
        if let Err(e) = self.store.delete(Bytes::from(key.clone()), None).await {
            if !matches!(e, StoreError::NotFound { .. }) {
                tracing::warn!(%key, error = %e, "could not release a service allocation");
            }
        }
    }

    /// Releases what `held` lists.
    pub async fn release(&self, held: &Held) {
        for ip in &held.ips {
            self.give_back(format!("{IPS}{ip}")).await;
        }
        for p in &held.ports {
            self.give_back(format!("{PORTS}{p}")).await;
        }
    }

    /// Fills in and reserves the service's ClusterIP and NodePorts (those it asks for, or free
    /// ones). `old` is the stored service on update: what it already holds stays its own.
    /// Returns what was newly taken, to release if the write fails.
    pub async fn allocate(
        &self,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Held, ApiError> {
        let who = owner(obj);
        let before = old.map(held).unwrap_or_default();
        let mut taken = Held::default();
        let result = self
            .allocate_inner(obj, &before, &who, dry_run, &mut taken)
            .await;
        if result.is_err() && !dry_run {
            self.release(&taken).await;
        }
        result.map(|_| taken)
    }

    async fn allocate_inner(
        &self,
        obj: &mut Value,
        before: &Held,
        who: &Bytes,
        dry_run: bool,
        taken: &mut Held,
    ) -> Result<(), ApiError> {
        let external_name = obj["spec"]["type"].as_str() == Some("ExternalName");
        // ClusterIP.
        if !external_name {
            let asked = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
            if asked != "None" {
                let ip = if asked.is_empty() {
                    match before.ips.first() {
                        Some(ip) => ip.clone(),
                        None => self.free_ip(who, dry_run, taken).await?,
                    }
                } else {
                    let parsed: Ipv4Addr = asked.parse().map_err(|_| {
                        invalid(
                            obj,
                            vec![FieldError::invalid(
                                "spec.clusterIPs[0]",
                                &asked,
                                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                            )],
                        )
                    })?;
                    if !before.ips.contains(&asked) {
                        if !self.cidr.contains(parsed) {
                            return Err(invalid(obj, vec![FieldError {
                                field: "spec.clusterIPs".into(),
                                reason: "FieldValueInvalid",
                                message: format!(
                                    "Invalid value: []string{{\"{asked}\"}}: failed to allocate IP {asked}: the provided IP ({asked}) is not in the valid range. The range of valid IPs is {}",
                                    self.cidr
                                ),
                            }]));
                        }
                        if !dry_run && !self.take(format!("{IPS}{asked}"), who).await? {
                            return Err(invalid(obj, vec![FieldError {
                                field: "spec.clusterIPs".into(),
                                reason: "FieldValueInvalid",
                                message: format!("Invalid value: []string{{\"{asked}\"}}: failed to allocate IP {asked}: provided IP is already allocated"),
                            }]));
                        }
                        if !dry_run {
                            taken.ips.push(asked.clone());
                        }
                    }
                    asked
                };
                rudder_api::value::set(obj, &["spec", "clusterIP"], json!(ip));
                rudder_api::value::set(obj, &["spec", "clusterIPs"], json!([ip]));
            } else {
                rudder_api::value::set(obj, &["spec", "clusterIPs"], json!(["None"]));
            }
        }
        // NodePorts.
        if wants_node_ports(obj) {
            let n = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
            for i in 0..n {
                let asked = obj["spec"]["ports"][i]["nodePort"].as_u64().unwrap_or(0);
                let port = if asked == 0 {
                    self.free_port(who, dry_run, taken, before).await?
                } else {
                    let p = u16::try_from(asked)
                        .ok()
                        .filter(|p| (NODE_PORTS.0..=NODE_PORTS.1).contains(p));
                    let Some(p) = p else {
                        return Err(invalid(obj, vec![port_error(i, asked, &format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORTS.0, NODE_PORTS.1
                        ))]));
                    };
                    if !before.ports.contains(&p) {
                        if !dry_run && !self.take(format!("{PORTS}{p}"), who).await? {
                            return Err(invalid(
                                obj,
                                vec![port_error(
                                    i,
                                    u64::from(p),
                                    "provided port is already allocated",
                                )],
                            ));
                        }
                        if !dry_run {
                            taken.ports.push(p);
                        }
                    }
                    p
                };
                if let Some(p) = obj["spec"]["ports"].get_mut(i) {
                    rudder_api::value::set(p, &["nodePort"], json!(port));
                }
            }
        } else if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for p in ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
        Ok(())
    }

    async fn free_ip(
        &self,
        who: &Bytes,
        dry_run: bool,
        taken: &mut Held,
    ) -> Result<String, ApiError> {
        // Random probes first, then a scan: the first address belongs to `kubernetes`, the last
        // is the broadcast address.
        let size = self.cidr.size();
        for attempt in 0..size.min(64) + size {
            let offset = if attempt < 64 {
                2 + rand::random::<u32>() % (size - 3)
            } else {
                2 + (attempt - 64)
            };
            if offset >= size - 1 {
                break;
            }
            let ip = Ipv4Addr::from(self.cidr.base + offset).to_string();
            if dry_run {
                if self
                    .store
                    .get(Bytes::from(format!("{IPS}{ip}")), 0)
                    .await?
                    .is_none()
                {
                    return Ok(ip);
                }
            } else if self.take(format!("{IPS}{ip}"), who).await? {
                taken.ips.push(ip.clone());
                return Ok(ip);
            }
        }
        Err(ApiError::internal(format!(
            "no free ClusterIP left in {}",
            self.cidr
        )))
    }

    async fn free_port(
        &self,
        who: &Bytes,
        dry_run: bool,
        taken: &mut Held,
        before: &Held,
    ) -> Result<u16, ApiError> {
        let span = u32::from(NODE_PORTS.1 - NODE_PORTS.0) + 1;
        for attempt in 0..64 + span {
            let p = if attempt < 64 {
                NODE_PORTS.0 + (rand::random::<u32>() % span) as u16
            } else {
                NODE_PORTS.0 + (attempt - 64) as u16
            };
            if before.ports.contains(&p) || taken.ports.contains(&p) {
                continue;
            }
            if dry_run {
                if self
                    .store
                    .get(Bytes::from(format!("{PORTS}{p}")), 0)
                    .await?
                    .is_none()
                {
                    return Ok(p);
                }
            } else if self.take(format!("{PORTS}{p}"), who).await? {
                taken.ports.push(p);
                return Ok(p);
            }
        }
        Err(ApiError::internal("no free NodePort left"))
    }

    /// Takes the first address for the `kubernetes` service.
    pub async fn reserve_first(&self, who: &Value) -> Result<(), ApiError> {
        self.take(format!("{IPS}{}", self.cidr.first()), &owner(who))
            .await
            .map(|_| ())
    }

    /// Releases allocations no service holds (left by a crash between allocating and writing).
    pub async fn repair(&self, services: &[Value]) -> Result<usize, ApiError> {
        let mut in_use = std::collections::HashSet::new();
        for s in services {
            let h = held(s);
            in_use.extend(h.ips.into_iter().map(|ip| format!("{IPS}{ip}")));
            in_use.extend(h.ports.into_iter().map(|p| format!("{PORTS}{p}")));
        }
        let mut freed = 0;
        for prefix in [IPS, PORTS] {
            let resp = self
                .store
                .range(RangeRequest {
                    range: KeyRange::prefix(Bytes::from(prefix)),
                    revision: 0,
                    limit: 0,
                    count_only: false,
                })
                .await?;
            for kv in resp.kvs {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                if !in_use.contains(&key) {
                    self.give_back(key).await;
                    freed += 1;
                }
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.43.0.0/16").unwrap();
        assert_eq!(c.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(Cidr::parse("10.43.0.0").is_err());
        assert!(Cidr::parse("fd00::/108").is_err());
        assert_eq!(
            Cidr::parse("10.43.1.7/24").unwrap().to_string(),
            "10.43.1.0/24"
        );
    }

    #[test]
    fn held_lists_ips_and_node_ports() {
        let s = json!({"spec": {"clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"], "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        assert_eq!(
            held(&s),
            Held {
                ips: vec!["10.43.0.9".into()],
                ports: vec![30080]
            }
        );
        assert_eq!(
            held(&json!({"spec": {"clusterIP": "None"}})),
            Held::default()
        );
    }
}
