//! The kubelet's restart and image-pull back-off: after a failure the next try waits 10 s,
//! doubling up to 5 min; an entry whose last failure is more than twice the maximum (10 min)
//! behind the new one starts again from 10 s, so a container that ran well for 10 minutes
//! before it crashed is restarted at once.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last: Timestamp,
}

/// Back-off entries of one pod, keyed by container name (restarts) or image (pulls).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

fn expired(event: Timestamp, last: Timestamp) -> bool {
    event.duration_since(last) > SignedDuration::try_from(MAX * 2).unwrap_or(SignedDuration::MAX)
}

impl Backoff {
    /// When `key` failed at `event`: the time from which it may be tried again, if that is
    /// still ahead of `now`, with the delay that applies.
    pub fn waiting(
        &self,
        key: &str,
        event: Timestamp,
        now: Timestamp,
    ) -> Option<(Timestamp, Duration)> {
        let e = self.entries.get(key)?;
        if expired(event, e.last) {
            return None;
        }
        let until = event
            .checked_add(SignedDuration::try_from(e.delay).ok()?)
            .ok()?;
        (now < until).then_some((until, e.delay))
    }

    /// Records a try after the failure at `event`: the next failure waits twice as long (from
    /// [`INITIAL`], at most [`MAX`]).
    pub fn next(&mut self, key: &str, event: Timestamp) {
        let delay = match self.entries.get(key) {
            Some(e) if !expired(event, e.last) => (e.delay * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries
            .insert(key.to_string(), Entry { delay, last: event });
    }

    /// Records a failure of `key` at `now` (see [`Backoff::next`]) and returns when it may be
    /// tried again.
    pub fn failed(&mut self, key: &str, now: Timestamp) -> Option<Timestamp> {
        self.next(key, now);
        now.checked_add(SignedDuration::try_from(self.delay(key)).ok()?)
            .ok()
    }

    /// The delay the next failure of `key` would wait.
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(INITIAL, |e| e.delay)
    }
}

/// A whole number of seconds as Go prints a `time.Duration` (`10s`, `2m40s`, `5m0s`), which
/// is how the kubelet's back-off messages show it.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn delays_double_to_five_minutes_and_reset_after_ten() {
        let mut b = Backoff::default();
        // The first failure is retried at once.
        assert_eq!(b.waiting("c", at(0), at(0)), None);
        b.next("c", at(0));
        // The second waits 10 s from when it happened.
        assert_eq!(
            b.waiting("c", at(1), at(5)),
            Some((at(11), Duration::from_secs(10)))
        );
        assert_eq!(b.waiting("c", at(1), at(11)), None);
        let mut last = at(1);
        let mut delays = vec![];
        for i in 0..7 {
            b.next("c", last);
            delays.push(b.delay("c").as_secs());
            last = at(20 + i * 10);
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300]);
        // A failure more than 10 minutes after the last one starts again.
        b.next("c", at(2000));
        assert_eq!(b.delay("c"), INITIAL);
        assert_eq!(b.waiting("other", at(0), at(0)), None);
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(MAX), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
