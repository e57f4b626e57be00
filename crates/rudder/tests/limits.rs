//! What a client may hold of the server: idle sockets cannot lock out authenticated clients,
//! stalled handshakes, headers, bodies and idle connections are closed while watches are not,
//! and requests beyond the in-flight limits get 429 with `Retry-After`.
//!
//! Every wait here ends on an event (a socket closing, an answer); [`GUARD`] only bounds a
//! test that would otherwise hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rudder_testkit::RudderServer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How long a wait that should end much sooner may last before the test fails.
const GUARD: Duration = Duration::from_secs(30);

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rudder() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

fn addr(s: &RudderServer) -> SocketAddr {
    s.url
        .trim_start_matches("https://")
        .parse()
        .unwrap_or_else(|e| panic!("server address in {}: {e}", s.url))
}

/// Lets this process open as many files as its hard limit allows.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a pointer to a struct that lives for the call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Who a request comes from.
#[derive(Clone, Copy)]
enum Who<'a> {
    Anonymous,
    /// The admin client certificate (system:masters).
    Admin,
    /// Node `n1` with its node password (system:nodes, not privileged).
    Node(&'a str),
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_config(s: &RudderServer, admin: bool) -> Arc<rustls::ClientConfig> {
    let tls = s.data_dir().join("server/tls");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(tls.join("ca.crt")).expect("CA certificate"))
        .expect("add the CA");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let mut config = if admin {
        let cert = CertificateDer::from_pem_file(tls.join("client-admin.crt")).expect("admin cert");
        let key = PrivateKeyDer::from_pem_file(tls.join("client-admin.key")).expect("admin key");
        builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client certificate")
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTP/1.1-over-TLS connection, handshake done.
fn connect(s: &RudderServer, who: Who) -> Tls {
    let tcp = TcpStream::connect(addr(s)).expect("connect");
    tcp.set_read_timeout(Some(GUARD)).expect("read timeout");
    let conn = rustls::ClientConnection::new(
        tls_config(s, matches!(who, Who::Admin)),
        ServerName::try_from("127.0.0.1").expect("server name"),
    )
    .expect("TLS client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

fn head(method: &str, path: &str, who: Who, extra: &str) -> String {
    let auth = match who {
        Who::Node(t) => {
            use base64::Engine as _;
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("n1:{t}"));
            format!("Authorization: Basic {creds}\r\n")
        }
        _ => String::new(),
    };
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}\r\n")
}

/// A parsed response.
#[derive(Debug)]
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answer is not JSON ({e}): {}",
                self.code,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response's status line and headers, and the body if `with_body`.
fn read_answer(tls: &mut Tls, with_body: bool) -> Answer {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!(
                "connection ended in a response head ({other:?}): {}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut a = Answer {
        code,
        headers,
        body: Vec::new(),
    };
    if !with_body {
        return a;
    }
    if let Some(n) = a
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        a.body = vec![0; n];
        tls.read_exact(&mut a.body).expect("response body");
    } else if a
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        while let Some(chunk) = read_chunk(tls) {
            a.body.extend_from_slice(&chunk);
        }
    }
    a
}

/// The next chunk of a chunked body; None at its end.
fn read_chunk(tls: &mut Tls) -> Option<Vec<u8>> {
    let size = read_line(tls);
    let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
    let mut chunk = vec![0; size + 2];
    tls.read_exact(&mut chunk).expect("chunk");
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

fn read_line(tls: &mut Tls) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match tls.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("connection ended in a line ({other:?})"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// One request on a new connection.
fn request(s: &RudderServer, who: Who, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut tls = connect(s, who);
    let extra = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    tls.write_all(head(method, path, who, &extra).as_bytes())
        .expect("send head");
    tls.write_all(body).expect("send body");
    tls.flush().expect("flush");
    read_answer(&mut tls, true)
}

/// Asserts the server closed the connection: a read ends (EOF or reset) rather than waiting.
#[track_caller]
fn assert_closed<R: Read>(conn: &mut R, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            // Whatever the server said before closing (nothing is expected, but a TLS alert
            // or an error page would be fine).
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the server kept the connection open")
            }
            Err(_) => return,
        }
    }
}

/// Calls `f` until it returns Some.
#[track_caller]
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn assert_too_many_requests(a: &Answer) {
    assert_eq!(a.code, 429, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("retry-after"), Some("1"), "{:?}", a.headers);
    let st = a.json();
    assert_eq!(st["kind"], "Status", "{st}");
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "TooManyRequests", "{st}");
    assert_eq!(st["code"], 429, "{st}");
    assert_eq!(
        st["message"], "Too many requests, please try again later.",
        "{st}"
    );
    assert_eq!(st["details"]["retryAfterSeconds"], 1, "{st}");
}

#[test]
fn idle_sockets_do_not_lock_out_authenticated_clients() {
    raise_nofile();
    // The server gets the usual 1,024 open files (it cannot raise them): 1,100 idle sockets
    // would take every one of them if it let them.
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = dir.path().join("rudder-with-1024-files");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -n 1024 || exit 1\nexec '{}' \"$@\"\n",
            rudder().display()
        ),
    )
    .expect("write wrapper");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
    let s = RudderServer::api_only(&wrapper, &[]).expect("start rudder server");
    let mut idle: Vec<TcpStream> = (0..1100)
        .map(|i| TcpStream::connect(addr(&s)).unwrap_or_else(|e| panic!("idle socket {i}: {e}")))
        .collect();
    // The admin, through the real kubectl, is served while they are open.
    let out = s
        .kubectl(&["get", "namespaces", "-o", "name", "--request-timeout=60s"])
        .ok();
    assert!(out.contains("namespace/default"), "{out}");
    let a = request(&s, Who::Admin, "GET", "/api/v1/namespaces", b"");
    assert_eq!(a.code, 200, "{}", String::from_utf8_lossy(&a.body));
    // The oldest idle sockets were closed to make room.
    idle[0].set_read_timeout(Some(GUARD)).expect("read timeout");
    assert_closed(&mut idle[0], "the oldest idle socket");
}

#[test]
fn stalled_clients_are_disconnected() {
    let s = RudderServer::api_only(
        rudder(),
        &[
            "--tls-handshake-timeout=1s",
            "--request-header-timeout=1s",
            "--idle-connection-timeout=1s",
            "--request-body-timeout=1s",
        ],
    )
    .expect("start rudder server");
    // A socket that never starts TLS.
    let mut tcp = TcpStream::connect(addr(&s)).expect("connect");
    tcp.set_read_timeout(Some(GUARD)).expect("read timeout");
    assert_closed(&mut tcp, "a socket without a TLS handshake");
    // TLS, then no request.
    let mut tls = connect(&s, Who::Anonymous);
    assert_closed(&mut tls, "a connection that sends no request");
    // Half a request header.
    let mut tls = connect(&s, Who::Admin);
    tls.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
        .expect("send half a header");
    tls.flush().expect("flush");
    assert_closed(&mut tls, "a connection that stalls in a header");
    // A keep-alive connection after its request.
    let mut tls = connect(&s, Who::Admin);
    tls.write_all(head("GET", "/api/v1/namespaces", Who::Admin, "").as_bytes())
        .expect("send request");
    tls.flush().expect("flush");
    let a = read_answer(&mut tls, true);
    assert_eq!(a.code, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_closed(&mut tls, "an idle keep-alive connection");
    // A body that stops coming: upstream's request timeout, and nothing written.
    let mut tls = connect(&s, Who::Admin);
    let extra = "Content-Type: application/json\r\nContent-Length: 200\r\n";
    tls.write_all(head("POST", CMS, Who::Admin, extra).as_bytes())
        .expect("send head");
    tls.write_all(br#"{"apiVersion":"v1","kind":"ConfigMap","#)
        .expect("send part of the body");
    tls.flush().expect("flush");
    let a = read_answer(&mut tls, true);
    assert_eq!(a.code, 504, "{}", String::from_utf8_lossy(&a.body));
    let st = a.json();
    assert_eq!(st["reason"], "Timeout", "{st}");
    assert_eq!(st["code"], 504, "{st}");
    let names = s.kubectl(&["get", "cm", "-o", "name"]).ok();
    assert_eq!(names, "", "nothing is written");
    // And the server serves on.
    let a = request(&s, Who::Admin, "GET", "/api/v1/namespaces", b"");
    assert_eq!(a.code, 200);
}

#[test]
fn watches_outlive_the_connection_timeouts() {
    let s = RudderServer::api_only(
        rudder(),
        &[
            "--request-header-timeout=1s",
            "--idle-connection-timeout=1s",
            "--request-body-timeout=1s",
        ],
    )
    .expect("start rudder server");
    s.kubectl(&["create", "configmap", "early"]).ok();
    // A raw HTTP/1.1 watch …
    let mut raw = connect(&s, Who::Admin);
    raw.write_all(head("GET", &format!("{CMS}?watch=true"), Who::Admin, "").as_bytes())
        .expect("send watch");
    raw.flush().expect("flush");
    let a = read_answer(&mut raw, false);
    assert_eq!(a.code, 200);
    // … and kubectl's (HTTP/2), once it is watching.
    let mut kubectl = s
        .kubectl_cmd(rudder_testkit::KUBECTL_DEFAULT_MINOR)
        .args(["get", "configmaps", "--watch", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run kubectl get --watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = kubectl.stdout.take().expect("kubectl stdout");
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(GUARD).expect("kubectl lists");
    assert_eq!(first, "configmap/early");
    // Longer than every timeout the server was given, with nothing to send.
    std::thread::sleep(Duration::from_secs(3));
    s.kubectl(&["create", "configmap", "late"]).ok();
    let line = rx.recv_timeout(GUARD);
    let _ = kubectl.kill();
    let _ = kubectl.wait();
    assert_eq!(line.as_deref(), Ok("configmap/late"));
    let mut seen = String::new();
    while !seen.contains("\"name\":\"late\"") {
        match read_chunk(&mut raw) {
            Some(c) => seen.push_str(&String::from_utf8_lossy(&c)),
            None => panic!("the watch ended: {seen}"),
        }
    }
}

#[test]
fn requests_beyond_the_inflight_limits_get_429() {
    let s = RudderServer::api_only(
        rudder(),
        &[
            "--max-requests-inflight=1",
            "--max-mutating-requests-inflight=1",
        ],
    )
    .expect("start rudder server");
    let password = s.register_node("n1").expect("register node n1");
    let node = Who::Node(&password);
    // What node n1 may do (its pods, events, services), so the limits, not the authorizer,
    // decide the answers below.
    let events = "/api/v1/namespaces/default/events";
    let pods = "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1";
    // Each event is new (a write accepted before the first is held must not make later ones
    // AlreadyExists).
    let event = br#"{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"e-"},"involvedObject":{"kind":"Node","name":"n1"},"reason":"R","message":"m"}"#;

    // A mutating request held in flight by a body that stops coming.
    let mut held_write = connect(&s, node);
    let extra = "Content-Type: application/json\r\nContent-Length: 100\r\n";
    held_write
        .write_all(head("POST", events, node, extra).as_bytes())
        .expect("send head");
    held_write
        .write_all(br#"{"apiVersion":"v1","#)
        .expect("send part of the body");
    held_write.flush().expect("flush");
    let refused = eventually("a second write is refused", || {
        let a = request(&s, node, "POST", events, event);
        (a.code == 429).then_some(a)
    });
    assert_too_many_requests(&refused);
    // Reads have their own pool; health checks and system:masters are never refused.
    assert_eq!(request(&s, node, "GET", "/api/v1/services", b"").code, 200);
    assert_eq!(
        request(&s, Who::Anonymous, "GET", "/healthz", b"").code,
        200
    );
    s.kubectl(&["create", "configmap", "by-admin"]).ok();

    // A read held in flight by a client that does not read its 9 MB answer: node n1's pods.
    for i in 0..40 {
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"big-{i}","annotations":{{"k":"{}"}}}},"spec":{{"nodeName":"n1","containers":[{{"name":"c","image":"i"}}]}}}}"#,
            "x".repeat(240_000)
        );
        let a = request(
            &s,
            Who::Admin,
            "POST",
            "/api/v1/namespaces/default/pods",
            pod.as_bytes(),
        );
        assert_eq!(a.code, 201, "{}", String::from_utf8_lossy(&a.body));
    }
    let mut held_read = connect(&s, node);
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt reads an int that lives for the call, on a socket this test owns.
    let set = unsafe {
        libc::setsockopt(
            held_read.sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUF");
    held_read
        .write_all(head("GET", pods, node, "Connection: close\r\n").as_bytes())
        .expect("send list");
    held_read.flush().expect("flush");
    let refused = eventually("a second read is refused", || {
        let a = request(&s, node, "GET", "/api/v1/services", b"");
        (a.code == 429).then_some(a)
    });
    assert_too_many_requests(&refused);
    // Long-running requests are not counted: a watch is answered, and a log request gets
    // the authorizer's answer (nodes may not read logs), not 429.
    let mut watch = connect(&s, node);
    watch
        .write_all(head("GET", &format!("{pods}&watch=true"), node, "").as_bytes())
        .expect("send watch");
    watch.flush().expect("flush");
    assert_eq!(read_answer(&mut watch, false).code, 200);
    let log = request(
        &s,
        node,
        "GET",
        "/api/v1/namespaces/default/pods/nothing/log",
        b"",
    );
    assert_eq!(log.code, 403, "{}", String::from_utf8_lossy(&log.body));
    assert_eq!(
        request(&s, Who::Admin, "GET", "/api/v1/namespaces", b"").code,
        200
    );
    assert_eq!(request(&s, Who::Anonymous, "GET", "/readyz", b"").code, 200);

    // Clients that go away give their places back.
    drop(held_read);
    eventually("reads are served again", || {
        (request(&s, node, "GET", "/api/v1/services", b"").code == 200).then_some(())
    });
    drop(held_write);
    eventually("writes are served again", || {
        (request(&s, node, "POST", events, event).code == 201).then_some(())
    });
}

/// Upstream's answer to a request that ran out of time, byte for byte.
const TIMEOUT_BODY: &str = "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Timeout: request did not complete within the allotted timeout\",\"reason\":\"Timeout\",\"details\":{},\"code\":504}\n";

/// Sends a create whose body stops coming, and returns the answer.
fn stalled_create(s: &RudderServer, path: &str) -> Answer {
    let mut tls = connect(s, Who::Admin);
    let extra = "Content-Type: application/json\r\nContent-Length: 200\r\n";
    tls.write_all(head("POST", path, Who::Admin, extra).as_bytes())
        .expect("send head");
    tls.write_all(br#"{"apiVersion":"v1","kind":"ConfigMap","#)
        .expect("send part of the body");
    tls.flush().expect("flush");
    read_answer(&mut tls, true)
}

#[track_caller]
fn assert_timed_out(a: &Answer) {
    assert_eq!(a.code, 504, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(String::from_utf8_lossy(&a.body), TIMEOUT_BODY);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{:?}",
        a.headers
    );
}

#[test]
fn requests_that_are_not_answered_in_time_get_504() {
    // The server's bound (--request-timeout), shorter than the body's.
    let s =
        RudderServer::api_only(rudder(), &["--request-timeout=1s"]).expect("start rudder server");
    assert_timed_out(&stalled_create(&s, CMS));
    // A request's `timeout` cannot lengthen it.
    assert_timed_out(&stalled_create(&s, &format!("{CMS}?timeout=1h")));
    assert_eq!(s.kubectl(&["get", "cm", "-o", "name"]).ok(), "");

    // The default bound is a minute (longer than GUARD), so only the request's own `timeout`
    // can end these in time.
    let s = RudderServer::api_only(rudder(), &[]).expect("start rudder server");
    assert_timed_out(&stalled_create(&s, &format!("{CMS}?timeout=1s")));
    assert_timed_out(&stalled_create(
        &s,
        &format!("{CMS}?fieldManager=x&timeout=0.5s"),
    ));
    // kubectl's --request-timeout is sent as that parameter.
    let out = s
        .kubectl(&["get", "namespaces", "-o", "name", "--request-timeout=30s"])
        .ok();
    assert!(out.contains("namespace/default"), "{out}");
    // A `timeout` that does not parse: upstream's 400, before authentication.
    for who in [Who::Admin, Who::Anonymous] {
        let a = request(&s, who, "GET", &format!("{CMS}?timeout=soon"), b"");
        assert_eq!(a.code, 400, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"invalid timeout specified in the request URL - time: invalid duration \\\"soon\\\"\",\"reason\":\"BadRequest\",\"code\":400}\n"
        );
    }
    let a = request(&s, Who::Admin, "GET", &format!("{CMS}?timeout=10"), b"");
    assert_eq!(a.code, 400);
    assert_eq!(
        a.json()["message"],
        "invalid timeout specified in the request URL - time: missing unit in duration \"10\""
    );
    // Watches are long-running: their `timeout` is not looked at, and they outlive the bound.
    let mut watch = connect(&s, Who::Admin);
    watch
        .write_all(
            head(
                "GET",
                &format!("{CMS}?watch=true&timeout=soon"),
                Who::Admin,
                "",
            )
            .as_bytes(),
        )
        .expect("send watch");
    watch.flush().expect("flush");
    assert_eq!(read_answer(&mut watch, false).code, 200);
}

/// A TCP connection to `to` from the local address `from` (any 127.0.0.0/8 address is this
/// host on Linux).
fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd as _;
    let SocketAddr::V4(to) = to else {
        panic!("the server listens on IPv4: {to}")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket this function owns; bind and connect read a sockaddr_in that lives
    // for the call, of the length given; the descriptor is handed to a TcpStream once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(*to.ip(), to.port());
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(
            connected,
            0,
            "connect {to}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

#[test]
fn one_address_cannot_push_out_another_addresses_connections() {
    let s = RudderServer::api_only(
        rudder(),
        &[
            "--max-pending-connections=8",
            "--max-pending-connections-per-address=4",
        ],
    )
    .expect("start rudder server");
    let server = addr(&s);
    // A client on 127.0.0.2 that has done its TLS handshake and not yet sent a request
    // (so not yet authenticated) ...
    let tcp = connect_from("127.0.0.2".parse().expect("address"), server);
    tcp.set_read_timeout(Some(GUARD)).expect("read timeout");
    let conn = rustls::ClientConnection::new(
        tls_config(&s, false),
        ServerName::try_from("127.0.0.1").expect("server name"),
    )
    .expect("TLS client");
    let mut other = rustls::StreamOwned::new(conn, tcp);
    while other.conn.is_handshaking() {
        other
            .conn
            .complete_io(&mut other.sock)
            .expect("TLS handshake");
    }
    // ... and 20 idle sockets from 127.0.0.1, more than the whole unauthenticated pool.
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|i| TcpStream::connect(server).unwrap_or_else(|e| panic!("idle socket {i}: {e}")))
        .collect();
    // Connections are admitted in order: once this one is answered, all of them were.
    let a = request(&s, Who::Admin, "GET", "/api/v1/namespaces", b"");
    assert_eq!(a.code, 200, "{}", String::from_utf8_lossy(&a.body));
    // 127.0.0.1 pushed out its own oldest sockets ...
    idle[0].set_read_timeout(Some(GUARD)).expect("read timeout");
    assert_closed(&mut idle[0], "the oldest idle socket of 127.0.0.1");
    // ... and not the older connection of 127.0.0.2, which is served.
    other
        .write_all(head("GET", "/version", Who::Anonymous, "Connection: close\r\n").as_bytes())
        .expect("send request");
    other.flush().expect("flush");
    let a = read_answer(&mut other, true);
    assert_eq!(a.code, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["gitVersion"].is_string(), "{:?}", a.json());
}
