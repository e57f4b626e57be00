//! Events with upstream's aggregation: repeats of the same event (same object, type, reason
//! and message) become one events.k8s.io Event with a series; a different message is a new
//! Event. (kube-runtime's `Recorder` leaves the message out of its key, so "Created pod: a"
//! then "Created pod: b" would show as the first one twice.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::Resource;
use tokio::sync::Mutex;

/// How long a repeat joins the series of the first (as kube-runtime's and client-go's caches).
const SERIES_TTL: SignedDuration = SignedDuration::from_secs(6 * 60);

type Key = (String, String, String, String, String);

/// One controller's event recorder.
pub struct Events {
    client: kube::Client,
    controller: String,
    cache: Mutex<HashMap<Key, Event>>,
    seq: AtomicU64,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str) -> Events {
        Events {
            client,
            controller: controller.into(),
            cache: Mutex::default(),
            seq: AtomicU64::new(0),
        }
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
        if let Err(e) = self.publish(obj, type_, reason, action, note).await {
            tracing::debug!(error = %e, reason, "recording an event");
        }
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let regarding = obj.object_ref(&());
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key: Key = (
            regarding.uid.clone().unwrap_or_default(),
            type_.into(),
            reason.into(),
            action.into(),
            note.clone(),
        );
        let now = Timestamp::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let mut cache = self.cache.lock().await;
        cache.retain(|_, e| {
            let last = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0));
            last.is_some_and(|t| t + SERIES_TTL > now)
        });
        let event = match cache.get(&key) {
            Some(e) => {
                let mut e = e.clone();
                let count = e.series.as_ref().map_or(2, |s| s.count + 1);
                e.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                });
                let patch = serde_json::json!({"series": e.series});
                let name = e.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                e
            }
            None => {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                let e = Event {
                    metadata: ObjectMeta {
                        namespace: Some(ns.clone()),
                        name: Some(format!(
                            "{}.{:x}",
                            regarding.name.as_deref().unwrap_or(&self.controller),
                            now.as_nanosecond() as u64 + seq
                        )),
                        ..Default::default()
                    },
                    action: Some(action.into()),
                    reason: Some(reason.into()),
                    note: Some(note),
                    type_: Some(type_.into()),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.controller.clone()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &e).await?
            }
        };
        cache.insert(key, event);
        Ok(())
    }
}
