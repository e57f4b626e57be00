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
//!
//! A feed may also be indexed on one field (pods on `spec.nodeName`): a watcher whose field
//! selector requires that field to equal a value is then handed only the events of objects
//! that have (or had) that value, so 5,000 node agents each watching their own pods cost one
//! delivery per event rather than 5,000 wake-ups and decodes. Every feed is indexed on
//! `metadata.name` (read from the key, nothing decoded): 5,000 agents each watching their own
//! Node (`fieldSelector=metadata.name=NAME`) hear only of their own.
//!
//! An indexed feed also keeps the current version of every object under its prefix, by index
//! value (the values are the store's own buffers, shared, not copies), so a list of one node's
//! pods is read from there rather than by a scan of every pod, as upstream's watch cache serves
//! it: at a revision the feed has caught up with, after a progress request to the store when
//! the list must be as fresh as the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rudder_store::{
    Event, EventKind, KeyRange, KeyValue, RangeRequest, Revision, Store, StoreError, WatchMessage,
    WatchRequest,
};
use tokio::sync::{broadcast, watch, Notify};

/// Events kept per feed for watchers that start a little behind: those of the last
/// [`HISTORY_FRESH`], at least [`HISTORY_MIN`] and at most [`HISTORY_MAX`] of them (upstream's
/// watch cache sizes itself the same way, to keep 75 s of events up to 100 × 1,024). A busy
/// prefix (thousands of nodes registering at once) would otherwise push a watcher's list
/// revision out of the window between its list and its watch, and every such watcher would
/// be served by a store watch of its own.
const HISTORY_FRESH: std::time::Duration = std::time::Duration::from_secs(75);
const HISTORY_MIN: usize = 1024;
const HISTORY_MAX: usize = 100 * 1024;
/// How often a feed asks the store for a progress notification (bookmarks for watchers that
/// asked for them).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Events buffered per watcher at most; a watcher further behind is ended (its client
/// re-watches from the last resourceVersion it saw, as after any closed watch).
const BUFFER: usize = 4096;
/// Events buffered per watcher at first: a feed's buffer is allocated whole, and most feeds
/// (one per resource watched: the garbage collector watches them all) are quiet. It grows
/// when it fills ([`Live`]).
const FIRST_BUFFER: usize = 64;
/// The same for the watchers of one index value (one node's pods): there are thousands of
/// these channels, and each holds only its own objects' events.
const INDEXED_BUFFER: usize = 256;
/// How long a list waits for a feed to catch up with the store before it reads the store
/// instead (upstream's watch cache waits as long).
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// The value an object (a stored JSON value) has in a feed's index, e.g. a pod's node name
/// (`None` when the field is unset; an error when the value is not such an object).
pub type IndexFn = fn(&[u8]) -> Result<Option<String>, serde_json::Error>;

/// A feed's index: the field a selector names and how to read it from a stored value.
#[derive(Clone, Copy)]
pub struct Index {
    pub field: &'static str,
    pub value: IndexFn,
}

impl Index {
    /// Where a stored value is filed: under its value (`""` when the field is unset, which is
    /// what a selector `field=` asks for), or `None` when the value cannot be read.
    fn place(&self, value: &[u8]) -> Option<String> {
        (self.value)(value).ok().map(Option::unwrap_or_default)
    }
}

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
    /// The index values of the object before and after the event (indexed feeds only).
    keys: Vec<String>,
    /// When the feed received it.
    at: std::time::Instant,
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

/// The live channel of a feed's watchers. It starts at [`FIRST_BUFFER`] and, each time its
/// slowest watcher is half of it behind, the next watchers get one four times bigger, up to
/// [`BUFFER`]. Watchers keep the channel they subscribed to, which gets every item until its
/// last watcher goes; a watcher that falls behind it is ended as before.
struct Live {
    tx: broadcast::Sender<FeedItem>,
    capacity: usize,
    older: Vec<broadcast::Sender<FeedItem>>,
}

impl Live {
    fn new() -> Live {
        Live {
            tx: broadcast::channel(FIRST_BUFFER).0,
            capacity: FIRST_BUFFER,
            older: Vec::new(),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.tx.subscribe()
    }

    /// Sends to every watcher; no watchers is fine.
    fn send(&mut self, item: FeedItem) {
        if self.capacity < BUFFER && self.tx.len() >= self.capacity / 2 {
            self.capacity = (self.capacity * 4).min(BUFFER);
            let bigger = broadcast::channel(self.capacity).0;
            self.older.push(std::mem::replace(&mut self.tx, bigger));
        }
        self.older.retain(|tx| tx.receiver_count() > 0);
        for tx in &self.older {
            let _ = tx.send(item.clone());
        }
        let _ = self.tx.send(item);
    }
}

struct State {
    /// The feed has every event with a revision above `since`, the recent ones in `history`.
    since: Revision,
    /// `since` when the feed started: older revisions were never in it.
    started: Revision,
    history: VecDeque<Arc<CachedEvent>>,
    live: Live,
    /// The watchers of one index value, by value.
    by_value: HashMap<String, broadcast::Sender<FeedItem>>,
    /// The watchers of one object, by name.
    by_name: HashMap<String, broadcast::Sender<FeedItem>>,
    /// The store watch ended (an error): new watchers go elsewhere.
    closed: bool,
    /// Every event up to this revision has been published.
    seen: Revision,
    /// Indexed feeds: the current version of each object, by index value, in key order; and
    /// of those whose value could not be read.
    objects: HashMap<String, BTreeMap<Bytes, KeyValue>>,
    unread: BTreeMap<Bytes, KeyValue>,
}

impl State {
    /// Drops the oldest events beyond [`HISTORY_MAX`], and those older than [`HISTORY_FRESH`]
    /// beyond [`HISTORY_MIN`].
    fn trim(&mut self) {
        while let Some(old) = self.history.front() {
            let stale = self.history.len() > HISTORY_MIN && old.at.elapsed() > HISTORY_FRESH;
            if !stale && self.history.len() <= HISTORY_MAX {
                break;
            }
            self.since = old.revision();
            self.history.pop_front();
        }
    }

    /// Where in `history` the events after `revision` begin (it is in revision order).
    fn after(&self, revision: Revision) -> usize {
        self.history.partition_point(|e| e.revision() <= revision)
    }

    fn new(since: Revision) -> State {
        State {
            since,
            started: since,
            history: VecDeque::new(),
            live: Live::new(),
            by_value: HashMap::new(),
            by_name: HashMap::new(),
            closed: false,
            seen: since,
            objects: HashMap::new(),
            unread: BTreeMap::new(),
        }
    }

    /// Files the current version of an object under `place` (see [`Index::place`]).
    fn file(&mut self, place: Option<String>, kv: KeyValue) {
        let objects = match place {
            Some(v) => self.objects.entry(v).or_default(),
            None => &mut self.unread,
        };
        objects.insert(kv.key.clone(), kv);
    }

    /// Takes an object out from under `place`; a value with no objects left goes too.
    fn unfile(&mut self, place: Option<String>, key: &[u8]) {
        match place {
            Some(v) => {
                if let Some(objects) = self.objects.get_mut(&v) {
                    objects.remove(key);
                    if objects.is_empty() {
                        self.objects.remove(&v);
                    }
                }
            }
            None => {
                self.unread.remove(key);
            }
        }
    }
}

/// One store watch over a key prefix, shared.
pub struct Feed {
    state: Mutex<State>,
    index: Option<Index>,
    /// `seen`, for lists that wait for the feed to catch up.
    caught_up: watch::Sender<Revision>,
    /// Asks the store watch for a progress notification.
    want_progress: Notify,
}

/// What a watcher from a revision gets: the history after it, then the live items.
pub struct Subscription {
    pub replay: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<FeedItem>,
}

impl Feed {
    /// Whether the feed had the events after `revision` and has let them go: a watch from it
    /// is `410 Expired` ("too old resource version"), as from upstream's watch cache, and the
    /// client lists again, rather than a store watch of its own that decodes every event.
    pub fn let_go(&self, revision: Revision) -> bool {
        self.state
            .lock()
            .is_ok_and(|st| !st.closed && revision >= st.started && revision < st.since)
    }

    /// Subscribes from `revision` (events after it), if the feed reaches back that far.
    pub fn subscribe(&self, revision: Revision) -> Option<Subscription> {
        let st = self.state.lock().ok()?;
        if st.closed || revision < st.since {
            return None;
        }
        let replay = st.history.range(st.after(revision)..).cloned().collect();
        Some(Subscription {
            replay,
            live: st.live.subscribe(),
        })
    }

    /// Subscribes from `revision` to the events of objects whose indexed field is (or was)
    /// `value`, or to one object's events when `field` is `metadata.name`; `None` when the
    /// feed has no index on `field` or does not reach back that far.
    pub fn subscribe_indexed(
        &self,
        revision: Revision,
        field: &str,
        value: &str,
    ) -> Option<Subscription> {
        let by_name = field == "metadata.name";
        if !by_name && self.index.is_none_or(|i| i.field != field) {
            return None;
        }
        let mut st = self.state.lock().ok()?;
        if st.closed || revision < st.since {
            return None;
        }
        let replay = st
            .history
            .range(st.after(revision)..)
            .filter(|e| match by_name {
                true => name_of(&e.event.kv.key) == value.as_bytes(),
                false => e.keys.iter().any(|k| k == value),
            })
            .cloned()
            .collect();
        let watchers = match by_name {
            true => &mut st.by_name,
            false => &mut st.by_value,
        };
        let live = watchers
            .entry(value.to_string())
            .or_insert_with(|| broadcast::channel(INDEXED_BUFFER).0)
            .subscribe();
        Some(Subscription { replay, live })
    }

    fn new(since: Revision, index: Option<Index>) -> Feed {
        Feed {
            state: Mutex::new(State::new(since)),
            index,
            caught_up: watch::Sender::new(since),
            want_progress: Notify::new(),
        }
    }

    /// The current version of each object under `prefix` whose indexed field is `value`, in
    /// key order (with those whose field could not be read: the caller's selectors decide),
    /// and the revision they are as of, at least `min`: when the feed is behind it, the store
    /// is asked for a progress report and the feed waits for it. `None` when the feed is not
    /// indexed, has ended, or does not catch up in time.
    pub async fn indexed_objects(
        &self,
        value: &str,
        prefix: &[u8],
        min: Revision,
    ) -> Option<(Revision, Vec<KeyValue>)> {
        self.index?;
        let mut caught_up = self.caught_up.subscribe();
        if *caught_up.borrow_and_update() < min {
            self.want_progress.notify_one();
            let wait = caught_up.wait_for(|seen| *seen >= min);
            tokio::time::timeout(CATCH_UP, wait).await.ok()?.ok()?;
        }
        let st = self.state.lock().ok()?;
        if st.closed {
            return None;
        }
        let under = |objects: &BTreeMap<Bytes, KeyValue>| -> Vec<KeyValue> {
            objects
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, kv)| kv.clone())
                .collect()
        };
        let mut kvs = st.objects.get(value).map(under).unwrap_or_default();
        if !st.unread.is_empty() {
            kvs.extend(under(&st.unread));
            kvs.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Some((st.seen, kvs))
    }

    fn publish(&self, events: Vec<Event>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for event in events {
            let keys = match self.index {
                Some(index) => {
                    let was = event.prev.as_ref().map(|kv| index.place(&kv.value));
                    let now = (event.kind == EventKind::Put).then(|| index.place(&event.kv.value));
                    if let Some(was) = was.clone() {
                        st.unfile(was, &event.kv.key);
                    }
                    if let Some(now) = now.clone() {
                        st.file(now, event.kv.clone());
                    }
                    let mut keys: Vec<String> =
                        [now, was].into_iter().flatten().flatten().collect();
                    keys.dedup();
                    keys
                }
                None => Vec::new(),
            };
            st.seen = event.kv.mod_revision;
            let e = Arc::new(CachedEvent {
                event,
                line: OnceLock::new(),
                keys,
                at: std::time::Instant::now(),
            });
            for k in &e.keys {
                send_to(&mut st.by_value, k, &e);
            }
            if !st.by_name.is_empty() {
                if let Ok(name) = std::str::from_utf8(name_of(&e.event.kv.key)) {
                    send_to(&mut st.by_name, name, &e);
                }
            }
            st.history.push_back(e.clone());
            st.trim();
            // No receivers is fine: the history keeps it.
            st.live.send(FeedItem::Event(e));
        }
        self.caught_up.send_replace(st.seen);
    }

    fn progress(&self, revision: Revision) {
        if let Ok(mut st) = self.state.lock() {
            st.seen = st.seen.max(revision);
            self.caught_up.send_replace(st.seen);
            // A feed that has gone quiet lets its stale events go too.
            st.trim();
            st.live.send(FeedItem::Progress(revision));
            // Values nobody watches any more are dropped here too.
            let st = &mut *st;
            for watchers in [&mut st.by_value, &mut st.by_name] {
                watchers.retain(|_, tx| tx.send(FeedItem::Progress(revision)).is_ok());
            }
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            st.history.clear();
            st.by_value.clear();
            st.by_name.clear();
            st.objects.clear();
            st.unread.clear();
        }
        // Lists waiting for it to catch up give up on it.
        self.caught_up.send_replace(Revision::MAX);
    }
}

/// The last segment of a key: the object's name.
pub(crate) fn name_of(key: &[u8]) -> &[u8] {
    key.rsplit(|b| *b == b'/').next().unwrap_or(key)
}

/// Hands an event to the watchers of `key` in `watchers`; forgets them when none is left.
fn send_to(
    watchers: &mut HashMap<String, broadcast::Sender<FeedItem>>,
    key: &str,
    e: &Arc<CachedEvent>,
) {
    let gone = watchers
        .get(key)
        .is_some_and(|tx| tx.send(FeedItem::Event(e.clone())).is_err());
    if gone {
        watchers.remove(key);
    }
}

/// The feeds, by key prefix, started on first use.
pub struct WatchCache {
    store: Arc<dyn Store>,
    feeds: tokio::sync::Mutex<HashMap<Bytes, Arc<Feed>>>,
    indexes: HashMap<Bytes, Index>,
}

impl WatchCache {
    /// The index the feed of `prefix` has, if any.
    pub fn index(&self, prefix: &[u8]) -> Option<Index> {
        self.indexes.get(prefix).copied()
    }

    /// The cache; the feeds of the prefixes in `indexes` are indexed.
    pub fn new(store: Arc<dyn Store>, indexes: HashMap<Bytes, Index>) -> WatchCache {
        WatchCache {
            store,
            feeds: tokio::sync::Mutex::new(HashMap::new()),
            indexes,
        }
    }

    /// The feed of a key prefix, started if there is none (or the last one ended): from
    /// `from`, the revision the watch that starts it resumes at, when the store still has
    /// it; otherwise now. A feed started at the store's current revision could not serve
    /// the client that listed a moment before an unrelated write, nor anyone who listed with
    /// it: each would be given a store watch of its own (decoding every event) until it ends.
    pub async fn feed(
        &self,
        prefix: &Bytes,
        from: Option<Revision>,
    ) -> Result<Arc<Feed>, StoreError> {
        let mut feeds = self.feeds.lock().await;
        if let Some(f) = feeds.get(prefix) {
            if !f.state.lock().map(|s| s.closed).unwrap_or(true) {
                return Ok(f.clone());
            }
        }
        let current = self.store.current_revision().await?;
        let mut since = current;
        if let Some(from) = from.filter(|f| (1..current).contains(f)) {
            // Read at `from` to learn whether it was compacted away.
            let probe = RangeRequest {
                range: KeyRange::prefix(prefix.clone()),
                revision: from,
                limit: 1,
                count_only: false,
            };
            match self.store.range(probe).await {
                Ok(_) => since = from,
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut req = WatchRequest::new(KeyRange::prefix(prefix.clone()), since + 1);
        req.progress_notify = true;
        let mut watch = self.store.watch(req).await?;
        let feed = Feed::new(since, self.index(prefix));
        if let Some(index) = feed.index {
            // The objects as of `since`; the watch brings every change after it.
            let all = self
                .store
                .range(RangeRequest {
                    range: KeyRange::prefix(prefix.clone()),
                    revision: since,
                    limit: 0,
                    count_only: false,
                })
                .await?;
            let mut st = feed.state.lock().map_err(|_| StoreError::Closed)?;
            for kv in all.kvs {
                st.file(index.place(&kv.value), kv);
            }
        }
        let feed = Arc::new(feed);
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
                    _ = f.want_progress.notified() => {
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

    #[test]
    fn the_live_channel_grows_when_a_watcher_falls_behind_and_loses_nothing() {
        let mut live = Live::new();
        let progress = |n: usize| FeedItem::Progress(n as Revision);
        let got = |rx: &mut broadcast::Receiver<FeedItem>| {
            std::iter::from_fn(|| match rx.try_recv() {
                Ok(FeedItem::Progress(r)) => Some(r as usize),
                _ => None,
            })
            .collect::<Vec<_>>()
        };
        // Quiet: no watcher, nothing queued, no growth.
        for i in 0..FIRST_BUFFER * 2 {
            live.send(progress(i));
        }
        assert_eq!(live.capacity, FIRST_BUFFER);
        let mut slow = live.subscribe();
        let half = FIRST_BUFFER / 2;
        for i in 0..=half {
            live.send(progress(i));
        }
        // The send after half a buffer queued made a bigger channel for the next watchers.
        assert_eq!(live.capacity, FIRST_BUFFER * 4);
        let mut next = live.subscribe();
        live.send(progress(1000));
        assert_eq!(got(&mut next), [1000]);
        // The watcher from before still has every item, in order.
        let want: Vec<usize> = (0..=half).chain([1000]).collect();
        assert_eq!(got(&mut slow), want);
        // Once its last watcher goes, the small channel is dropped.
        drop(slow);
        live.send(progress(1001));
        assert!(live.older.is_empty());
        assert_eq!(got(&mut next), [1001]);
        // Watchers that never read make it grow to BUFFER and no further.
        let mut stuck = vec![next];
        for i in 0..BUFFER * 4 {
            if live.tx.receiver_count() == 0 {
                stuck.push(live.subscribe());
            }
            live.send(progress(i));
        }
        assert_eq!(live.capacity, BUFFER);
        assert_eq!(live.older.len(), 2, "the channels of 256 and 1,024");
    }

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
        Feed::new(since, None)
    }

    fn on_node(rev: Revision, node: Option<&str>, before: Option<&str>) -> Event {
        let obj = |n: Option<&str>| match n {
            Some(n) => format!(r#"{{"spec":{{"nodeName":"{n}"}}}}"#),
            None => r#"{"spec":{}}"#.to_string(),
        };
        let kv = |n: Option<&str>| KeyValue {
            key: Bytes::from_static(b"/registry/pods/default/p"),
            value: Bytes::from(obj(n)),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
        };
        Event {
            kind: EventKind::Put,
            kv: kv(node),
            prev: (rev > 1).then(|| kv(before)),
        }
    }

    fn node_name(v: &[u8]) -> Result<Option<String>, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_slice(v)?;
        Ok(v["spec"]["nodeName"].as_str().map(str::to_string))
    }

    #[tokio::test]
    async fn indexed_watchers_get_only_their_values_events() {
        let mut f = feed(0);
        f.index = Some(Index {
            field: "spec.nodeName",
            value: node_name,
        });
        assert!(f.subscribe_indexed(0, "status.phase", "a").is_none());
        // Created unbound, bound to a, moved to b (leaves a: a's watcher must hear it).
        f.publish(vec![on_node(1, None, None), on_node(2, Some("a"), None)]);
        let mut a = f.subscribe_indexed(0, "spec.nodeName", "a").unwrap();
        let mut b = f.subscribe_indexed(0, "spec.nodeName", "b").unwrap();
        let revs = |s: &Subscription| s.replay.iter().map(|e| e.revision()).collect::<Vec<_>>();
        assert_eq!(revs(&a), [2]);
        assert!(revs(&b).is_empty());
        f.publish(vec![on_node(3, Some("b"), Some("a"))]);
        for sub in [&mut a, &mut b] {
            match sub.live.recv().await.unwrap() {
                FeedItem::Event(e) => assert_eq!(e.revision(), 3),
                other => panic!("{other:?}"),
            }
        }
        f.publish(vec![on_node(4, Some("b"), Some("b"))]);
        match b.live.recv().await.unwrap() {
            FeedItem::Event(e) => assert_eq!(e.revision(), 4),
            other => panic!("{other:?}"),
        }
        assert!(a.live.try_recv().is_err(), "a heard of b's pod");
        // A value nobody watches any more is forgotten.
        drop(a);
        f.progress(5);
        assert!(!f.state.lock().unwrap().by_value.contains_key("a"));
    }

    /// A pod `name` put at `rev` on `node` (unbound for `None`), or deleted when `node` is
    /// `Some("-")`; `before` is where it was (`None`: it is new).
    fn pod(rev: Revision, name: &str, node: Option<&str>, before: Option<Option<&str>>) -> Event {
        let kv = |n: Option<&str>| KeyValue {
            key: Bytes::from(format!("/registry/pods/default/{name}")),
            value: match n {
                Some("-") => Bytes::new(),
                Some("!") => Bytes::from_static(b"not json"),
                Some(n) => Bytes::from(format!(r#"{{"spec":{{"nodeName":"{n}"}}}}"#)),
                None => Bytes::from_static(br#"{"spec":{}}"#),
            },
            create_revision: 1,
            mod_revision: rev,
            version: 1,
        };
        Event {
            kind: match node {
                Some("-") => EventKind::Delete,
                _ => EventKind::Put,
            },
            kv: kv(node),
            prev: before.map(kv),
        }
    }

    #[tokio::test]
    async fn indexed_feeds_keep_each_values_objects() {
        let f = Arc::new(Feed::new(
            0,
            Some(Index {
                field: "spec.nodeName",
                value: node_name,
            }),
        ));
        let names = |value: &str, prefix: &str| {
            let f = f.clone();
            let (value, prefix) = (value.to_string(), prefix.to_string());
            async move {
                let (rev, kvs) = f
                    .indexed_objects(&value, prefix.as_bytes(), 0)
                    .await
                    .unwrap();
                let names: Vec<String> = kvs
                    .iter()
                    .map(|kv| String::from_utf8_lossy(name_of(&kv.key)).into_owned())
                    .collect();
                (rev, names)
            }
        };
        // An unbound watcher (`spec.nodeName=`) hears of unbound pods.
        let mut unbound = f.subscribe_indexed(0, "spec.nodeName", "").unwrap();
        f.publish(vec![
            pod(1, "p", None, None),
            pod(2, "q", None, None),
            pod(3, "p", Some("a"), Some(None)),
            pod(4, "r", Some("a"), None),
            pod(5, "q", Some("b"), Some(None)),
            pod(6, "r", Some("-"), Some(Some("a"))),
            pod(7, "bad", Some("!"), None),
        ]);
        for want in [1, 2, 3, 5] {
            match unbound.live.recv().await.unwrap() {
                FeedItem::Event(e) => assert_eq!(e.revision(), want),
                other => panic!("{other:?}"),
            }
        }
        let p = "/registry/pods/";
        // What cannot be read comes with every value, for the selectors to decide.
        assert_eq!(names("a", p).await, (7, vec!["bad".into(), "p".into()]));
        assert_eq!(names("b", p).await, (7, vec!["bad".into(), "q".into()]));
        assert_eq!(names("", "/registry/pods/other/").await, (7, vec![]));
        f.publish(vec![pod(8, "bad", Some("-"), Some(Some("!")))]);
        assert_eq!(names("", p).await, (8, vec![]));
        assert_eq!(names("a", p).await, (8, vec!["p".into()]));
        let st = f.state.lock().unwrap();
        let values: Vec<&String> = st.objects.keys().collect();
        assert_eq!(
            values.len(),
            2,
            "a value with no objects left is dropped: {values:?}"
        );
    }

    #[tokio::test]
    async fn indexed_lists_wait_for_the_feed_to_catch_up() {
        let f = Arc::new(Feed::new(
            10,
            Some(Index {
                field: "spec.nodeName",
                value: node_name,
            }),
        ));
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.indexed_objects("a", b"/registry/pods/", 12).await }
        });
        // The list asks the feed for progress; the store's answer lets it go on.
        f.want_progress.notified().await;
        f.publish(vec![pod(11, "p", Some("a"), None)]);
        f.progress(12);
        let (rev, kvs) = waiting.await.unwrap().unwrap();
        assert_eq!((rev, kvs.len()), (12, 1));
        // A feed that ends sends its waiting lists to the store.
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.indexed_objects("a", b"/registry/pods/", 20).await }
        });
        f.want_progress.notified().await;
        f.close();
        assert!(waiting.await.unwrap().is_none());
        assert!(
            feed(0).indexed_objects("a", b"/", 0).await.is_none(),
            "not indexed"
        );
    }

    #[tokio::test]
    async fn watchers_of_one_name_get_only_its_events() {
        let f = feed(0);
        let named = |rev: Revision, key: &'static str| {
            let mut e = ev(rev);
            e.kv.key = Bytes::from_static(key.as_bytes());
            e
        };
        f.publish(vec![
            named(1, "/registry/nodes/a"),
            named(2, "/registry/nodes/ab"),
        ]);
        let mut a = f.subscribe_indexed(0, "metadata.name", "a").unwrap();
        let revs: Vec<_> = a.replay.iter().map(|e| e.revision()).collect();
        assert_eq!(revs, [1]);
        f.publish(vec![
            named(3, "/registry/nodes/b"),
            named(4, "/registry/nodes/a"),
        ]);
        match a.live.recv().await.unwrap() {
            FeedItem::Event(e) => assert_eq!(e.revision(), 4),
            other => panic!("{other:?}"),
        }
        assert!(a.live.try_recv().is_err(), "a heard of another node");
        drop(a);
        f.progress(5);
        assert!(f.state.lock().unwrap().by_name.is_empty());
    }

    #[tokio::test]
    async fn replay_then_live_without_gaps_or_duplicates() {
        let f = feed(10);
        f.publish(vec![ev(11), ev(12), ev(13)]);
        assert!(f.subscribe(9).is_none(), "before the feed started");
        assert!(!f.let_go(9), "never had them: the store serves that watch");
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
        f.publish((1..=(HISTORY_MAX as i64 + 10)).map(ev).collect());
        assert!(f.subscribe(5).is_none());
        assert!(f.let_go(5), "had them and let them go: 410");
        let sub = f.subscribe(10).unwrap();
        assert_eq!(sub.replay.len(), HISTORY_MAX);
        assert!(!f.let_go(10));
        f.close();
        assert!(f.subscribe(10).is_none());
        assert!(!f.let_go(5), "a closed feed answers nothing");
    }

    #[test]
    fn lines_are_made_once() {
        let e = CachedEvent {
            event: ev(1),
            line: OnceLock::new(),
            keys: Vec::new(),
            at: std::time::Instant::now(),
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
