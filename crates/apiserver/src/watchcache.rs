//! The watch cache: one store watch per resource, fanned out to every API watcher of it.
//!
//! A [`Feed`] watches one key prefix (`/registry/configmaps/`) from the store revision at which
//! it started and keeps the most recent events. An API watch from resourceVersion `R` is served
//! from a feed when the feed's history reaches back to `R` (everything after `R` is in it):
//! the history after `R` is replayed, then the live events follow, with neither gaps nor
//! duplicates because both are taken under one lock. Older starting points fall back to a
//! watch of their own on the store (which answers 410 Gone when `R` is compacted).
//!
//! Each event is decoded and, for plain JSON watchers, serialised once, not once per watcher.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rudder_store::{Event, KeyRange, Revision, Store, StoreError, WatchMessage, WatchRequest};
use tokio::sync::broadcast;

/// Events kept per feed for watchers that start a little behind.
const HISTORY: usize = 1024;
/// How often a feed asks the store for a progress notification (bookmarks for watchers that
/// asked for them).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Events buffered per watcher; a watcher further behind is ended (its client re-watches from
/// the last resourceVersion it saw, as after any closed watch).
const BUFFER: usize = 4096;

/// What a feed hands its watchers.
#[derive(Clone, Debug)]
pub enum FeedItem {
    Event(Arc<CachedEvent>),
    /// Every event up to this revision has been sent.
    Progress(Revision),
}

/// A store event with its plain JSON watch line, made on first use.
#[derive(Debug)]
pub struct CachedEvent {
    pub event: Event,
    line: OnceLock<Bytes>,
}

impl CachedEvent {
    pub fn revision(&self) -> Revision {
        self.event.kv.mod_revision
    }

    /// The event's line for a watcher without selectors of the stored version, made once.
    pub fn line(&self, make: impl FnOnce(&Event) -> Bytes) -> Bytes {
        self.line.get_or_init(|| make(&self.event)).clone()
    }
}

struct State {
    /// The feed has every event with a revision above `since`, the recent ones in `history`.
    since: Revision,
    history: VecDeque<Arc<CachedEvent>>,
    tx: broadcast::Sender<FeedItem>,
    /// The store watch ended (an error): new watchers go elsewhere.
    closed: bool,
}

/// One store watch over a key prefix, shared.
pub struct Feed {
    state: Mutex<State>,
}

/// What a watcher from a revision gets: the history after it, then the live items.
pub struct Subscription {
    pub replay: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<FeedItem>,
}

impl Feed {
    /// Subscribes from `revision` (events after it), if the feed reaches back that far.
    pub fn subscribe(&self, revision: Revision) -> Option<Subscription> {
        let st = self.state.lock().ok()?;
        if st.closed || revision < st.since {
            return None;
        }
        let replay = st
            .history
            .iter()
            .filter(|e| e.revision() > revision)
            .cloned()
            .collect();
        Some(Subscription {
            replay,
            live: st.tx.subscribe(),
        })
    }

    fn publish(&self, events: Vec<Event>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for event in events {
            let e = Arc::new(CachedEvent {
                event,
                line: OnceLock::new(),
            });
            if st.history.len() == HISTORY {
                if let Some(old) = st.history.pop_front() {
                    st.since = old.revision();
                }
            }
            st.history.push_back(e.clone());
            // No receivers is fine: the history keeps it.
            let _ = st.tx.send(FeedItem::Event(e));
        }
    }

    fn progress(&self, revision: Revision) {
        if let Ok(st) = self.state.lock() {
            let _ = st.tx.send(FeedItem::Progress(revision));
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            st.history.clear();
        }
    }
}

/// The feeds, by key prefix, started on first use.
pub struct WatchCache {
    store: Arc<dyn Store>,
    feeds: tokio::sync::Mutex<HashMap<Bytes, Arc<Feed>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> WatchCache {
        WatchCache {
            store,
            feeds: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The feed of a key prefix, started now if there is none (or the last one ended).
    pub async fn feed(&self, prefix: &Bytes) -> Result<Arc<Feed>, StoreError> {
        let mut feeds = self.feeds.lock().await;
        if let Some(f) = feeds.get(prefix) {
            if !f.state.lock().map(|s| s.closed).unwrap_or(true) {
                return Ok(f.clone());
            }
        }
        let since = self.store.current_revision().await?;
        let mut req = WatchRequest::new(KeyRange::prefix(prefix.clone()), since + 1);
        req.progress_notify = true;
        let mut watch = self.store.watch(req).await?;
        let (tx, _) = broadcast::channel(BUFFER);
        let feed = Arc::new(Feed {
            state: Mutex::new(State {
                since,
                history: VecDeque::new(),
                tx,
                closed: false,
            }),
        });
        let f = feed.clone();
        let name = String::from_utf8_lossy(prefix).into_owned();
        tokio::spawn(async move {
            use futures::StreamExt;
            // Asked for, not left to the backend's idle interval (etcd's is minutes): the
            // answers become watchers' bookmarks.
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                let msg = tokio::select! {
                    msg = watch.stream.next() => msg,
                    _ = tick.tick() => {
                        watch.request_progress();
                        continue;
                    }
                };
                match msg {
                    Some(Ok(WatchMessage::Events { events, .. })) => f.publish(events),
                    Some(Ok(WatchMessage::Progress { revision })) => f.progress(revision),
                    Some(Err(e)) => {
                        tracing::warn!(prefix = %name, error = %e, "watch cache feed ended");
                        break;
                    }
                    None => break,
                }
            }
            // Dropping the sender ends every live watcher; they re-watch.
            f.close();
        });
        feeds.insert(prefix.clone(), feed.clone());
        Ok(feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_store::{EventKind, KeyValue};

    fn ev(rev: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Bytes::from(format!("/k/{rev}")),
                value: Bytes::from_static(b"{}"),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
            prev: None,
        }
    }

    fn feed(since: Revision) -> Feed {
        Feed {
            state: Mutex::new(State {
                since,
                history: VecDeque::new(),
                tx: broadcast::channel(BUFFER).0,
                closed: false,
            }),
        }
    }

    #[tokio::test]
    async fn replay_then_live_without_gaps_or_duplicates() {
        let f = feed(10);
        f.publish(vec![ev(11), ev(12), ev(13)]);
        assert!(f.subscribe(9).is_none(), "before the feed started");
        let mut sub = f.subscribe(11).unwrap();
        let replayed: Vec<_> = sub.replay.iter().map(|e| e.revision()).collect();
        assert_eq!(replayed, [12, 13]);
        f.publish(vec![ev(14)]);
        match sub.live.recv().await.unwrap() {
            FeedItem::Event(e) => assert_eq!(e.revision(), 14),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn history_is_bounded_and_moves_its_start() {
        let f = feed(0);
        f.publish((1..=(HISTORY as i64 + 10)).map(ev).collect());
        assert!(f.subscribe(5).is_none());
        let sub = f.subscribe(10).unwrap();
        assert_eq!(sub.replay.len(), HISTORY);
        f.close();
        assert!(f.subscribe(10).is_none());
    }

    #[test]
    fn lines_are_made_once() {
        let e = CachedEvent {
            event: ev(1),
            line: OnceLock::new(),
        };
        let mut calls = 0;
        for _ in 0..3 {
            e.line(|_| {
                calls += 1;
                Bytes::from_static(b"x")
            });
        }
        assert_eq!(calls, 1);
    }
}
