//! The in-memory MVCC index: every retained version of every key, in key order, plus a log of
//! which key each revision changed (for watches that start in the past).
//!
//! The latest version of each key keeps its value in memory; older versions keep only the
//! position of their value in a segment or checkpoint and are read from disk when asked for,
//! so memory holds the live data once, not its history.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

use crate::{Event, EventKind, KeyRange, KeyValue, Revision};

/// Which file a value lives in: a segment sequence number, or a checkpoint's with the top bit.
pub type FileId = u64;
pub const CHECKPOINT_BIT: u64 = 1 << 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: FileId,
    pub off: u64,
    pub len: u32,
}

#[derive(Clone, Debug)]
pub struct Version {
    pub mod_rev: Revision,
    pub create_rev: Revision,
    pub version: i64,
    /// `None` for a tombstone.
    pub loc: Option<Loc>,
    /// The value, for the latest version of a key.
    pub value: Option<Bytes>,
}

impl Version {
    pub fn is_tombstone(&self) -> bool {
        self.loc.is_none()
    }
}

#[derive(Default)]
pub struct Index {
    pub keys: BTreeMap<Bytes, Vec<Version>>,
    /// `revlog[i]` is the key changed at revision `revlog_base + i` (`None` if unknown, e.g.
    /// revisions that a snapshot restore folded away).
    pub revlog: VecDeque<Option<Bytes>>,
    pub revlog_base: Revision,
    pub rev: Revision,
    pub compacted: Revision,
    /// Bytes of every retained value (what a checkpoint would hold).
    pub retained_bytes: u64,
}

fn bounds(range: &KeyRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    let start = Bound::Included(&range.start[..]);
    let end = match &range.end {
        None => Bound::Included(&range.start[..]),
        Some(e) if e.is_empty() => Bound::Unbounded,
        Some(e) => Bound::Excluded(&e[..]),
    };
    (start, end)
}

impl Index {
    pub fn new() -> Self {
        Index {
            revlog_base: 1,
            ..Default::default()
        }
    }

    pub fn live_kv(&self, key: &Bytes) -> Option<KeyValue> {
        let v = self.keys.get(key)?.last()?;
        if v.is_tombstone() {
            return None;
        }
        Some(KeyValue {
            key: key.clone(),
            value: v.value.clone().unwrap_or_default(),
            create_revision: v.create_rev,
            mod_revision: v.mod_rev,
            version: v.version,
        })
    }

    /// Keys in `range` in order, each with its version visible at `rev` (tombstones skipped).
    pub fn visible<'a>(
        &'a self,
        range: &'a KeyRange,
        rev: Revision,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Version)> + 'a {
        // An end at or before the start selects nothing (`BTreeMap::range` would panic).
        let empty = matches!(&range.end, Some(e) if !e.is_empty() && e[..] <= range.start[..]);
        let b = bounds(range);
        (!empty)
            .then(|| self.keys.range::<[u8], _>(b))
            .into_iter()
            .flatten()
            .filter_map(move |(k, versions)| {
                let i = versions.partition_point(|v| v.mod_rev <= rev);
                let v = versions.get(i.checked_sub(1)?)?;
                (!v.is_tombstone()).then_some((k, v))
            })
    }

    fn record_rev(&mut self, rev: Revision, key: Option<Bytes>) {
        // Revisions arrive in order; anything skipped (never for live writes) stays unknown.
        while self.revlog_base + (self.revlog.len() as Revision) < rev {
            self.revlog.push_back(None);
        }
        if self.revlog_base + (self.revlog.len() as Revision) == rev {
            self.revlog.push_back(key);
        }
    }

    /// Applies a put at `rev`. The previous latest version drops its in-memory value.
    pub fn apply_put(
        &mut self,
        key: Bytes,
        rev: Revision,
        create_rev: Revision,
        version: i64,
        value: Bytes,
        loc: Loc,
    ) {
        self.retained_bytes += value.len() as u64 + key.len() as u64;
        let versions = self.keys.entry(key.clone()).or_default();
        if let Some(prev) = versions.last_mut() {
            prev.value = None;
        }
        versions.push(Version {
            mod_rev: rev,
            create_rev,
            version,
            loc: Some(loc),
            value: Some(value),
        });
        self.rev = rev;
        self.record_rev(rev, Some(key));
    }

    /// Applies a delete at `rev`.
    pub fn apply_delete(&mut self, key: Bytes, rev: Revision) {
        self.retained_bytes += key.len() as u64;
        let versions = self.keys.entry(key.clone()).or_default();
        if let Some(prev) = versions.last_mut() {
            prev.value = None;
        }
        versions.push(Version {
            mod_rev: rev,
            create_rev: 0,
            version: 0,
            loc: None,
            value: None,
        });
        self.rev = rev;
        self.record_rev(rev, Some(key));
    }

    /// Drops every version that no read at or after `rev` can see. Versions at exactly `rev`
    /// stay, so a watch from `rev` still sees the event at `rev`, except a tombstone: like
    /// etcd, which deletes a tombstone at the compaction revision, so that a watch from there
    /// never gets a delete event whose previous value is gone.
    pub fn compact(&mut self, rev: Revision) {
        if rev <= self.compacted {
            return;
        }
        let upto = (rev - self.revlog_base).clamp(0, self.revlog.len() as Revision) as usize;
        let mut touched: HashSet<Bytes> = self.revlog.drain(..upto).flatten().collect();
        self.revlog_base += upto as Revision;
        if self.revlog_base == rev {
            // The key changed at `rev` itself (its log entry stays): a tombstone there goes.
            if let Some(Some(key)) = self.revlog.front() {
                touched.insert(key.clone());
            }
        }
        if self.revlog_base < rev {
            // Compacting past revisions we never logged (only after a restore).
            self.revlog_base = rev;
        }
        for key in touched {
            let Some(versions) = self.keys.get_mut(&key) else {
                continue;
            };
            let i = versions.partition_point(|v| v.mod_rev <= rev);
            // versions[i-1] is the one visible at `rev`: keep it (unless a tombstone),
            // drop everything before it.
            let mut drop_to = i.saturating_sub(1);
            if let Some(v) = versions.get(drop_to) {
                if v.is_tombstone() {
                    drop_to += 1;
                }
            }
            for v in versions.drain(..drop_to) {
                self.retained_bytes = self
                    .retained_bytes
                    .saturating_sub(key.len() as u64 + v.loc.map_or(0, |l| l.len as u64));
            }
            if versions.is_empty() {
                self.keys.remove(&key);
            }
        }
        self.compacted = rev;
    }

    /// The event at revision `rev` if it touched a key in `range`, with the version and the
    /// previous version still to be filled with values by the caller.
    pub fn event_at(
        &self,
        rev: Revision,
        range: &KeyRange,
    ) -> Option<(Bytes, &Version, Option<&Version>)> {
        let idx = rev.checked_sub(self.revlog_base)?;
        let key = self.revlog.get(idx as usize)?.as_ref()?;
        if !range.contains(key) {
            return None;
        }
        let versions = self.keys.get(key)?;
        let i = versions.iter().rposition(|v| v.mod_rev == rev)?;
        let prev = i
            .checked_sub(1)
            .and_then(|j| versions.get(j))
            .filter(|p| !p.is_tombstone());
        Some((key.clone(), &versions[i], prev))
    }
}

/// Builds the public event for a write, from the new version and the previous live one.
pub fn make_event(
    key: &Bytes,
    new: Option<KeyValue>,
    prev: Option<KeyValue>,
    rev: Revision,
) -> Event {
    match new {
        Some(kv) => Event {
            kind: EventKind::Put,
            kv,
            prev,
        },
        None => Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.clone(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: rev,
                version: 0,
            },
            prev,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u64) -> Loc {
        Loc {
            file: 0,
            off: n,
            len: 1,
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn visibility_and_compaction() {
        let mut ix = Index::new();
        ix.apply_put(b("a"), 1, 1, 1, b("1"), loc(1));
        ix.apply_put(b("a"), 2, 1, 2, b("2"), loc(2));
        ix.apply_delete(b("a"), 3);
        ix.apply_put(b("b"), 4, 4, 1, b("x"), loc(4));
        let all = KeyRange::between(Bytes::new(), Bytes::new());
        let at = |ix: &Index, r| {
            ix.visible(&all, r)
                .map(|(k, v)| (k.clone(), v.mod_rev))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(&ix, 1), vec![(b("a"), 1)]);
        assert_eq!(at(&ix, 2), vec![(b("a"), 2)]);
        assert_eq!(at(&ix, 3), vec![]);
        assert_eq!(at(&ix, 4), vec![(b("b"), 4)]);
        // Only the latest version keeps its value in memory.
        assert!(ix.keys[&b("a")][0].value.is_none());
        assert!(ix.keys[&b("b")][0].value.is_some());

        ix.compact(2);
        assert_eq!(
            ix.keys[&b("a")].len(),
            2,
            "version at 2 and the tombstone stay"
        );
        assert_eq!(at(&ix, 2), vec![(b("a"), 2)]);
        assert!(ix.event_at(2, &all).is_some());
        assert!(ix.event_at(1, &all).is_none());
        ix.compact(4);
        assert!(!ix.keys.contains_key(&b("a")), "deleted key disappears");
        assert_eq!(at(&ix, 4), vec![(b("b"), 4)]);
        assert_eq!(ix.revlog_base, 4);
    }

    #[test]
    fn event_prev() {
        let mut ix = Index::new();
        ix.apply_put(b("k"), 1, 1, 1, b("1"), loc(1));
        ix.apply_put(b("k"), 2, 1, 2, b("2"), loc(2));
        let r = KeyRange::key(b("k"));
        let (_, v, prev) = ix.event_at(2, &r).unwrap();
        assert_eq!(v.mod_rev, 2);
        assert_eq!(prev.unwrap().mod_rev, 1);
        assert!(ix.event_at(2, &KeyRange::key(b("other"))).is_none());
    }
}
