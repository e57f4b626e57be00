//! The API benchmark's HTTPS client: the admin kubeconfig's CA and client certificate, and one
//! hyper connection per [`Conn`] speaking HTTP/2 or HTTP/1.1 (chosen by ALPN).
//!
//! hyper's connection-level client is used instead of a pooled one so that the benchmark decides
//! exactly how many TCP+TLS connections exist and how many requests share one: 32 clients are 32
//! connections, and 1,000 HTTP/2 watchers are 1,000 streams over a counted few connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The protocol of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
        }
    }
}

/// Where the API server is and how to authenticate to it, from `<data-dir>/kubeconfig.yaml`.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    authority: String,
    server_name: ServerName<'static>,
    h1: TlsConnector,
    h2: TlsConnector,
}

/// The value of `name:` on the first line of `text` that has it, unquoted.
fn yaml_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .map(|v| v.trim().trim_matches('"'))
}

impl Endpoint {
    /// Reads the kubeconfig Rudder writes (one cluster and one user, certificates embedded as
    /// base64 data, `server: "https://127.0.0.1:PORT"`).
    pub fn from_kubeconfig(path: &Path) -> Result<Endpoint> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
        let b64 = |name: &str| -> Result<Vec<u8>> {
            let v = yaml_field(&text, name)
                .with_context(|| format!("no {name} in {}", path.display()))?;
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .with_context(|| format!("{name} in {} is not base64", path.display()))
        };
        let ca = b64("certificate-authority-data:")?;
        let cert = b64("client-certificate-data:")?;
        let key = b64("client-key-data:")?;
        let server = yaml_field(&text, "server:")
            .with_context(|| format!("no server: in {}", path.display()))?;
        let authority = server
            .strip_prefix("https://")
            .with_context(|| format!("server {server} is not https://"))?
            .trim_end_matches('/')
            .to_string();
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("server {server}: expected https://IP:PORT"))?;

        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.context("CA certificate PEM")?)?;
        }
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .context("client certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(&key).context("client key PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let base = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("client certificate and key")?;
        let with_alpn = |alpn: &[u8]| {
            let mut c = base.clone();
            c.alpn_protocols = vec![alpn.to_vec()];
            TlsConnector::from(Arc::new(c))
        };
        Ok(Endpoint {
            addr,
            authority,
            server_name: ServerName::IpAddress(addr.ip().into()),
            h1: with_alpn(b"http/1.1"),
            h2: with_alpn(b"h2"),
        })
    }

    /// Opens one TCP+TLS connection speaking `proto`.
    pub async fn connect(&self, proto: Proto) -> Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let connector = match proto {
            Proto::H1 => &self.h1,
            Proto::H2 => &self.h2,
        };
        let tls = connector
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.addr))?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let inner = match proto {
            Proto::H2 => {
                if alpn.as_deref() != Some(b"h2") {
                    bail!("the server did not agree to HTTP/2 (ALPN {alpn:?})");
                }
                let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .context("HTTP/2 handshake")?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Inner::H2(send)
            }
            Proto::H1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .context("HTTP/1.1 handshake")?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Inner::H1(send)
            }
        };
        Ok(Conn {
            inner,
            authority: self.authority.clone(),
        })
    }
}

enum Inner {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One connection. HTTP/2 connections can be cloned to multiplex requests over them; an
/// HTTP/1.1 connection carries one request at a time.
pub struct Conn {
    inner: Inner,
    authority: String,
}

impl Conn {
    /// A second handle on the same HTTP/2 connection (another stream), if this is HTTP/2.
    pub fn share(&self) -> Option<Conn> {
        match &self.inner {
            Inner::H2(s) => Some(Conn {
                inner: Inner::H2(s.clone()),
                authority: self.authority.clone(),
            }),
            Inner::H1(_) => None,
        }
    }

    /// Sends a request and returns the response head with its body still streaming.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let mut b = Request::builder().method(method);
        b = match &self.inner {
            // HTTP/2 takes :scheme and :authority from an absolute URI.
            Inner::H2(_) => b.uri(format!("https://{}{path}", self.authority)),
            Inner::H1(_) => b.uri(path).header(HOST, &self.authority),
        };
        if let Some(a) = accept {
            b = b.header(ACCEPT, a);
        }
        if body.is_some() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        let req = b.body(Full::new(body.unwrap_or_default()))?;
        let resp = match &mut self.inner {
            Inner::H1(s) => {
                s.ready().await.context("connection closed")?;
                s.send_request(req).await?
            }
            Inner::H2(s) => {
                s.ready().await.context("connection closed")?;
                s.send_request(req).await?
            }
        };
        Ok(resp)
    }

    /// Sends a request and reads the whole response body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        accept: Option<&str>,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body, accept).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok((status, body))
    }

    /// GET `path`, expecting 200; returns the body.
    pub async fn get_ok(&mut self, path: &str, accept: Option<&str>) -> Result<Bytes> {
        let (status, body) = self.call(Method::GET, path, None, accept).await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        Ok(body)
    }

    /// POST `body` to `path`, expecting 201 Created.
    pub async fn create(&mut self, path: &str, body: Bytes) -> Result<()> {
        let (status, resp) = self.call(Method::POST, path, Some(body), None).await?;
        if status != StatusCode::CREATED {
            bail!(
                "POST {path}: {status}: {}",
                String::from_utf8_lossy(&resp[..resp.len().min(500)])
            );
        }
        Ok(())
    }
}
