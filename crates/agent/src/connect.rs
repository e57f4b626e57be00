//! Joining a server from another process or machine, as a k3s agent does: the token is
//! `K10<sha256 of the CA bundle>::<user>:<secret>`. The agent fetches the server's CA bundle from
//! `/cacerts` (which needs no credentials), refuses it unless its hash is the token's, and then
//! trusts only that CA. Each node authenticates with HTTP basic authentication, its node name
//! and the token's secret, which the server maps to `system:node:NAME`.

use anyhow::{bail, Context, Result};

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

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetches the server's CA bundle and checks it against the token. The PEM is returned.
pub async fn fetch_ca(server: &str, token: &Token) -> Result<String> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("invalid --server URL {server:?}"))?;
    // Not trusted yet: what it returns is checked against the token's hash below.
    let mut probe = kube::Config::new(url);
    probe.accept_invalid_certs = true;
    let client = kube::Client::try_from(probe).context("an HTTPS client")?;
    let req = http::Request::get("/cacerts")
        .body(Vec::new())
        .context("the /cacerts request")?;
    let pem = client
        .request_text(req)
        .await
        .with_context(|| format!("fetch the CA bundle from {server}/cacerts"))?;
    match &token.ca_hash {
        Some(want) => {
            let got = sha256_hex(pem.as_bytes());
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

/// HTTP/2 connections to the server shared by the simulated nodes of one process, so that
/// 5,000 nodes need a hundred connections rather than tens of thousands (kube's own client
/// speaks HTTP/1.1: a connection per watch). Each node still authenticates every request as
/// itself.
pub struct Transport {
    server: http::Uri,
    connector: Https,
    pools: std::sync::Mutex<Vec<Pool>>,
}

impl Transport {
    /// Connections to `server` trusting `ca_pem` only.
    pub fn new(server: &str, ca_pem: &str) -> Result<Transport> {
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
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http2()
            .wrap_connector(tcp());
        Ok(Transport {
            server: url,
            connector,
            pools: Default::default(),
        })
    }

    /// The client of the `index`th node, named `node`, on its share of the connections.
    pub fn client(&self, index: usize, node: &str, token: &Token) -> Result<kube::Client> {
        use base64::Engine as _;
        let pool = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            let slot = index / NODES_PER_CONNECTION;
            while pools.len() <= slot {
                let pool = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .http2_only(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .http2_keep_alive_interval(std::time::Duration::from_secs(30))
                .build(self.connector.clone());
                pools.push(pool);
            }
            pools[slot].clone()
        };
        let mut auth = http::HeaderValue::try_from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{node}:{}", token.secret))
        ))
        .context("the token as a header")?;
        auth.set_sensitive(true);
        let server = self.server.clone();
        let svc = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
            let pool = pool.clone();
            let target = rebase(&server, req.uri());
            let auth = auth.clone();
            async move {
                *req.uri_mut() = target?;
                req.headers_mut().insert(http::header::AUTHORIZATION, auth);
                pool.request(req).await.map_err(anyhow::Error::new)
            }
        });
        Ok(kube::Client::new(svc, "default"))
    }
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
    let pool: Pool =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .build(connector);
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
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
