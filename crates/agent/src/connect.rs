//! Joining a server from another process or machine, as a k3s agent does: the token is
//! `K10<sha256 of the CA bundle>::<user>:<secret>`. The agent fetches the server's CA bundle from
//! `/cacerts` (which needs no credentials), refuses it unless its hash is the token's, and then
//! trusts only that CA. With the token's secret as a bearer token it then asks for its
//! certificates ([`join`], see [`crate::identity`]) and talks to the server with its client
//! certificate from then on; simulated nodes use HTTP basic authentication with their name and
//! node password instead.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rudder_api::join::{JoinRequest, JoinResponse};

/// A parsed join token.
#[derive(Clone, Debug)]
pub struct Token {
    /// The CA hash the token carries; `None` for a bare secret.
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl Token {
    pub fn parse(token: &str) -> Result<Token> {
        let token = token.trim();
        if token.is_empty() {
            bail!("the token is empty");
        }
        let Some(rest) = token.strip_prefix("K10") else {
            return Ok(Token {
                ca_hash: None,
                secret: token.to_string(),
            });
        };
        let (hash, cred) = rest
            .split_once("::")
            .context("invalid token: K10 token without \"::\" after the CA hash")?;
        let (_, secret) = cred
            .split_once(':')
            .context("invalid token: K10 token without \"<user>:<secret>\" after \"::\"")?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("invalid token: the CA hash is not 64 hexadecimal digits");
        }
        if secret.is_empty() {
            bail!("invalid token: the secret is empty");
        }
        Ok(Token {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_string(),
        })
    }
}

/// Fetches the server's CA bundle and checks it against the token. The PEM is returned.
pub async fn fetch_ca(server: &str, token: &Token) -> Result<String> {
    use http_body_util::BodyExt as _;
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("invalid --server URL {server:?}"))?;
    // Not trusted yet: what it returns is checked against the token's hash below.
    let tls = rudder_api::tls::client_without_verification(None).context("TLS")?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(tcp());
    let client = h2_pool(connector);
    let uri = rebase(&url, &http::Uri::from_static("/cacerts"))?;
    let req = http::Request::get(uri)
        .body(kube::client::Body::from(Vec::new()))
        .context("the /cacerts request")?;
    let fetch = async {
        let resp = client.request(req).await?;
        if !resp.status().is_success() {
            bail!("{}", resp.status());
        }
        // A CA bundle is a few KiB.
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(String::from_utf8(body.to_bytes().to_vec())?)
    };
    let pem = tokio::time::timeout(std::time::Duration::from_secs(30), fetch)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r)
        .with_context(|| format!("fetch the CA bundle from {server}/cacerts"))?;
    match &token.ca_hash {
        Some(want) => {
            let got = rudder_api::tls::sha256_hex(pem.as_bytes());
            if &got != want {
                bail!(
                    "the server's CA bundle (sha256 {got}) is not the one the token names \
                     ({want}): wrong server, wrong token, or someone in between; not joining"
                );
            }
        }
        None => tracing::warn!(
            "the token is a bare secret without the CA hash (K10<hash>::…), so the server's CA \
             cannot be verified; use the full token from <data-dir>/server/node-token"
        ),
    }
    Ok(pem)
}

/// How many simulated nodes share one HTTP/2 connection: each holds two watches (its pods, its
/// Node) and sends a request now and then, within the server's 250 streams per connection.
const NODES_PER_CONNECTION: usize = 80;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Pool = hyper_util::client::legacy::Client<Https, kube::client::Body>;

/// HTTP/2 connections to the server, trusting only the cluster CA: one for a node with a
/// client certificate, a few shared by the simulated nodes of one process, so that 5,000
/// nodes need a hundred connections rather than tens of thousands (kube's own client speaks
/// HTTP/1.1: a connection per watch). Each simulated node still authenticates every request
/// as itself.
pub struct Transport {
    server: http::Uri,
    connector: Https,
    pools: std::sync::Mutex<Vec<Pool>>,
}

impl Transport {
    /// Connections to `server` trusting `ca_pem` only, presenting the client certificate in
    /// `identity` (if any) as it is at each handshake.
    pub fn new(
        server: &str,
        ca_pem: &str,
        identity: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
    ) -> Result<Arc<Transport>> {
        let url: http::Uri = server
            .parse()
            .with_context(|| format!("invalid --server URL {server:?}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certificates(ca_pem) {
            roots
                .add(rustls::pki_types::CertificateDer::from(der))
                .context("the server's CA certificate")?;
        }
        if roots.is_empty() {
            bail!("the server's CA bundle holds no certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
        let tls = match identity {
            Some(resolver) => tls.with_client_cert_resolver(resolver),
            None => tls.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http2()
            .wrap_connector(tcp());
        Ok(Arc::new(Transport {
            server: url,
            connector,
            pools: Default::default(),
        }))
    }

    /// The connections of the `index`th client (a new one every [`NODES_PER_CONNECTION`]).
    fn pool(&self, index: usize) -> Pool {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let slot = index / NODES_PER_CONNECTION;
        while pools.len() <= slot {
            pools.push(h2_pool(self.connector.clone()));
        }
        pools[slot].clone()
    }

    /// Drops the connections: requests from now on make new ones (with a renewed client
    /// certificate); those in flight (watches) finish on the old ones.
    pub fn reconnect(&self) {
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The client of the `index`th node; `basic` is a simulated node's name and password, or
    /// `None` for the node whose client certificate the transport presents.
    pub fn client(
        self: &Arc<Self>,
        index: usize,
        basic: Option<(&str, &str)>,
    ) -> Result<kube::Client> {
        use base64::Engine as _;
        let auth = match basic {
            Some((node, password)) => {
                let mut h = http::HeaderValue::try_from(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{node}:{password}"))
                ))
                .context("the node password as a header")?;
                h.set_sensitive(true);
                Some(h)
            }
            None => None,
        };
        let transport = self.clone();
        let svc = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
            let pool = transport.pool(index);
            let target = rebase(&transport.server, req.uri());
            let auth = auth.clone();
            async move {
                *req.uri_mut() = target?;
                if let Some(auth) = auth {
                    req.headers_mut().insert(http::header::AUTHORIZATION, auth);
                }
                pool.request(req).await.map_err(anyhow::Error::new)
            }
        });
        Ok(kube::Client::new(svc, "default"))
    }
}

/// Asks `server` (trusting `ca_pem` only) for a node's certificates, or only registers its
/// password, with the token's secret as the bearer token.
pub async fn join(
    server: &str,
    ca_pem: &str,
    token: &Token,
    req: &JoinRequest,
) -> Result<JoinResponse> {
    let client = Transport::new(server, ca_pem, None)?.client(0, None)?;
    let mut bearer = http::HeaderValue::try_from(format!("Bearer {}", token.secret))
        .context("the token as a header")?;
    bearer.set_sensitive(true);
    let request = http::Request::post(rudder_api::join::PATH)
        .header(http::header::AUTHORIZATION, bearer)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(req)?)
        .context("the join request")?;
    client.request(request).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 401 => anyhow::anyhow!(
            "the server refused the token (401 Unauthorized): check --token against \
             <data-dir>/server/node-token on the server"
        ),
        kube::Error::Api(s) => anyhow::anyhow!(
            "the server refused to join node {:?}: {}",
            req.node_name,
            s.message
        ),
        e => anyhow::Error::new(e).context(format!("reach the server at {server}")),
    })
}

/// A client for `config` (a kubeconfig's cluster and credentials) whose requests share one
/// HTTP/2 connection. kube's own client speaks HTTP/1.1, one connection per request in
/// flight: a scheduler with hundreds of bindings in flight would open hundreds of connections,
/// more than the server lets one address handshake at once.
pub fn http2_client(config: kube::Config) -> Result<kube::Client> {
    use kube::client::ConfigExt as _;
    let tls = config
        .rustls_client_config()
        .context("TLS settings of the kubeconfig")?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(tcp());
    let pool = h2_pool(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(tower::ServiceExt::map_err(
            pool,
            |e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) },
        ));
    Ok(kube::Client::new(service, config.default_namespace))
}

/// HTTP/2 connections over `connector`, pinged every 30 s (a server gone silent is noticed).
fn h2_pool(connector: Https) -> Pool {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .build(connector)
}

/// The TCP side of the connections to the server, with Nagle's algorithm off (as Go's and
/// Python's clients have it): HTTP/2 writes a request's HEADERS and DATA frames apart, and
/// the DATA would otherwise wait for the server's delayed ACK of the HEADERS, 40 ms on Linux,
/// on every write (a pod's status patch took 44 ms instead of 1).
fn tcp() -> hyper_util::client::legacy::connect::HttpConnector {
    let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
    c.enforce_http(false);
    c.set_nodelay(true);
    c
}

/// `uri`'s path and query on `server`.
fn rebase(server: &http::Uri, uri: &http::Uri) -> Result<http::Uri> {
    let base = server.path().trim_end_matches('/');
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut parts = server.clone().into_parts();
    parts.path_and_query = Some(format!("{base}{pq}").parse()?);
    Ok(http::Uri::from_parts(parts)?)
}

/// The DER bodies of the PEM `CERTIFICATE` blocks in `pem`.
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b) = body.take() {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b) {
                    out.push(der);
                }
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_k3s_writes_them() {
        let hash = "ab".repeat(32);
        let t = Token::parse(&format!("K10{hash}::server:s3cret")).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(t.secret, "s3cret");
        let bare = Token::parse("s3cret").unwrap();
        assert_eq!(bare.ca_hash, None);
        for bad in [
            "",
            "K10abc::server:x",
            "K10nohash",
            &format!("K10{hash}::server:"),
        ] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            rudder_api::tls::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
