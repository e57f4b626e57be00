//! Events with upstream's aggregation: repeats of the same event (same object, type, reason
//! and message) become one events.k8s.io Event with a series; a different message is a new
//! Event. (kube-runtime's `Recorder` leaves the message out of its key, so "Created pod: a"
//! then "Created pod: b" would show as the first one twice.)

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::Resource;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a repeat joins the series of the first (as kube-runtime's and client-go's caches).
const SERIES_TTL: SignedDuration = SignedDuration::from_secs(6 * 60);
/// Distinct events remembered at most (client-go's correlator keeps 4,096 too): a burst of
/// 150,000 "Created pod" events must not hold 150,000 Events in memory.
const CACHE_SIZE: usize = 4096;
/// Events waiting to be written at most (client-go's broadcaster queue): past it, new events
/// are dropped, so a burst never holds up the controller that records them nor grows memory.
const QUEUE: usize = 1000;
/// Event writes in flight at most.
const IN_FLIGHT: usize = 16;

type Key = (String, String, String, String, String);

/// One controller's event recorder. Recording only queues the event: a worker writes the
/// queue in the background, several at a time.
pub struct Events {
    tx: mpsc::Sender<Pending>,
}

/// An event waiting to be written.
struct Pending {
    regarding: ObjectReference,
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
    at: Timestamp,
}

impl Events {
    /// A recorder whose worker runs on the current Tokio runtime until the recorder is dropped
    /// and its queue written.
    pub fn new(client: kube::Client, controller: &str) -> Events {
        Events::for_instance(client, controller, controller)
    }

    /// A recorder for one instance of a component (the kubelet of one node: `kubelet`, the
    /// node's name), as Events name their reporter.
    pub fn for_instance(client: kube::Client, controller: &str, instance: &str) -> Events {
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = Worker {
            client,
            controller: controller.into(),
            instance: instance.into(),
            cache: HashMap::new(),
            seq: 0,
        };
        tokio::spawn(worker.run(rx));
        Events { tx }
    }

    /// Records an event on `obj`; a failure to record is logged, never fatal.
    pub async fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.queue(obj.object_ref(&()), type_, reason, action, note);
    }

    /// Records an event on the object `regarding` names (for objects without a typed kind, and
    /// callers that are not async: recording only queues).
    pub fn queue(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let pending = Pending {
            regarding,
            type_: match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            },
            reason: reason.into(),
            action: action.into(),
            note,
            at: Timestamp::now(),
        };
        if self.tx.try_send(pending).is_err() {
            tracing::debug!(reason, "event queue full: event dropped");
        }
    }
}

/// Writes queued events, aggregating repeats into series.
struct Worker {
    client: kube::Client,
    controller: String,
    instance: String,
    /// The Event last written for each key, for series.
    cache: HashMap<Key, Event>,
    seq: u64,
}

/// One write to the API.
enum Write {
    Create(Event),
    /// A repeat: the series of the Event already written (or being written), and the whole
    /// Event in case the first write has not landed yet.
    Series(Event),
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut writes = JoinSet::new();
        while let Some(p) = rx.recv().await {
            while writes.len() >= IN_FLIGHT {
                writes.join_next().await;
            }
            let write = self.prepare(p);
            writes.spawn(send(self.client.clone(), write));
        }
        while writes.join_next().await.is_some() {}
    }

    /// The write `p` needs: a new Event, or the next count of a series.
    fn prepare(&mut self, p: Pending) -> Write {
        let key: Key = (
            p.regarding.uid.clone().unwrap_or_default(),
            p.type_.into(),
            p.reason.clone(),
            p.action.clone(),
            p.note.clone(),
        );
        if self.cache.len() >= CACHE_SIZE && !self.cache.contains_key(&key) {
            self.cache.retain(|_, e| live(e, p.at));
            if self.cache.len() >= CACHE_SIZE {
                // Forgetting costs only a new Event where a series entry would have been.
                self.cache.clear();
            }
        }
        let write = match self.cache.get(&key).filter(|e| live(e, p.at)) {
            Some(e) => {
                let mut e = e.clone();
                let count = e.series.as_ref().map_or(2, |s| s.count + 1);
                e.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(p.at),
                });
                Write::Series(e)
            }
            None => {
                self.seq += 1;
                let ns = p
                    .regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let name = format!(
                    "{}.{:x}",
                    p.regarding.name.as_deref().unwrap_or(&self.controller),
                    (p.at.as_nanosecond() as u64).wrapping_add(self.seq)
                );
                Write::Create(Event {
                    metadata: ObjectMeta {
                        namespace: Some(ns),
                        name: Some(name),
                        ..Default::default()
                    },
                    action: Some(p.action),
                    reason: Some(p.reason),
                    note: Some(p.note),
                    type_: Some(p.type_.into()),
                    event_time: Some(MicroTime(p.at)),
                    regarding: Some(p.regarding),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                })
            }
        };
        let (Write::Create(e) | Write::Series(e)) = &write;
        self.cache.insert(key, e.clone());
        write
    }
}

/// Whether a repeat at `at` still joins `e`'s series.
fn live(e: &Event, at: Timestamp) -> bool {
    let last = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0));
    last.is_some_and(|t| t + SERIES_TTL > at)
}

/// Writes one event; a failure is logged, never fatal.
async fn send(client: kube::Client, write: Write) {
    let (Write::Create(e) | Write::Series(e)) = &write;
    let ns = e.metadata.namespace.clone().unwrap_or_default();
    let name = e.metadata.name.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client, &ns);
    let series = |e: &Event| serde_json::json!({"series": e.series});
    let result = match &write {
        Write::Create(e) => api.create(&PostParams::default(), e).await.map(drop),
        Write::Series(e) => {
            let patched = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series(e)))
                .await;
            match patched {
                // The first of the series is not written yet (or was lost): write it whole.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    match api.create(&PostParams::default(), e).await {
                        // It landed meanwhile: count on it.
                        Err(kube::Error::Api(s)) if s.code == 409 => api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&series(e)))
                            .await
                            .map(drop),
                        other => other.map(drop),
                    }
                }
                other => other.map(drop),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, event = %name, "recording an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        // The worker's client is not used by `prepare`.
        let unused = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "no API in a unit test",
            ))
        });
        Worker {
            client: kube::Client::new(unused, "default"),
            controller: "test-controller".into(),
            instance: "test-controller".into(),
            cache: HashMap::new(),
            seq: 0,
        }
    }

    fn pending(uid: &str, note: &str, at: Timestamp) -> Pending {
        Pending {
            regarding: ObjectReference {
                kind: Some("Pod".into()),
                name: Some(format!("pod-{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            type_: "Normal",
            reason: "Scheduled".into(),
            action: "Binding".into(),
            note: note.into(),
            at,
        }
    }

    #[tokio::test]
    async fn repeats_become_a_series_and_new_messages_new_events() {
        let mut w = worker();
        let t0 = Timestamp::now();
        let Write::Create(first) = w.prepare(pending("a", "one", t0)) else {
            panic!("the first event is created");
        };
        assert_eq!(first.metadata.namespace.as_deref(), Some("ns"));
        assert!(first
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("pod-a."));
        let Write::Series(second) =
            w.prepare(pending("a", "one", t0 + SignedDuration::from_secs(1)))
        else {
            panic!("an identical event joins the series");
        };
        assert_eq!(second.metadata.name, first.metadata.name);
        assert_eq!(second.series.as_ref().map(|s| s.count), Some(2));
        let Write::Series(third) =
            w.prepare(pending("a", "one", t0 + SignedDuration::from_secs(2)))
        else {
            panic!("and again");
        };
        assert_eq!(third.series.as_ref().map(|s| s.count), Some(3));
        assert!(matches!(
            w.prepare(pending("a", "two", t0)),
            Write::Create(_)
        ));
        // Past the series' lifetime, a repeat starts a new Event.
        let late = t0 + SERIES_TTL + SignedDuration::from_secs(10);
        let Write::Create(renewed) = w.prepare(pending("a", "one", late)) else {
            panic!("an expired series is not continued");
        };
        assert_ne!(renewed.metadata.name, first.metadata.name);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let mut w = worker();
        let t0 = Timestamp::now();
        for i in 0..CACHE_SIZE + 10 {
            w.prepare(pending(&i.to_string(), "x", t0));
            assert!(w.cache.len() <= CACHE_SIZE);
        }
    }
}
