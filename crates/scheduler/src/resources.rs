//! Resource arithmetic: quantities as integers, and what a pod requests as upstream's scheduler
//! computes it (the effective request: init containers, restartable sidecars, overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The CPU a container without a CPU request counts as when nodes are scored (millicores).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when nodes are scored.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A set of resource amounts: CPU in millicores, the rest in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources, hugepages, … by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// A resource list (`requests`, `allocatable`, `overhead`) as amounts.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        if let Some(list) = list {
            r.add_list(list);
        }
        r
    }

    fn add_list(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            match name.as_str() {
                "cpu" => self.milli_cpu += milli_value(q),
                "memory" => self.memory += value(q),
                "ephemeral-storage" => self.ephemeral_storage += value(q),
                "pods" => self.pods += value(q),
                other if is_scalar(other) => {
                    *self.scalar.entry(other.to_string()).or_default() += value(q)
                }
                _ => {}
            }
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    /// Whether nothing at all is requested (pods aside).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources (`example.com/foo`), hugepages and attachable volumes: what the fit
/// check compares besides cpu, memory, ephemeral storage and pods.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && !name.contains("requests."))
}

/// What a pod asks of a node: the effective request (as `PodRequests` upstream) and the
/// non-zero request used for scoring (missing CPU/memory requests count as the defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequest {
    pub req: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_mem: i64,
}

fn container_request(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn non_zero(c: &Container) -> Resources {
    let r = container_request(c);
    let has = |n: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|l| l.contains_key(n))
    };
    Resources {
        milli_cpu: if has("cpu") {
            r.milli_cpu
        } else {
            DEFAULT_MILLI_CPU_REQUEST
        },
        memory: if has("memory") {
            r.memory
        } else {
            DEFAULT_MEMORY_REQUEST
        },
        ..Default::default()
    }
}

/// The effective request of a pod from per-container requests (`each`): the larger of the sum of
/// the app containers (plus restartable init containers, which keep running) and each init
/// container (plus the sidecars started before it); then the pod overhead.
fn effective(pod: &Pod, each: impl Fn(&Container) -> Resources) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&each(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = each(c);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut t = r;
            t.add(&sidecars);
            init_max.max_with(&t);
        }
    }
    reqs.max_with(&init_max);
    if let Some(o) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(Some(o)));
    }
    reqs
}

impl PodRequest {
    pub fn of(pod: &Pod) -> PodRequest {
        let mut req = effective(pod, container_request);
        req.pods = 1;
        let nz = effective(pod, non_zero);
        PodRequest {
            req,
            non_zero_cpu: nz.milli_cpu,
            non_zero_mem: nz.memory,
        }
    }
}

/// A quantity's value in thousandths, rounded up (as `Quantity.MilliValue()`); 0 if unparsable.
pub fn milli_value(q: &Quantity) -> i64 {
    parse(&q.0).map(|(n, d)| ceil_div(n * 1000, d)).unwrap_or(0)
}

/// A quantity's value in units, rounded up (as `Quantity.Value()`); 0 if unparsable.
pub fn value(q: &Quantity) -> i64 {
    parse(&q.0).map(|(n, d)| ceil_div(n, d)).unwrap_or(0)
}

fn ceil_div(n: i128, d: i128) -> i64 {
    let q = n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0);
    q.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A quantity string as the fraction `n / d`.
fn parse(s: &str) -> Option<(i128, i128)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 18 || int.len() > 20 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mut n: i128 = digits.parse().ok()?;
    let mut d: i128 = 10i128.pow(frac.len() as u32);
    let (base, exp): (i128, u32) = match suffix {
        "" => (1, 0),
        "n" => return Some((sign(neg, n), d * 1_000_000_000)),
        "u" => return Some((sign(neg, n), d * 1_000_000)),
        "m" => return Some((sign(neg, n), d * 1000)),
        "k" => (1000, 1),
        "M" => (1000, 2),
        "G" => (1000, 3),
        "T" => (1000, 4),
        "P" => (1000, 5),
        "E" => (1000, 6),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        e if e.starts_with(['e', 'E']) => {
            let x: i32 = e[1..].parse().ok()?;
            if x.unsigned_abs() > 18 {
                return None;
            }
            if x >= 0 {
                n = n.checked_mul(10i128.pow(x as u32))?;
            } else {
                d *= 10i128.pow((-x) as u32);
            }
            return Some((sign(neg, n), d));
        }
        _ => return None,
    };
    n = n.checked_mul(base.checked_pow(exp)?)?;
    Some((sign(neg, n), d))
}

fn sign(neg: bool, n: i128) -> i128 {
    if neg {
        -n
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn quantities_parse_as_upstream_rounds_them() {
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("1.5")), 1500);
        assert_eq!(milli_value(&q("2")), 2000);
        assert_eq!(value(&q("1Gi")), 1 << 30);
        assert_eq!(value(&q("128974848")), 128974848);
        assert_eq!(value(&q("129e6")), 129_000_000);
        assert_eq!(value(&q("123Mi")), 123 * 1024 * 1024);
        assert_eq!(value(&q("1k")), 1000);
        assert_eq!(value(&q("100m")), 1, "Value() rounds up");
        assert_eq!(value(&q("junk")), 0);
    }

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn the_effective_request_counts_init_containers_sidecars_and_overhead() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "50Mi"}}},
                {"name": "side", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "50m", "memory": "10Mi"}}},
                {"name": "i2", "resources": {"requests": {"memory": "500Mi"}}}],
            "overhead": {"cpu": "10m"}}));
        let r = PodRequest::of(&p);
        // cpu: max(100+200+50, 1000, 50+0) + 10; memory: max(100+10, 50, 500+10).
        assert_eq!(r.req.milli_cpu, 1010);
        assert_eq!(r.req.memory, 510 * 1024 * 1024);
        assert_eq!(r.req.pods, 1);
        // Scoring: b has no memory request and counts 200Mi.
        assert_eq!(r.non_zero_mem, 510 * 1024 * 1024);
        let empty = PodRequest::of(&pod(json!({"containers": [{"name": "a"}]})));
        assert!(empty.req.is_zero());
        assert_eq!(empty.non_zero_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(empty.non_zero_mem, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn extended_resources_are_scalars() {
        let r = Resources::from_list(Some(&BTreeMap::from([
            ("example.com/gpu".to_string(), q("2")),
            ("hugepages-2Mi".to_string(), q("4Mi")),
            ("pods".to_string(), q("110")),
        ])));
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.pods, 110);
    }
}
