//! `exec`, `attach` and `portForward` on the node's server: the session is handed to the
//! runtime's own streaming server (containerd's, at the URL its CRI Exec, Attach or
//! PortForward call gives), in whichever protocol the client speaks:
//!
//! - SPDY/3.1 (kubectl before 1.30 for exec and 1.31 for port-forward) and the WebSocket
//!   `v4.channel.k8s.io` family (the Python client, older tools): the runtime's server speaks
//!   these itself, so the upgrade is passed through and the bytes copied both ways;
//! - WebSocket `v5.channel.k8s.io` (kubectl 1.30+ exec, attach and cp), which the runtime's
//!   server does not know: translated here, each channel to its SPDY stream (v5's close
//!   signal half-closes stdin, which v4 over WebSocket cannot say);
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+ port-forward): SPDY tunnelled in
//!   WebSocket binary messages, unwrapped here.
//!
//! At most [`MAX_SESSIONS`] run at once on a node; a WebSocket message may be at most
//! [`MAX_MESSAGE`] bytes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::runtime::{ContainerState, Runtime, StreamIo, StreamRequest};
use crate::serve::{self, Body};
use crate::spdy::{self, Frame};

/// Sessions served at once on a node.
pub const MAX_SESSIONS: usize = 256;
/// The largest WebSocket message taken from a client.
pub const MAX_MESSAGE: usize = 1 << 20;
const V5: &str = "v5.channel.k8s.io";
const SPDY_UPGRADE: &str = "SPDY/3.1";
const TUNNEL_PREFIX: &str = "SPDY/3.1+";
/// The v5 channels and the v4 SPDY stream types they stand for.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
const STREAM_TYPES: [&str; 5] = ["stdin", "stdout", "stderr", "error", "resize"];

static SESSIONS: Semaphore = Semaphore::const_new(MAX_SESSIONS);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// The upstream kubelet's names for the streams of an exec or attach: `input`, `output`,
/// `error`, `tty`.
fn stream_io(q: &[(String, String)]) -> StreamIo {
    let tty = serve::flag(q, "tty");
    StreamIo {
        stdin: serve::flag(q, "input"),
        stdout: serve::flag(q, "output"),
        stderr: serve::flag(q, "error") && !tty,
        tty,
    }
}

/// The ports of a port-forward: `port` parameters, each a number or a comma-separated list.
fn ports(q: &[(String, String)]) -> Result<Vec<i32>, String> {
    let mut out = Vec::new();
    for (_, v) in q.iter().filter(|(k, _)| k == "port") {
        for p in v.split(',') {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => out.push(i32::from(n)),
                _ => return Err(format!("unable to parse {p:?} as a port")),
            }
        }
    }
    Ok(out)
}

/// A request header's comma-separated values, over every line of it.
fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Serves an exec, attach (`container` given) or port-forward of pod `ns/pod`.
pub async fn serve(
    runtime: Arc<dyn Runtime>,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    q: &[(String, String)],
    mut req: Request<Incoming>,
) -> Response<Body> {
    let upgrade = values(req.headers(), "upgrade").next().unwrap_or_default();
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    if !websocket && !upgrade.eq_ignore_ascii_case(SPDY_UPGRADE) {
        return serve::bad_request("Upgrade request required".into());
    }
    let Ok(permit) = SESSIONS.try_acquire() else {
        return serve::status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!("this node already serves {MAX_SESSIONS} streaming sessions"),
        );
    };
    permit.forget();
    let permit = Permit;
    let sandbox = match serve::pod_sandbox(&runtime, ns, pod).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let io = stream_io(q);
    let request = match (kind, container) {
        (Kind::PortForward, _) => match ports(q) {
            Ok(ports) => StreamRequest::PortForward {
                sandbox_id: sandbox.id.clone(),
                ports,
            },
            Err(why) => return serve::bad_request(why),
        },
        (_, Some(name)) => {
            let running = match runtime.list_containers(&sandbox.id).await {
                Ok(all) => all
                    .into_iter()
                    .find(|c| c.name == name && matches!(c.state, ContainerState::Running { .. })),
                Err(e) => return serve::internal(e),
            };
            let Some(c) = running else {
                return serve::status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("container not found ({name:?})"),
                );
            };
            if !(io.stdin || io.stdout || io.stderr) {
                return serve::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr".into(),
                );
            }
            if kind == Kind::Exec {
                let command: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect();
                if command.is_empty() {
                    return serve::bad_request(
                        "you must specify at least one command for the container".into(),
                    );
                }
                StreamRequest::Exec {
                    container_id: c.id,
                    command,
                    io,
                }
            } else {
                StreamRequest::Attach {
                    container_id: c.id,
                    io,
                }
            }
        }
        (_, None) => return serve::bad_request("a container name is required".into()),
    };
    let url = match runtime.stream_url(&request).await {
        Ok(u) => u,
        Err(e) => return serve::internal(e),
    };
    let mut url: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return serve::internal(format!("the runtime's streaming URL {url:?}: {e}")),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return serve::bad_request("the connection cannot be upgraded".into());
    };
    let headers = req.headers();
    let protocols: Vec<&str> = values(headers, "sec-websocket-protocol").collect();
    let key = headers.get("sec-websocket-key").cloned();
    let session = |protocol: &str| {
        tracing::info!(pod = %format!("{ns}/{pod}"), ?kind, protocol, "streaming session");
    };
    if websocket && kind != Kind::PortForward && protocols.contains(&V5) {
        session(V5);
        let Some(key) = key else {
            return serve::bad_request("Sec-WebSocket-Key is missing".into());
        };
        return translate_v5(url, io, key, on_upgrade, permit).await;
    }
    let tunnelled: Vec<&str> = protocols
        .iter()
        .filter_map(|p| p.strip_prefix(TUNNEL_PREFIX))
        .collect();
    if websocket && kind == Kind::PortForward && !tunnelled.is_empty() {
        session("SPDY/3.1 tunnelled in WebSocket");
        let Some(key) = key else {
            return serve::bad_request("Sec-WebSocket-Key is missing".into());
        };
        return tunnel(url, &tunnelled, key, on_upgrade, permit).await;
    }
    if websocket && kind == Kind::PortForward {
        // The runtime's server reads a WebSocket port-forward's ports from its own URL.
        let mut query = form_urlencoded::Serializer::new(String::new());
        for p in ports(q).unwrap_or_default() {
            query.append_pair("port", &p.to_string());
        }
        let path = format!("{}?{}", url.path(), query.finish());
        let mut parts = url.into_parts();
        parts.path_and_query = path.parse().ok();
        url = match http::Uri::from_parts(parts) {
            Ok(u) => u,
            Err(e) => return serve::internal(e),
        };
    }
    session(if websocket {
        "WebSocket, passed through"
    } else {
        SPDY_UPGRADE
    });
    pass_through(url, req.method().clone(), headers, on_upgrade, permit).await
}

/// One session's place among [`MAX_SESSIONS`], given back when the session ends.
struct Permit;

impl Drop for Permit {
    fn drop(&mut self) {
        SESSIONS.add_permits(1);
    }
}

/// Opens an upgraded connection to the runtime's streaming server at `url`: the answer's
/// headers and the connection, or the answer to give the client when it refused.
async fn upgrade_backend(
    url: &http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Result<(HeaderMap, Upgraded), Response<Body>> {
    let authority = url.authority().map(|a| a.to_string()).unwrap_or_default();
    let unreachable = |e: &dyn std::fmt::Display| {
        serve::internal(format!(
            "the runtime's streaming server at {authority}: {e}"
        ))
    };
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    *req.headers_mut() = headers;
    if let Ok(host) = HeaderValue::from_str(&authority) {
        req.headers_mut().insert(header::HOST, host);
    }
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let text = Limited::new(body, 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // The runtime's server answers a Status (or text) saying why.
        let message = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).trim().to_string());
        return Err(serve::status(parts.status, "InternalError", message));
    }
    let headers = resp.headers().clone();
    let upgraded = hyper::upgrade::on(resp)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok((headers, upgraded))
}

fn switching(
    headers: impl IntoIterator<Item = (header::HeaderName, HeaderValue)>,
) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().extend(headers);
    resp
}

/// The client's own protocol is the runtime server's too: its upgrade goes through as it
/// came, and the bytes are copied both ways.
async fn pass_through(
    url: http::Uri,
    method: Method,
    headers: &HeaderMap,
    on_upgrade: OnUpgrade,
    permit: Permit,
) -> Response<Body> {
    let forwarded: HeaderMap = headers
        .iter()
        .filter(|(name, _)| rudder_api::upgrade::is_upgrade_header(name.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let (answer, backend) = match upgrade_backend(&url, method, forwarded).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Ok(client) = on_upgrade.await {
            let _ = tokio::io::copy_bidirectional(
                &mut TokioIo::new(client),
                &mut TokioIo::new(backend),
            )
            .await;
        }
    });
    switching(
        answer
            .iter()
            .filter(|(n, _)| *n != header::CONTENT_LENGTH)
            .map(|(n, v)| (n.clone(), v.clone())),
    )
}

fn spdy_upgrade(protocols: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
    for p in protocols {
        if let Ok(v) = HeaderValue::from_str(p) {
            h.append("x-stream-protocol-version", v);
        }
    }
    h
}

fn websocket_accept(key: &HeaderValue, protocol: &str) -> Response<Body> {
    let accept = derive_accept_key(key.as_bytes());
    let mut headers = vec![
        (header::CONNECTION, HeaderValue::from_static("Upgrade")),
        (header::UPGRADE, HeaderValue::from_static("websocket")),
    ];
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.push((header::SEC_WEBSOCKET_ACCEPT, v));
    }
    if let Ok(v) = HeaderValue::from_str(protocol) {
        headers.push((header::SEC_WEBSOCKET_PROTOCOL, v));
    }
    switching(headers)
}

async fn server_websocket(on_upgrade: OnUpgrade) -> Option<WebSocketStream<TokioIo<Upgraded>>> {
    let io = on_upgrade.await.ok()?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

/// Exec or attach over WebSocket v5, translated to SPDY v4 streams to the runtime's server.
async fn translate_v5(
    url: http::Uri,
    io: StreamIo,
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    permit: Permit,
) -> Response<Body> {
    let (_, backend) =
        match upgrade_backend(&url, Method::POST, spdy_upgrade(&["v4.channel.k8s.io"])).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
    let (read, write) = tokio::io::split(TokioIo::new(backend));
    let mut writer = match spdy::Writer::new(write) {
        Ok(w) => w,
        Err(e) => return serve::internal(e),
    };
    // One SPDY stream per channel in use, its id the channel's place.
    let wanted = [io.stdin, io.stdout, io.stderr, true, io.tty];
    let mut ids = [0u32; 5];
    let mut next = 1;
    for (ch, _) in wanted.iter().enumerate().filter(|(_, w)| **w) {
        ids[ch] = next;
        let frame = Frame::SynStream {
            id: next,
            fin: false,
            headers: vec![("streamtype".into(), STREAM_TYPES[ch].into())],
        };
        if let Err(e) = writer.write(&frame).await {
            return serve::internal(e);
        }
        next += 2;
    }
    tokio::spawn(async move {
        let _permit = permit;
        let Some(mut ws) = server_websocket(on_upgrade).await else {
            return;
        };
        // As upstream: an empty message on the first stream the client reads says it is ready.
        let first = if io.stdout {
            STDOUT
        } else if io.stderr {
            STDERR
        } else {
            ERROR
        };
        if ws
            .send(Message::Binary(Bytes::from(vec![first])))
            .await
            .is_err()
        {
            return;
        }
        let (tx, mut frames) = mpsc::channel(16);
        let reader = tokio::spawn(read_frames(spdy::Reader::new(read), tx));
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    // As upstream, a text message is taken as its bytes.
                    Some(Ok(msg @ (Message::Binary(_) | Message::Text(_)))) => {
                        let data = msg.into_data();
                        let frame = match data.first() {
                            Some(&CLOSE) if data.get(1) == Some(&STDIN) && ids[0] != 0 => {
                                Frame::Data { id: ids[0], fin: true, data: Bytes::new() }
                            }
                            Some(&ch @ (STDIN | RESIZE)) if ids[ch as usize] != 0 => {
                                Frame::Data { id: ids[ch as usize], fin: false, data: data.slice(1..) }
                            }
                            _ => continue,
                        };
                        if writer.write(&frame).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                frame = frames.recv() => match frame {
                    Some(Frame::Data { id, data, .. }) => {
                        let Some(ch) = ids.iter().position(|&i| i == id) else { continue };
                        if data.is_empty() {
                            continue;
                        }
                        let mut msg = BytesMut::with_capacity(data.len() + 1);
                        msg.extend_from_slice(&[ch as u8]);
                        msg.extend_from_slice(&data);
                        if ws.send(Message::Binary(msg.freeze())).await.is_err() {
                            break;
                        }
                    }
                    Some(Frame::Ping(id)) => {
                        if writer.write(&Frame::Ping(id)).await.is_err() {
                            break;
                        }
                    }
                    Some(Frame::SynStream { id, .. }) => {
                        let refuse = Frame::RstStream { id, status: spdy::REFUSED_STREAM };
                        if writer.write(&refuse).await.is_err() {
                            break;
                        }
                    }
                    Some(Frame::GoAway { .. }) | None => {
                        // The runtime's server is done: the status went out on the error
                        // channel before.
                        let _ = ws.close(Some(normal_close())).await;
                        break;
                    }
                    Some(_) => {}
                },
            }
        }
        reader.abort();
        let _ = writer.shutdown().await;
    });
    websocket_accept(&key, V5)
}

/// The close a finished session ends with (clients take any other as an error).
fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

/// Reads SPDY frames into `tx` until the connection ends or fails.
async fn read_frames<R: tokio::io::AsyncRead + Unpin>(
    mut reader: spdy::Reader<R>,
    tx: mpsc::Sender<Frame>,
) {
    loop {
        match reader.read().await {
            Ok(Some(frame)) => {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "reading from the runtime's streaming server");
                return;
            }
        }
    }
}

/// kubectl 1.31+'s port-forward: SPDY carried in WebSocket binary messages, unwrapped into
/// an SPDY upgrade of the runtime's server.
async fn tunnel(
    url: http::Uri,
    protocols: &[&str],
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    permit: Permit,
) -> Response<Body> {
    let (answer, backend) = match upgrade_backend(&url, Method::POST, spdy_upgrade(protocols)).await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let negotiated = answer
        .get("x-stream-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("portforward.k8s.io")
        .to_string();
    tokio::spawn(async move {
        let _permit = permit;
        let Some(mut ws) = server_websocket(on_upgrade).await else {
            return;
        };
        let mut backend = TokioIo::new(backend);
        let mut buf = vec![0u8; 32 << 10];
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(data))) => {
                        if backend.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                n = backend.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = ws.close(Some(normal_close())).await;
                        break;
                    }
                    Ok(n) => {
                        if ws.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = backend.shutdown().await;
    });
    websocket_accept(&key, &format!("{TUNNEL_PREFIX}{negotiated}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn streams_and_ports_are_read_as_the_kubelet_reads_them() {
        let io = stream_io(&q(&[
            ("input", "1"),
            ("output", "1"),
            ("error", "1"),
            ("tty", "1"),
        ]));
        assert_eq!(
            io,
            StreamIo {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        assert_eq!(
            ports(&q(&[("port", "80,8080"), ("port", "9")])),
            Ok(vec![80, 8080, 9])
        );
        assert!(ports(&q(&[("port", "0")])).is_err());
        assert!(ports(&q(&[("port", "70000")])).is_err());
        assert!(ports(&q(&[("port", "")])).is_err());
    }
}
