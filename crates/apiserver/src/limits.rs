//! What one client may hold of the server: connections, time and requests in flight.
//!
//! Go's API server gets most of this from `net/http` and its handler chain; hyper leaves it to
//! the server, so it lives here, in one place:
//!
//! - **Timeouts** ([`Limits`]): the TLS handshake (10 s), the request header (32 s, also the
//!   time a new connection may take to send its first request), idle keep-alive connections
//!   (90 s without a request in flight, as upstream's `IdleTimeout`), and the request body (60 s,
//!   then `504 Timeout` as upstream's request-timeout filter answers). A request in flight keeps
//!   its connection open however long it lasts, so watches and streams are never cut.
//! - **Connections** ([`Gate`]): a cap on open connections below the process's file limit
//!   (raised to its hard limit at start, [`raise_fd_limit`]), and a smaller cap on connections
//!   that have not yet authenticated (no client certificate, no authenticated request yet).
//!   When that pool is full the oldest unauthenticated connection is closed to make room, so a
//!   flood of idle sockets costs the attacker its oldest sockets, never another client its
//!   turn: a real client authenticates within a round trip or two and leaves the pool.
//! - **Requests in flight** ([`Inflight`]): upstream's `--max-requests-inflight` (400
//!   non-mutating) and `--max-mutating-requests-inflight` (200); beyond them `429
//!   TooManyRequests` with `Retry-After: 1`. Long-running requests (watch, exec, attach,
//!   port-forward, proxy, log) are not counted and `system:masters` is never refused, as
//!   upstream. A request counts until its response body has been handed to the connection.
//!
//! Must not touch: routing and authentication (handlers), TLS configuration (pki).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::ApiError;

/// The server's limits; every field has upstream's default.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request's header, and a new connection its first request.
    pub request_header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_connection_timeout: Duration,
    /// Time a client has to send a request's body.
    pub request_body_timeout: Duration,
    /// Open connections at most; 0 derives it from the file limit.
    pub max_connections: usize,
    /// Connections that have not authenticated yet, at most; 0 derives it from
    /// `max_connections`.
    pub max_pending_connections: usize,
    /// Non-mutating requests (get, list) in flight at most; 0 is no limit.
    pub max_requests_inflight: usize,
    /// Mutating requests in flight at most; 0 is no limit.
    pub max_mutating_requests_inflight: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            tls_handshake_timeout: Duration::from_secs(10),
            request_header_timeout: Duration::from_secs(32),
            idle_connection_timeout: Duration::from_secs(90),
            request_body_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_pending_connections: 0,
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
        }
    }
}

impl Limits {
    /// Refuses a timeout of zero (it would close every connection at once).
    pub fn check(&self) -> anyhow::Result<()> {
        let timeouts = [
            ("TLS handshake", self.tls_handshake_timeout),
            ("request header", self.request_header_timeout),
            ("idle connection", self.idle_connection_timeout),
            ("request body", self.request_body_timeout),
        ];
        for (what, t) in timeouts {
            if t.is_zero() {
                anyhow::bail!("the {what} timeout must be more than 0");
            }
        }
        Ok(())
    }
}

/// Connections open at most when the file limit allows it (a few thousand, as one API server
/// serves in practice; more clients means more servers).
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Unauthenticated connections at most, by default.
const DEFAULT_MAX_PENDING: usize = 1024;
/// HTTP/2 streams one connection may have open (upstream's default).
pub const HTTP2_MAX_STREAMS: u32 = 250;
/// Largest request header (upstream's `MaxHeaderBytes`).
pub const MAX_HEADER_BYTES: u32 = 1 << 20;

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force
/// afterwards (None when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Some(lim.rlim_cur)
}

/// The connection caps for a process that may open `fds` files: a quarter of them (64 to
/// 1024) stay for the store, logs and outgoing connections; at most half of the rest may be
/// unauthenticated.
pub fn connection_caps(limits: &Limits, fds: Option<u64>) -> (usize, usize) {
    let fds = usize::try_from(fds.unwrap_or(1024)).unwrap_or(usize::MAX);
    let reserve = (fds / 4).clamp(64, 1024);
    let room = fds.saturating_sub(reserve).max(16);
    let total = match limits.max_connections {
        0 => DEFAULT_MAX_CONNECTIONS.min(room),
        n => n,
    };
    let pending = match limits.max_pending_connections {
        0 => DEFAULT_MAX_PENDING.min(total / 2),
        n => n.min(total),
    };
    (total, pending.max(1))
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Admission of connections: a cap on all open connections and a smaller one on those not yet
/// authenticated, whose oldest is closed when a new one needs the room.
pub struct Gate {
    max_total: usize,
    max_pending: usize,
    state: Mutex<GateState>,
    /// Signalled whenever a connection's slot is given back.
    freed: Notify,
}

#[derive(Default)]
struct GateState {
    open: usize,
    next_id: u64,
    /// Unauthenticated connections, oldest first, with the signal that closes each.
    pending: BTreeMap<u64, Arc<Notify>>,
    /// Connections told to close that have not given their slot back yet.
    closing: BTreeSet<u64>,
}

impl GateState {
    fn evict_oldest(&mut self) {
        if let Some((id, close)) = self.pending.pop_first() {
            self.closing.insert(id);
            close.notify_one();
        }
    }
}

impl Gate {
    pub fn new(max_total: usize, max_pending: usize) -> Arc<Gate> {
        let max_total = max_total.max(1);
        Arc::new(Gate {
            max_total,
            max_pending: max_pending.clamp(1, max_total),
            state: Mutex::new(GateState::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The state is plain counters and sets, each updated in one statement: a panic
        // elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection just accepted, as an unauthenticated one. Closes the oldest
    /// unauthenticated connection when their pool is full, or when every slot is taken; waits
    /// only while every slot is held by an authenticated connection.
    pub async fn admit(self: &Arc<Gate>) -> Slot {
        loop {
            // Registered before the state is read: a slot given back in between still wakes us.
            let freed = self.freed.notified();
            {
                let mut st = self.lock();
                if st.open < self.max_total {
                    if st.pending.len() >= self.max_pending {
                        st.evict_oldest();
                    }
                    st.open += 1;
                    let id = st.next_id;
                    st.next_id += 1;
                    let close = Arc::new(Notify::new());
                    st.pending.insert(id, close.clone());
                    return Slot {
                        gate: self.clone(),
                        id,
                        close,
                    };
                }
                // Full: one unauthenticated connection makes room, unless one is already
                // on its way out.
                if st.closing.is_empty() {
                    st.evict_oldest();
                }
            }
            freed.await;
        }
    }

    /// (open connections, unauthenticated ones).
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.open, st.pending.len())
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_pending(&self) -> usize {
        self.max_pending
    }
}

/// One connection's place at the [`Gate`]; given back on drop.
pub struct Slot {
    gate: Arc<Gate>,
    id: u64,
    close: Arc<Notify>,
}

impl Slot {
    /// What the request handlers use to say the connection has authenticated.
    pub fn handle(&self) -> ConnSlot {
        ConnSlot {
            gate: self.gate.clone(),
            id: self.id,
        }
    }

    /// The connection has authenticated: it is no longer closed to make room.
    pub fn authenticated(&self) {
        self.handle().authenticated();
    }

    /// Completes when the gate wants this connection closed to make room.
    pub async fn evicted(&self) {
        self.close.notified().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut st = self.gate.lock();
            st.open = st.open.saturating_sub(1);
            st.pending.remove(&self.id);
            st.closing.remove(&self.id);
        }
        self.gate.freed.notify_waiters();
    }
}

/// A connection's place at the gate, as the request handlers see it (a request extension).
#[derive(Clone)]
pub struct ConnSlot {
    gate: Arc<Gate>,
    id: u64,
}

impl ConnSlot {
    /// The connection has authenticated: it is no longer closed to make room.
    pub fn authenticated(&self) {
        self.gate.lock().pending.remove(&self.id);
    }
}

// ---------------------------------------------------------------------------------------------
// Idle connections

#[derive(Clone, Copy)]
struct ActivityState {
    /// Requests whose response has not been handed to the connection yet.
    active: usize,
    /// When `active` last fell to 0 (or the connection started).
    idle_since: Instant,
    /// Whether any request has arrived.
    served: bool,
}

/// What a connection is doing, for the idle timeout.
pub struct Activity {
    tx: watch::Sender<ActivityState>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        let (tx, _) = watch::channel(ActivityState {
            active: 0,
            idle_since: Instant::now(),
            served: false,
        });
        Arc::new(Activity { tx })
    }

    /// A request has arrived; it is in flight until the guard is dropped (with its response
    /// body, see [`guard_response`]).
    pub fn request(self: &Arc<Activity>) -> RequestGuard {
        self.tx.send_modify(|s| {
            s.active += 1;
            s.served = true;
        });
        RequestGuard(self.clone())
    }

    /// Completes once the connection has had no request in flight for `first` (before its
    /// first request) or `idle` (after one).
    pub async fn idle_expired(&self, first: Duration, idle: Duration) {
        let mut rx = self.tx.subscribe();
        loop {
            let s = *rx.borrow_and_update();
            if s.active > 0 {
                // The sender lives in `self`: this only returns on a change.
                let _ = rx.changed().await;
                continue;
            }
            let limit = if s.served { idle } else { first };
            tokio::select! {
                _ = tokio::time::sleep_until(s.idle_since + limit) => return,
                _ = rx.changed() => {}
            }
        }
    }
}

/// A request in flight on a connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.tx.send_modify(|s| {
            s.active = s.active.saturating_sub(1);
            if s.active == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// Largest piece a guarded body hands on at once: the connection buffers a few of them, so a
/// response is in flight until little more than its buffer's worth is left to send.
const PIECE: usize = 64 * 1024;

/// A response body that holds a guard until the body has been handed to the connection.
struct Guarded<G> {
    inner: Body,
    /// The part of a large data frame not handed on yet.
    rest: Bytes,
    guard: Option<G>,
}

impl<G: Send + Unpin + 'static> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            let n = this.rest.len().min(PIECE);
            return Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(n)))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > PIECE {
                        this.rest = data.split_off(PIECE);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(other) => Poll::Ready(Some(Ok(other))),
            },
            Poll::Ready(None) => {
                this.guard = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + rest),
            None => {
                let mut h = SizeHint::new();
                h.set_lower(inner.lower() + rest);
                if let Some(u) = inner.upper() {
                    h.set_upper(u + rest);
                }
                h
            }
        }
    }
}

/// `resp` with `guard` held until its body has been handed to the connection (or dropped).
pub fn guard_response<G: Send + Unpin + 'static>(resp: Response<Body>, guard: G) -> Response<Body> {
    resp.map(|inner| {
        Body::new(Guarded {
            inner,
            rest: Bytes::new(),
            guard: Some(guard),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Requests in flight

/// How a request counts against the in-flight limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// watch, exec, attach, port-forward, proxy, log: not counted.
    LongRunning,
    /// get, list.
    ReadOnly,
    /// Everything else.
    Mutating,
}

/// Subresources that stream for as long as the client wants (upstream's
/// `BasicLongRunningRequestCheck`).
const LONG_RUNNING_SUBRESOURCES: [&str; 5] = ["attach", "exec", "proxy", "log", "portforward"];

/// Classifies a request as upstream's request info does; `watch` is whether the `watch` query
/// parameter asks for a watch.
pub fn classify(method: &Method, path: &str, watch: bool) -> RequestKind {
    let read = method == Method::GET || method == Method::HEAD;
    let plain = if read {
        RequestKind::ReadOnly
    } else {
        RequestKind::Mutating
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return plain,
    };
    if read && watch {
        return RequestKind::LongRunning;
    }
    let mut rest = rest;
    match rest.first() {
        Some(&"watch") | Some(&"proxy") => return RequestKind::LongRunning,
        Some(&"namespaces") if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") => {
            rest = &rest[2..];
        }
        _ => {}
    }
    match rest.get(2) {
        Some(sub) if LONG_RUNNING_SUBRESOURCES.contains(sub) => RequestKind::LongRunning,
        _ => plain,
    }
}

/// Upstream's `--max-requests-inflight` and `--max-mutating-requests-inflight`.
pub struct Inflight {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// The group whose members always get an answer (upstream's `system:masters`).
const PRIVILEGED_GROUP: &str = "system:masters";

impl Inflight {
    pub fn new(limits: &Limits) -> Inflight {
        let pool = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Inflight {
            read_only: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
        }
    }

    /// A place for a request of this kind from a member of `groups`: `Ok(None)` when it is
    /// not counted, `Err` (429) when its pool is full and the caller is not privileged.
    pub fn admit(
        &self,
        kind: RequestKind,
        groups: &[String],
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let pool = match kind {
            RequestKind::LongRunning => return Ok(None),
            RequestKind::ReadOnly => &self.read_only,
            RequestKind::Mutating => &self.mutating,
        };
        let Some(pool) = pool else { return Ok(None) };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            // A super-user (or the server's own loopback client) always gets an answer.
            Err(_) if groups.iter().any(|g| g == PRIVILEGED_GROUP) => Ok(None),
            Err(_) => Err(ApiError::too_many_requests()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_running_requests_are_told_apart() {
        use RequestKind::*;
        let cases: &[(Method, &str, bool, RequestKind)] = &[
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                false,
                ReadOnly,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                true,
                LongRunning,
            ),
            (Method::GET, "/apis/apps/v1/deployments", true, LongRunning),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                false,
                LongRunning,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p/log",
                false,
                LongRunning,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/p/exec",
                false,
                LongRunning,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p/attach",
                false,
                LongRunning,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods/p/portforward",
                false,
                LongRunning,
            ),
            (
                Method::GET,
                "/api/v1/nodes/n/proxy/metrics",
                false,
                LongRunning,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p",
                false,
                ReadOnly,
            ),
            (Method::HEAD, "/api/v1/namespaces", false, ReadOnly),
            (Method::GET, "/api/v1/namespaces/log", false, ReadOnly),
            (
                Method::PUT,
                "/api/v1/namespaces/log/finalize",
                false,
                Mutating,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                false,
                Mutating,
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x/scale",
                false,
                Mutating,
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods/p",
                false,
                Mutating,
            ),
            // The watch parameter only makes a read a watch.
            (
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                true,
                Mutating,
            ),
            (Method::GET, "/openapi/v2", false, ReadOnly),
            (Method::GET, "/apis", true, ReadOnly),
            (
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                false,
                Mutating,
            ),
        ];
        for (method, path, watch, want) in cases {
            assert_eq!(
                classify(method, path, *watch),
                *want,
                "{method} {path} watch={watch}"
            );
        }
    }

    #[test]
    fn full_pools_refuse_all_but_the_privileged() {
        let inflight = Inflight::new(&Limits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        });
        let user = vec!["system:authenticated".to_string()];
        let admin = vec!["system:masters".to_string()];
        let held = inflight.admit(RequestKind::ReadOnly, &user);
        assert!(matches!(held, Ok(Some(_))));
        let refused = inflight.admit(RequestKind::ReadOnly, &user).err();
        let refused = refused.map(|e| (e.code, e.reason));
        assert_eq!(refused, Some((429, "TooManyRequests")));
        assert!(matches!(
            inflight.admit(RequestKind::ReadOnly, &admin),
            Ok(None)
        ));
        assert!(matches!(
            inflight.admit(RequestKind::LongRunning, &user),
            Ok(None)
        ));
        assert!(matches!(
            inflight.admit(RequestKind::Mutating, &user),
            Ok(Some(_))
        ));
        drop(held);
        assert!(matches!(
            inflight.admit(RequestKind::ReadOnly, &user),
            Ok(Some(_))
        ));
    }

    #[test]
    fn unlimited_pools_count_nothing() {
        let inflight = Inflight::new(&Limits {
            max_requests_inflight: 0,
            max_mutating_requests_inflight: 0,
            ..Limits::default()
        });
        assert!(matches!(
            inflight.admit(RequestKind::Mutating, &[]),
            Ok(None)
        ));
    }

    #[test]
    fn caps_leave_files_for_everything_else() {
        let d = Limits::default();
        assert_eq!(connection_caps(&d, Some(1024)), (768, 384));
        assert_eq!(connection_caps(&d, Some(1 << 20)), (4096, 1024));
        assert_eq!(connection_caps(&d, Some(20_000)), (4096, 1024));
        let small = connection_caps(&d, Some(100));
        assert!(small.0 >= 16 && small.1 >= 1, "{small:?}");
        let set = Limits {
            max_connections: 50,
            max_pending_connections: 80,
            ..Limits::default()
        };
        assert_eq!(connection_caps(&set, Some(1024)), (50, 50));
    }

    #[tokio::test]
    async fn the_oldest_unauthenticated_connection_makes_room() {
        let gate = Gate::new(4, 2);
        let a = gate.admit().await;
        let b = gate.admit().await;
        // The pool of unauthenticated connections is full: the next one evicts `a`.
        let c = gate.admit().await;
        tokio::time::timeout(Duration::from_secs(5), a.evicted())
            .await
            .expect("the oldest is told to close");
        drop(a);
        assert_eq!(gate.counts(), (2, 2));
        // Authenticated connections are never evicted.
        b.authenticated();
        c.handle().authenticated();
        let d = gate.admit().await;
        let e = gate.admit().await;
        assert_eq!(gate.counts(), (4, 2));
        // Every slot taken: the next waits until the oldest unauthenticated one (`d`) goes.
        let gate2 = gate.clone();
        let f = tokio::spawn(async move { gate2.admit().await });
        tokio::time::timeout(Duration::from_secs(5), d.evicted())
            .await
            .expect("the oldest unauthenticated connection is told to close");
        assert!(!f.is_finished());
        drop(d);
        let f = tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("admitted once a slot is free")
            .expect("admission task");
        assert_eq!(gate.counts(), (4, 2));
        drop((b, c, e, f));
        assert_eq!(gate.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Activity::new();
        let guard = activity.request();
        let short = Duration::from_millis(10);
        // In flight: never idle.
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            activity.idle_expired(short, short),
        )
        .await;
        assert!(waited.is_err());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), activity.idle_expired(short, short))
            .await
            .expect("idle once the request is done");
    }
}
