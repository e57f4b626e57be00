//! Leader election through a coordination.k8s.io Lease, as upstream's client-go leaderelection:
//! of several processes running the same loops (two servers on one etcd, or a standalone
//! `rudder controllers` beside a server), only the Lease's holder runs them.
//!
//! - A candidate takes the Lease when it does not exist, is released (no holder), or has not
//!   changed for `lease_duration` by the candidate's own clock (so clock skew between machines
//!   does not matter, as upstream observes renewals rather than trusting renewTime).
//! - The holder renews every `retry_period`; when it has not managed to for `renew_deadline`, it
//!   stops its loops before anyone else may take over (`renew_deadline` < `lease_duration`).
//! - Every write carries the resourceVersion read, so two candidates never both win.
//! - On shutdown the holder releases the Lease (no holder, duration 1 s) so another takes over
//!   at once instead of after `lease_duration`.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

/// How one set of loops is elected.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Lease's name in kube-system (`kube-controller-manager`, `kube-scheduler`).
    pub lease: String,
    /// This process's identity as the Lease's holder.
    pub identity: String,
    /// How long a Lease that is not renewed keeps others out (`--leader-elect-lease-duration`).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops leading
    /// (`--leader-elect-renew-deadline`).
    pub renew_deadline: Duration,
    /// How often the holder renews and candidates try (`--leader-elect-retry-period`).
    pub retry_period: Duration,
}

impl Config {
    /// Checks the durations relate as upstream requires.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(
                "--leader-elect-renew-deadline must be less than --leader-elect-lease-duration"
                    .into(),
            );
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("--leader-elect-retry-period must be more than 0 and less than --leader-elect-renew-deadline".into());
        }
        Ok(())
    }
}

/// A unique identity for this process: the host name and a random suffix, as upstream's.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "rudder".into());
    format!("{host}_{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

const NAMESPACE: &str = "kube-system";

/// What a candidate last saw of the Lease, and when by its own clock.
struct Observed {
    record: (Option<String>, Option<Timestamp>),
    at: Instant,
}

/// Runs `start` whenever this process holds the Lease: its result (the running loops) is
/// dropped as soon as leadership may be lost, and `start` is called again when it is won back.
/// Returns when `shutdown` completes, after releasing the Lease if it was held.
pub async fn run<T>(
    client: kube::Client,
    cfg: Config,
    mut start: impl FnMut() -> T,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut observed: Option<Observed> = None;
    let mut running: Option<T> = None;
    let mut last_renewed = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let now = Instant::now();
        match try_acquire_or_renew(&api, &cfg, &mut observed, now).await {
            Ok(true) => {
                last_renewed = now;
                if running.is_none() {
                    tracing::info!(lease = %cfg.lease, identity = %cfg.identity, "became leader");
                    running = Some(start());
                }
            }
            Ok(false) => {
                if running.take().is_some() {
                    tracing::warn!(lease = %cfg.lease, "another holder took the lease; stopped leading");
                }
            }
            Err(e) => {
                tracing::debug!(lease = %cfg.lease, error = %e, "leader election");
                if running.is_some() && now.duration_since(last_renewed) >= cfg.renew_deadline {
                    tracing::warn!(lease = %cfg.lease, "could not renew the lease in time; stopped leading");
                    running = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = &mut shutdown => break,
        }
    }
    if running.take().is_some() {
        release(&api, &cfg).await;
    }
}

/// One round: whether this process holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<Observed>,
    now: Instant,
) -> kube::Result<bool> {
    let stamp = MicroTime(Timestamp::now());
    let Some(mut lease) = api.get_opt(&cfg.lease).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.lease.clone()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(secs(cfg.lease_duration)),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record = (holder.clone(), spec.renew_time.as_ref().map(|t| t.0));
    match observed {
        Some(o) if o.record == record => {}
        _ => {
            *observed = Some(Observed {
                record: record.clone(),
                at: now,
            })
        }
    }
    let mine = holder.as_deref() == Some(cfg.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .map_or(cfg.lease_duration, |s| Duration::from_secs(s.max(1) as u64));
    let expired = observed
        .as_ref()
        .is_some_and(|o| now.duration_since(o.at) >= duration);
    if !mine && holder.is_some() && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(stamp.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(secs(cfg.lease_duration));
    spec.renew_time = Some(stamp);
    // The resourceVersion read makes this a compare-and-swap: a conflict means someone else
    // wrote first.
    match api
        .replace(&cfg.lease, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up so that another candidate takes it at once.
async fn release(api: &Api<Lease>, cfg: &Config) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.lease).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    match api
        .replace(&cfg.lease, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %cfg.lease, "released the lease"),
        Err(e) => tracing::warn!(lease = %cfg.lease, error = %e, "releasing the lease"),
    }
}

fn secs(d: Duration) -> i32 {
    d.as_secs().clamp(1, i32::MAX as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lease: u64, renew: u64, retry: u64) -> Config {
        Config {
            lease: "x".into(),
            identity: identity(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        }
    }

    #[test]
    fn durations_must_nest() {
        assert!(cfg(15, 10, 2).validate().is_ok());
        assert!(cfg(10, 10, 2).validate().is_err());
        assert!(cfg(15, 10, 10).validate().is_err());
        assert!(cfg(15, 10, 0).validate().is_err());
    }

    #[test]
    fn identities_differ() {
        assert_ne!(identity(), identity());
    }
}
