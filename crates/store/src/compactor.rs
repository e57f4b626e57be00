//! Automatic compaction for any backend: periodically compact away history older than a
//! retention window (minutes, revisions, or both), then ask the backend to give the space back
//! (a checkpoint for the embedded store, defragmentation for etcd).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Revision, Store, StoreError};

/// What history to keep.
#[derive(Clone, Debug)]
pub struct CompactionPolicy {
    /// Keep every revision written in this window (`None`: no time limit).
    pub retention: Option<Duration>,
    /// Keep at least this many revisions (`None`: no count limit).
    pub keep_revisions: Option<i64>,
    /// How often to check.
    pub interval: Duration,
}

impl Default for CompactionPolicy {
    /// As kube-apiserver compacts etcd: every five minutes, keeping five minutes of history.
    fn default() -> Self {
        CompactionPolicy {
            retention: Some(Duration::from_secs(300)),
            keep_revisions: None,
            interval: Duration::from_secs(60),
        }
    }
}

/// Decides compaction targets from revision samples.
pub struct Compactor {
    policy: CompactionPolicy,
    samples: VecDeque<(Instant, Revision)>,
}

impl Compactor {
    pub fn new(policy: CompactionPolicy) -> Self {
        Compactor {
            policy,
            samples: VecDeque::new(),
        }
    }

    /// Records the current revision at `now` and returns the revision to compact to, if any:
    /// the oldest revision still inside every configured window.
    pub fn target(&mut self, now: Instant, current: Revision) -> Option<Revision> {
        self.samples.push_back((now, current));
        let mut target: Option<Revision> = None;
        let mut limit = |t: Revision| target = Some(target.map_or(t, |x| x.min(t)));
        if let Some(window) = self.policy.retention {
            // The newest sample taken at least `window` ago: everything after it is kept.
            let cutoff = now.checked_sub(window);
            let old = self
                .samples
                .iter()
                .rev()
                .find(|(t, _)| cutoff.is_some_and(|c| *t <= c))
                .map(|(_, r)| *r);
            match old {
                Some(r) => limit(r),
                None => limit(0),
            }
            if let Some(c) = cutoff {
                // Drop samples older than the one we keep as the boundary.
                while self.samples.len() > 1 && self.samples[1].0 <= c {
                    self.samples.pop_front();
                }
            }
        }
        if let Some(keep) = self.policy.keep_revisions {
            limit(current - keep);
        }
        if self.policy.retention.is_none() {
            self.samples.clear();
        }
        target.filter(|t| *t > 0)
    }
}

/// Runs the compactor until the store fails permanently or the task is aborted.
pub fn spawn(store: Arc<dyn Store>, policy: CompactionPolicy) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut compactor = Compactor::new(policy);
        loop {
            ticker.tick().await;
            if let Err(e) = run_once(store.as_ref(), &mut compactor).await {
                tracing::warn!(backend = store.backend(), "automatic compaction: {e}");
                if matches!(e, StoreError::Closed) {
                    return;
                }
            }
        }
    })
}

/// One round: compact if the window moved, then reclaim space.
pub async fn run_once(store: &dyn Store, compactor: &mut Compactor) -> Result<(), StoreError> {
    let current = store.current_revision().await?;
    let Some(target) = compactor.target(Instant::now(), current) else {
        return Ok(());
    };
    if target <= store.compacted_revision().await? {
        return Ok(());
    }
    match store.compact(target).await {
        // Someone (another server) compacted further already.
        Ok(()) | Err(StoreError::Compacted { .. }) => {}
        Err(e) => return Err(e),
    }
    tracing::debug!(backend = store.backend(), target, "compacted");
    store.reclaim().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_window() {
        let mut c = Compactor::new(CompactionPolicy {
            retention: None,
            keep_revisions: Some(100),
            interval: Duration::from_secs(1),
        });
        let t = Instant::now();
        assert_eq!(c.target(t, 50), None);
        assert_eq!(c.target(t, 250), Some(150));
    }

    #[test]
    fn time_window_uses_the_revision_seen_window_ago() {
        let mut c = Compactor::new(CompactionPolicy {
            retention: Some(Duration::from_secs(300)),
            keep_revisions: None,
            interval: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(c.target(t0, 10), None, "nothing is old enough yet");
        assert_eq!(c.target(t0 + Duration::from_secs(200), 20), None);
        assert_eq!(c.target(t0 + Duration::from_secs(300), 30), Some(10));
        assert_eq!(c.target(t0 + Duration::from_secs(520), 40), Some(20));
        assert!(c.samples.len() <= 3, "old samples are dropped");
    }

    #[test]
    fn both_windows_keep_the_larger_history() {
        let mut c = Compactor::new(CompactionPolicy {
            retention: Some(Duration::from_secs(10)),
            keep_revisions: Some(5),
            interval: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        c.target(t0, 100);
        assert_eq!(c.target(t0 + Duration::from_secs(10), 200), Some(100));
    }
}
