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
//!   One client address (an IPv6 /64) may hold only a part of that pool: a new connection
//!   from an address at its cap closes that address's own oldest unauthenticated connection,
//!   so a flood from one address churns through its own sockets and never pushes out another
//!   client's handshake. Authenticated connections are not counted per address (every
//!   component on one host shares 127.0.0.1).
//! - **Request time** ([`RequestTimeout`]): upstream's `--request-timeout` (60 s): a request
//!   that is not long-running gets `504 Timeout` when it has not been answered in time; the
//!   `timeout` query parameter may shorten that bound (never lengthen it), as upstream's
//!   request-deadline filter allows. The request's work is dropped with it.
//! - **Requests in flight** ([`Inflight`]): upstream's `--max-requests-inflight` (400
//!   non-mutating) and `--max-mutating-requests-inflight` (200); beyond them `429
//!   TooManyRequests` with `Retry-After: 1`. Long-running requests (watch, exec, attach,
//!   port-forward, proxy, log) and `system:masters` (exempt, as under upstream's default
//!   priority and fairness) are not counted; nodes (`system:nodes`) have pools of the same
//!   sizes of their own, so other clients' bursts cannot starve node heartbeats, and a node's
//!   request waits in line for a few seconds when its pool is full rather than being refused
//!   at once. Their heartbeats (Lease and Node status writes) have a pool apart from the rest
//!   of their requests, as upstream's `system-node-high` priority level, so that a flood of
//!   pod status updates cannot delay a renewal until the node is taken for lost, and a line
//!   long enough for one heartbeat of each of 10,000 nodes. A request counts until its response body has been handed to the connection.
//!
//! Must not touch: routing and authentication (handlers), TLS configuration (pki).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
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
    /// Time a request that is not long-running has to be answered (upstream's
    /// `--request-timeout`).
    pub request_timeout: Duration,
    /// Open connections at most; 0 derives it from the file limit.
    pub max_connections: usize,
    /// Connections that have not authenticated yet, at most; 0 derives it from
    /// `max_connections`.
    pub max_pending_connections: usize,
    /// Connections from one client address (an IPv6 /64) that have not authenticated yet, at
    /// most; 0 derives it from `max_pending_connections`.
    pub max_pending_connections_per_address: usize,
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
            request_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_pending_connections: 0,
            max_pending_connections_per_address: 0,
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
            ("request", self.request_timeout),
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
/// Unauthenticated connections from one address at most, by default (and at most a quarter
/// of the unauthenticated pool): room for a burst of clients behind one NAT or on one host
/// handshaking at once, and three quarters of the pool left to everyone else.
const DEFAULT_MAX_PENDING_PER_ADDRESS: usize = 256;
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

/// The connection caps (open, unauthenticated, unauthenticated from one address) for a
/// process that may open `fds` files: a quarter of them (64 to 1024) stay for the store, logs
/// and outgoing connections; at most half of the rest may be unauthenticated, and at most a
/// quarter of those (by default) from one address.
pub fn connection_caps(limits: &Limits, fds: Option<u64>) -> (usize, usize, usize) {
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
    let pending = pending.max(1);
    let per_address = match limits.max_pending_connections_per_address {
        0 => DEFAULT_MAX_PENDING_PER_ADDRESS.min(pending / 4),
        n => n.min(pending),
    };
    (total, pending, per_address.max(1))
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Admission of connections: a cap on all open connections and a smaller one on those not yet
/// authenticated, whose oldest is closed when a new one needs the room, and a smaller one
/// still on those of one client address.
pub struct Gate {
    max_total: usize,
    max_pending: usize,
    max_pending_per_address: usize,
    state: Mutex<GateState>,
    /// Signalled whenever a connection's slot is given back.
    freed: Notify,
}

#[derive(Default)]
struct GateState {
    open: usize,
    next_id: u64,
    /// Unauthenticated connections, oldest first, with the signal that closes each.
    pending: BTreeMap<u64, Pending>,
    /// The unauthenticated connections of each client address, oldest first.
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
    /// Connections told to close that have not given their slot back yet.
    closing: BTreeSet<u64>,
}

struct Pending {
    close: Arc<Notify>,
    address: IpAddr,
}

impl GateState {
    /// Takes connection `id` out of the unauthenticated ones; its signal if it was one.
    fn unlist(&mut self, id: u64) -> Option<Arc<Notify>> {
        let p = self.pending.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&p.address) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&p.address);
            }
        }
        Some(p.close)
    }

    fn evict(&mut self, id: u64) {
        if let Some(close) = self.unlist(id) {
            self.closing.insert(id);
            close.notify_one();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(id) = self.pending.keys().next().copied() {
            self.evict(id);
        }
    }

    /// Closes the oldest unauthenticated connection of `address` while it holds `cap` or more.
    fn evict_over(&mut self, address: IpAddr, cap: usize) {
        while let Some(ids) = self.by_address.get(&address) {
            if ids.len() < cap {
                break;
            }
            match ids.first().copied() {
                Some(id) => self.evict(id),
                None => break,
            }
        }
    }
}

/// The address a connection is counted under: IPv4 addresses as they are (IPv4-mapped IPv6
/// ones as IPv4), IPv6 addresses by their /64, which one client usually has whole.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Gate {
    pub fn new(max_total: usize, max_pending: usize, max_pending_per_address: usize) -> Arc<Gate> {
        let max_total = max_total.max(1);
        let max_pending = max_pending.clamp(1, max_total);
        Arc::new(Gate {
            max_total,
            max_pending,
            max_pending_per_address: max_pending_per_address.clamp(1, max_pending),
            state: Mutex::new(GateState::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The state is plain counters and sets, each updated in one statement: a panic
        // elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection just accepted from `peer`, as an unauthenticated one. Closes
    /// the oldest unauthenticated connection of the same address when that address is at its
    /// cap, the oldest of all when their pool is full or when every slot is taken; waits only
    /// while every slot is held by an authenticated connection.
    pub async fn admit(self: &Arc<Gate>, peer: IpAddr) -> Slot {
        let address = client_address(peer);
        loop {
            // Registered before the state is read: a slot given back in between still wakes us.
            let freed = self.freed.notified();
            {
                let mut st = self.lock();
                st.evict_over(address, self.max_pending_per_address);
                if st.open < self.max_total {
                    if st.pending.len() >= self.max_pending {
                        st.evict_oldest();
                    }
                    st.open += 1;
                    let id = st.next_id;
                    st.next_id += 1;
                    let close = Arc::new(Notify::new());
                    st.pending.insert(
                        id,
                        Pending {
                            close: close.clone(),
                            address,
                        },
                    );
                    st.by_address.entry(address).or_default().insert(id);
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

    pub fn max_pending_per_address(&self) -> usize {
        self.max_pending_per_address
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
            st.unlist(self.id);
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
        self.gate.lock().unlist(self.id);
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
// Request time

/// The body of upstream's answer to a request that ran out of time: the timeout filter encodes
/// the `Status` of `NewTimeoutError` as it is, without its type (no `kind`, no `apiVersion`),
/// and sets no content type, so Go's server sniffs one (`text/plain; charset=utf-8`). Clients
/// then report the 504 as "the server was unable to return a response in the time allotted",
/// exactly as they do for kube-apiserver.
pub const TIMEOUT_BODY: &str = "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Timeout: request did not complete within the allotted timeout\",\"reason\":\"Timeout\",\"details\":{},\"code\":504}\n";

/// The start of upstream's message for a `timeout` query parameter it cannot parse.
const INVALID_TIMEOUT: &str = "invalid timeout specified in the request URL";

/// Bounds the time a request that is not long-running may take to be answered (a tower layer
/// over the API router): upstream's `WithRequestDeadline` and
/// `WithTimeoutForNonLongRunningRequests` filters. The bound is `max`, or the request's
/// `timeout` query parameter (a Go duration) when that is positive and shorter; a parameter
/// that does not parse is `400 BadRequest` before anything else (authentication included), as
/// upstream's filter sits outside authentication.
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer {
    max: Duration,
}

impl RequestTimeoutLayer {
    pub fn new(max: Duration) -> RequestTimeoutLayer {
        RequestTimeoutLayer { max }
    }
}

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            max: self.max,
        }
    }
}

/// The service [`RequestTimeoutLayer`] makes.
#[derive(Clone, Debug)]
pub struct RequestTimeout<S> {
    inner: S,
    max: Duration,
}

/// The first value of query parameter `name`, decoded (Go's `URL.Query().Get`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl<S> RequestTimeout<S> {
    /// The bound for a request: None for a long-running one, Err for an unparseable
    /// `timeout` parameter.
    fn bound<B>(&self, req: &Request<B>) -> Result<Option<Duration>, ApiError> {
        let query = req.uri().query();
        let watch = query_param(query, "watch")
            .is_some_and(|v| !(v.eq_ignore_ascii_case("false") || v == "0"));
        let raw = req.uri().path();
        let path = crate::handlers::decode_path(raw).unwrap_or_else(|| raw.to_string());
        if classify(req.method(), &path, watch) == RequestKind::LongRunning {
            return Ok(None);
        }
        let asked = match query_param(query, "timeout").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                go_duration(&v)
                    .map_err(|e| ApiError::bad_request(format!("{INVALID_TIMEOUT} - {e}")))?,
            ),
        };
        // Zero, negative or longer than the server's bound: the server's bound.
        Ok(Some(match asked {
            Some(GoDuration::Positive(d)) if d < self.max => d,
            _ => self.max,
        }))
    }
}

/// The answer to a request that ran out of time (see [`TIMEOUT_BODY`]).
pub fn timeout_response() -> Response<Body> {
    Response::builder()
        .status(StatusCode::GATEWAY_TIMEOUT)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(TIMEOUT_BODY))
        .unwrap_or_default()
}

impl<S, B> tower::Service<Request<B>> for RequestTimeout<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<
        Box<
            dyn std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>>
                + Send,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let bound = self.bound(&req);
        // The service that was made ready serves this request; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match bound {
            Err(e) => Box::pin(async move {
                use axum::response::IntoResponse as _;
                Ok(e.into_response())
            }),
            Ok(None) => Box::pin(inner.call(req)),
            Ok(Some(limit)) => {
                let answer = inner.call(req);
                Box::pin(async move {
                    match tokio::time::timeout(limit, answer).await {
                        Ok(r) => r,
                        Err(_) => Ok(timeout_response()),
                    }
                })
            }
        }
    }
}

/// A duration as Go's `time.ParseDuration` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoDuration {
    Positive(Duration),
    /// Zero or negative.
    NotPositive,
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), with an optional sign; errors
/// carry Go's messages (`time: invalid duration "x"`).
pub fn go_duration(orig: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(GoDuration::NotPositive);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u128 = 0;
        for &c in &b[..digits] {
            v = v * 10 + u128::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        // The fraction (digits beyond what fits are ignored, as Go does).
        let mut frac: u128 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.starts_with('.') {
            s = &s[1..];
            let fd = s.bytes().take_while(|c| c.is_ascii_digit()).count();
            post = fd > 0;
            let mut overflow = false;
            for c in s[..fd].bytes() {
                if overflow {
                    continue;
                }
                let next = frac * 10 + u128::from(c - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                frac = next;
                scale *= 10.0;
            }
            s = &s[fd..];
        }
        if digits == 0 && !post {
            return Err(invalid());
        }
        // The unit.
        let ulen = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        if ulen == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let (u, rest) = s.split_at(ulen);
        s = rest;
        let unit: u128 = match u {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(u),
                    go_quote(orig)
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u128;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg || total == 0 {
        return Ok(GoDuration::NotPositive);
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(GoDuration::Positive(Duration::from_nanos(total as u64)))
}

/// Go's `time` package quoting: `"` around, `"` and `\\` escaped, bytes of anything not
/// printable ASCII as `\xNN`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
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

/// Upstream's `--max-requests-inflight` and `--max-mutating-requests-inflight`, shared out as
/// upstream's default API Priority and Fairness does in spirit: `system:masters` is exempt
/// (never counted, never refused), and nodes (`system:nodes`) have pools of their own, so a
/// burst from other clients cannot starve the heartbeats that keep nodes Ready. A node's
/// request that finds its pool full waits in line (as APF queues it) for up to
/// [`NODE_QUEUE_WAIT`], behind at most as many others as the pool holds: thousands of nodes
/// renewing their Leases in one instant are served a moment later, not refused and counted
/// as silent. Other clients get 429 at once, as upstream's max-in-flight filter answers.
pub struct Inflight {
    others: Pools,
    nodes: Pools,
    /// Nodes' heartbeats: writes of their Leases and Node status.
    heartbeats: Option<Pool>,
    trouble: HeartbeatTrouble,
}

/// A heartbeat kept in line this long is the server falling behind its nodes.
const HEARTBEAT_SLOW: Duration = Duration::from_secs(1);

/// When this server last kept a node's heartbeat waiting in line for long
/// ([`HEARTBEAT_SLOW`]) or turned one away: until the grace period has passed since, a node's
/// silence may be the server's doing rather than the node's, and the node lifecycle
/// controller running in the same process does not take nodes for lost on it.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatTrouble(Arc<Mutex<Option<std::time::Instant>>>);

impl HeartbeatTrouble {
    pub fn last(&self) -> Option<std::time::Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }
}

/// How long a node's request may wait for a place in its pool.
pub const NODE_QUEUE_WAIT: Duration = Duration::from_secs(4);
/// How many heartbeats may wait for a place: each node has at most one in flight, so this
/// is one in line for each of 10,000 nodes. A heartbeat turned away is a node a step closer
/// to being taken for lost; one in line costs only its small body.
const HEARTBEAT_QUEUE: usize = 10_000;

struct Pools {
    read_only: Option<Pool>,
    mutating: Option<Pool>,
}

struct Pool {
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot, and how many may.
    waiting: Arc<AtomicUsize>,
    queue: usize,
    wait: Duration,
}

impl Pools {
    fn new(limits: &Limits, wait: Duration) -> Pools {
        Pools {
            read_only: Pool::new(limits.max_requests_inflight, wait),
            mutating: Pool::new(limits.max_mutating_requests_inflight, wait),
        }
    }
}

impl Pool {
    /// `n` places (none: no limit), where a request waits up to `wait` behind at most `n`
    /// others (no wait: refused at once).
    fn new(n: usize, wait: Duration) -> Option<Pool> {
        (n > 0).then(|| Pool {
            slots: Arc::new(Semaphore::new(n)),
            waiting: Arc::default(),
            queue: if wait.is_zero() { 0 } else { n },
            wait,
        })
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, SeqCst);
            return Err(ApiError::too_many_requests());
        }
        // Leaves the line however the wait ends (also when the client goes away).
        struct InLine(Arc<AtomicUsize>);
        impl Drop for InLine {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        let _in_line = InLine(self.waiting.clone());
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ApiError::too_many_requests()),
        }
    }
}

/// Whether a request writes a node heartbeat: a Lease in `kube-node-lease` or a Node's status.
pub fn is_heartbeat(info: &crate::authz::RequestInfo) -> bool {
    matches!(info.verb.as_str(), "update" | "patch" | "create")
        && match info.resource.as_str() {
            "leases" => {
                info.api_group == "coordination.k8s.io"
                    && info.namespace == "kube-node-lease"
                    && info.subresource.is_empty()
            }
            "nodes" => info.api_group.is_empty() && info.subresource == "status",
            _ => false,
        }
}

/// The group whose members always get an answer (upstream's `system:masters`).
const PRIVILEGED_GROUP: &str = "system:masters";
/// The group of node agents.
const NODES_GROUP: &str = "system:nodes";

impl Inflight {
    pub fn new(limits: &Limits) -> Inflight {
        Inflight {
            others: Pools::new(limits, Duration::ZERO),
            nodes: Pools::new(limits, NODE_QUEUE_WAIT),
            heartbeats: Pool::new(limits.max_mutating_requests_inflight, NODE_QUEUE_WAIT).map(
                |p| Pool {
                    queue: HEARTBEAT_QUEUE,
                    ..p
                },
            ),
            trouble: HeartbeatTrouble::default(),
        }
    }

    /// When heartbeats last waited long or were turned away.
    pub fn heartbeat_trouble(&self) -> HeartbeatTrouble {
        self.trouble.clone()
    }

    /// A place for a request of this kind from a member of `groups`: `Ok(None)` when it is
    /// not counted, `Err` (429) when its pool is full (and, for nodes, stays full).
    /// `heartbeat` is whether it writes a node's Lease or Node status ([`is_heartbeat`]).
    pub async fn admit(
        &self,
        kind: RequestKind,
        heartbeat: bool,
        groups: &[String],
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let member = |group: &str| groups.iter().any(|g| g == group);
        // A super-user (or the server's own loopback client) always gets an answer.
        if member(PRIVILEGED_GROUP) {
            return Ok(None);
        }
        let node = member(NODES_GROUP);
        if node && heartbeat && kind == RequestKind::Mutating {
            let Some(pool) = &self.heartbeats else {
                return Ok(None);
            };
            let asked = std::time::Instant::now();
            let admitted = pool.admit().await;
            if admitted.is_err() || asked.elapsed() > HEARTBEAT_SLOW {
                self.trouble.note();
            }
            return admitted.map(Some);
        }
        let pools = if node { &self.nodes } else { &self.others };
        let pool = match kind {
            RequestKind::LongRunning => return Ok(None),
            RequestKind::ReadOnly => &pools.read_only,
            RequestKind::Mutating => &pools.mutating,
        };
        match pool {
            Some(pool) => pool.admit().await.map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn one_address_only_pushes_out_its_own_connections() {
        let gate = Gate::new(16, 8, 2);
        let other: IpAddr = "10.0.0.7".parse().unwrap();
        let theirs = gate.admit(other).await;
        let a1 = gate.admit(LOCAL).await;
        let a2 = gate.admit(LOCAL).await;
        assert_eq!(gate.counts(), (3, 3));
        // The address is at its cap: each new connection closes its own oldest.
        let a3 = gate.admit(LOCAL).await;
        tokio::time::timeout(Duration::from_secs(5), a1.evicted())
            .await
            .expect("the address's oldest is told to close");
        drop(a1);
        let a4 = gate.admit(LOCAL).await;
        tokio::time::timeout(Duration::from_secs(5), a2.evicted())
            .await
            .expect("then its next oldest");
        drop(a2);
        assert_eq!(gate.counts(), (3, 3));
        // The other address's connection, older than all of them, stays.
        let mut evicted = Box::pin(theirs.evicted());
        assert!(futures::poll!(evicted.as_mut()).is_pending());
        // An authenticated connection leaves the address's count: room for one more.
        a3.authenticated();
        let a5 = gate.admit(LOCAL).await;
        assert_eq!(gate.counts(), (4, 3));
        assert!(futures::poll!(evicted.as_mut()).is_pending());
        drop(evicted);
        drop((a3, a4, a5, theirs));
        assert_eq!(gate.counts(), (0, 0));
        assert!(gate.lock().by_address.is_empty());
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_address(ip("127.0.0.2")), ip("127.0.0.2"));
        assert_eq!(client_address(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            client_address(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_address(ip("2001:db8:1:2::1")),
            client_address(ip("2001:db8:1:2::2"))
        );
    }

    /// A request to `path` through the timeout layer (bound `max`) over a service that
    /// answers only when `release` is notified.
    async fn through_layer(
        max: Duration,
        method: Method,
        path: String,
        release: Arc<Notify>,
    ) -> Response<Body> {
        use tower::{Layer as _, ServiceExt as _};
        let slow = tower::service_fn(move |_req: Request<Body>| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok::<_, std::convert::Infallible>(Response::new(Body::from("done")))
            }
        });
        let svc = RequestTimeoutLayer::new(max).layer(slow);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        match svc.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    async fn body_text(r: Response<Body>) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test]
    async fn requests_that_take_too_long_get_upstreams_timeout() {
        let never = Arc::new(Notify::new());
        let hour = Duration::from_secs(3600);
        // The server's bound.
        let r = through_layer(
            Duration::from_millis(20),
            Method::GET,
            "/api/v1/namespaces/default/configmaps".into(),
            never.clone(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"text/plain; charset=utf-8"[..])
        );
        assert_eq!(body_text(r).await, TIMEOUT_BODY);
        // The request's own, shorter one (the server's is an hour).
        for path in [
            "/api/v1/namespaces/default/configmaps?timeout=20ms",
            "/api/v1/namespaces/default/configmaps/x?timeout=0.02s&timeout=1h",
            "/healthz?timeout=20ms",
        ] {
            let r = through_layer(hour, Method::POST, path.into(), never.clone()).await;
            assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT, "{path}");
        }
        // A request's `timeout` cannot lengthen the server's bound; zero and negative ones
        // leave it as it is.
        for t in ["1h", "0", "0s", "-5s"] {
            let path = format!("/api/v1/namespaces?timeout={t}");
            let r =
                through_layer(Duration::from_millis(20), Method::GET, path, never.clone()).await;
            assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT, "{t}");
        }
    }

    #[tokio::test]
    async fn long_running_requests_and_quick_answers_are_left_alone() {
        let short = Duration::from_millis(1);
        for (method, path) in [
            (
                Method::GET,
                "/api/v1/namespaces/default/configmaps?watch=true",
            ),
            (Method::GET, "/api/v1/watch/namespaces/default/pods"),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p/log?follow=true",
            ),
            (Method::POST, "/api/v1/namespaces/default/pods/p/exec"),
            (Method::POST, "/api/v1/namespaces/default/pods/p%2Fexec"),
            // Not even a bad `timeout` is looked at (upstream parses it for others only).
            (Method::GET, "/api/v1/pods?watch=1&timeout=bad"),
        ] {
            let release = Arc::new(Notify::new());
            let call = tokio::spawn(through_layer(
                short,
                method.clone(),
                path.into(),
                release.clone(),
            ));
            // Well past the bound, then the service answers.
            tokio::time::sleep(Duration::from_millis(50)).await;
            release.notify_one();
            let r = call.await.expect("request task");
            assert_eq!(r.status(), StatusCode::OK, "{method} {path}");
            assert_eq!(body_text(r).await, "done");
        }
        // A quick answer is the service's.
        let ready = Arc::new(Notify::new());
        ready.notify_one();
        let r = through_layer(
            Duration::from_secs(60),
            Method::GET,
            "/api/v1/pods".into(),
            ready,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_timeout_parameter_that_does_not_parse_is_a_bad_request() {
        let cases = [
            ("abc", r#"time: invalid duration \"abc\""#),
            ("5", r#"time: missing unit in duration \"5\""#),
            ("5x", r#"time: unknown unit \"x\" in duration \"5x\""#),
            (
                "1%C3%A9s",
                r#"time: unknown unit \"\\xc3\\xa9s\" in duration \"1\\xc3\\xa9s\""#,
            ),
        ];
        for (t, why) in cases {
            let path = format!("/api/v1/namespaces/default/configmaps?timeout={t}");
            let r = through_layer(Duration::from_secs(60), Method::GET, path, Arc::default()).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{t}");
            let want = format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"invalid timeout specified in the request URL - {why}","reason":"BadRequest","code":400}}"#
            );
            assert_eq!(body_text(r).await, format!("{want}\n"), "{t}");
        }
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        use GoDuration::*;
        let ok = |s: &str| go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("1s"), Positive(Duration::from_secs(1)));
        assert_eq!(ok("1.5h"), Positive(Duration::from_secs(5400)));
        assert_eq!(ok("1h2m3.5s"), Positive(Duration::from_millis(3_723_500)));
        assert_eq!(ok(".5s"), Positive(Duration::from_millis(500)));
        assert_eq!(ok("5.s"), Positive(Duration::from_secs(5)));
        assert_eq!(ok("+250ms"), Positive(Duration::from_millis(250)));
        assert_eq!(ok("10us"), Positive(Duration::from_micros(10)));
        assert_eq!(ok("10\u{b5}s"), Positive(Duration::from_micros(10)));
        assert_eq!(ok("10\u{3bc}s"), Positive(Duration::from_micros(10)));
        assert_eq!(ok("7ns"), Positive(Duration::from_nanos(7)));
        assert_eq!(ok("0"), NotPositive);
        assert_eq!(ok("-0"), NotPositive);
        assert_eq!(ok("0s"), NotPositive);
        assert_eq!(ok("-1m"), NotPositive);
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Positive(Duration::from_nanos(i64::MAX as u64))
        );
        let err = |s: &str| go_duration(s).expect_err(s);
        assert_eq!(err(""), r#"time: invalid duration """#);
        assert_eq!(err("-"), r#"time: invalid duration "-""#);
        assert_eq!(err("."), r#"time: invalid duration ".""#);
        assert_eq!(err("s"), r#"time: invalid duration "s""#);
        assert_eq!(err("1"), r#"time: missing unit in duration "1""#);
        assert_eq!(err("1s2"), r#"time: missing unit in duration "1s2""#);
        assert_eq!(err("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(err("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(
            err("9223372036854775808ns"),
            r#"time: invalid duration "9223372036854775808ns""#
        );
        assert_eq!(
            err("1\"s"),
            r#"time: unknown unit "\"s" in duration "1\"s""#
        );
    }

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

    #[tokio::test]
    async fn full_pools_refuse_all_but_the_privileged_and_nodes_wait_in_pools_of_their_own() {
        let limits = Limits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        };
        let inflight = Inflight {
            others: Pools::new(&limits, Duration::ZERO),
            nodes: Pools::new(&limits, Duration::from_millis(200)),
            heartbeats: Pool::new(1, Duration::from_millis(200)),
            trouble: HeartbeatTrouble::default(),
        };
        let user = vec!["system:authenticated".to_string()];
        let admin = vec!["system:masters".to_string()];
        let node = vec![
            "system:nodes".to_string(),
            "system:authenticated".to_string(),
        ];
        let held = inflight.admit(RequestKind::ReadOnly, false, &user).await;
        assert!(matches!(held, Ok(Some(_))));
        let refused = inflight
            .admit(RequestKind::ReadOnly, false, &user)
            .await
            .err();
        let refused = refused.map(|e| (e.code, e.reason));
        assert_eq!(refused, Some((429, "TooManyRequests")));
        assert!(matches!(
            inflight.admit(RequestKind::ReadOnly, false, &admin).await,
            Ok(None)
        ));
        // Nodes draw from pools of their own: others' full pools do not refuse them.
        let node_held = inflight.admit(RequestKind::ReadOnly, false, &node).await;
        assert!(matches!(node_held, Ok(Some(_))));
        // A node's request waits for a place rather than being refused at once...
        let (waited, ()) =
            tokio::join!(inflight.admit(RequestKind::ReadOnly, false, &node), async {
                tokio::task::yield_now().await;
                drop(node_held);
            });
        let node_held = waited.expect("a place once the holder let go");
        assert!(node_held.is_some());
        // ...behind at most as many as the pool holds, and for a bounded time.
        let (first, second) = tokio::join!(
            inflight.admit(RequestKind::ReadOnly, false, &node),
            inflight.admit(RequestKind::ReadOnly, false, &node)
        );
        assert_eq!(first.err().map(|e| e.code), Some(429));
        assert_eq!(second.err().map(|e| e.code), Some(429));
        let pool = inflight.nodes.read_only.as_ref().unwrap();
        assert_eq!(pool.waiting.load(SeqCst), 0, "everyone left the line");
        // A node's heartbeat has a pool apart from its other writes.
        let node_write = inflight.admit(RequestKind::Mutating, false, &node).await;
        assert!(matches!(node_write, Ok(Some(_))));
        let other_write = inflight.admit(RequestKind::Mutating, false, &node).await;
        assert_eq!(other_write.err().map(|e| e.code), Some(429));
        let heartbeat = inflight.admit(RequestKind::Mutating, true, &node).await;
        assert!(matches!(heartbeat, Ok(Some(_))));
        assert_eq!(
            inflight.heartbeat_trouble().last(),
            None,
            "admitted at once"
        );
        // A heartbeat turned away is noted: the silence it causes is the server's doing.
        let refused = inflight.admit(RequestKind::Mutating, true, &node).await;
        assert_eq!(refused.err().map(|e| e.code), Some(429));
        assert!(inflight.heartbeat_trouble().last().is_some());
        drop((node_write, heartbeat));
        drop(node_held);
        assert!(matches!(
            inflight.admit(RequestKind::LongRunning, false, &user).await,
            Ok(None)
        ));
        assert!(matches!(
            inflight.admit(RequestKind::Mutating, false, &user).await,
            Ok(Some(_))
        ));
        drop(held);
        assert!(matches!(
            inflight.admit(RequestKind::ReadOnly, false, &user).await,
            Ok(Some(_))
        ));
    }

    #[test]
    fn heartbeats_are_writes_of_node_leases_and_node_status() {
        let heartbeat = |method: &str, path: &str| {
            is_heartbeat(&crate::authz::RequestInfo::parse(method, path, &[]))
        };
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
        assert!(heartbeat("PUT", lease));
        assert!(heartbeat("PATCH", "/api/v1/nodes/n1/status"));
        assert!(!heartbeat("GET", lease));
        assert!(!heartbeat("PATCH", "/api/v1/nodes/n1"));
        assert!(!heartbeat(
            "PATCH",
            "/api/v1/namespaces/default/pods/p/status"
        ));
        let other_lease = "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1";
        assert!(!heartbeat("PUT", other_lease));
    }

    #[tokio::test]
    async fn unlimited_pools_count_nothing() {
        let inflight = Inflight::new(&Limits {
            max_requests_inflight: 0,
            max_mutating_requests_inflight: 0,
            ..Limits::default()
        });
        assert!(matches!(
            inflight.admit(RequestKind::Mutating, false, &[]).await,
            Ok(None)
        ));
    }

    #[test]
    fn caps_leave_files_for_everything_else() {
        let d = Limits::default();
        assert_eq!(connection_caps(&d, Some(1024)), (768, 384, 96));
        assert_eq!(connection_caps(&d, Some(1 << 20)), (4096, 1024, 256));
        assert_eq!(connection_caps(&d, Some(20_000)), (4096, 1024, 256));
        let small = connection_caps(&d, Some(100));
        assert!(small.0 >= 16 && small.1 >= 1 && small.2 >= 1, "{small:?}");
        let set = Limits {
            max_connections: 50,
            max_pending_connections: 80,
            ..Limits::default()
        };
        assert_eq!(connection_caps(&set, Some(1024)), (50, 50, 12));
        let per = Limits {
            max_pending_connections_per_address: 500,
            ..Limits::default()
        };
        assert_eq!(connection_caps(&per, Some(1 << 20)), (4096, 1024, 500));
    }

    #[tokio::test]
    async fn the_oldest_unauthenticated_connection_makes_room() {
        let gate = Gate::new(4, 2, 2);
        let a = gate.admit(LOCAL).await;
        let b = gate.admit(LOCAL).await;
        // The pool of unauthenticated connections is full: the next one evicts `a`.
        let c = gate.admit(LOCAL).await;
        tokio::time::timeout(Duration::from_secs(5), a.evicted())
            .await
            .expect("the oldest is told to close");
        drop(a);
        assert_eq!(gate.counts(), (2, 2));
        // Authenticated connections are never evicted.
        b.authenticated();
        c.handle().authenticated();
        let d = gate.admit(LOCAL).await;
        let e = gate.admit(LOCAL).await;
        assert_eq!(gate.counts(), (4, 2));
        // Every slot taken: the next waits until the oldest unauthenticated one (`d`) goes.
        let gate2 = gate.clone();
        let f = tokio::spawn(async move { gate2.admit(LOCAL).await });
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
