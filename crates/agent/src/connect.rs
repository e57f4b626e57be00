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

/// The kube-rs configuration of node `node` against `server`, trusting `ca_pem` only.
pub fn node_config(server: &str, ca_pem: &str, node: &str, token: &Token) -> Result<kube::Config> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("invalid --server URL {server:?}"))?;
    let mut cfg = kube::Config::new(url);
    let ders = pem_certificates(ca_pem);
    if ders.is_empty() {
        bail!("the server's CA bundle holds no certificate");
    }
    cfg.root_cert = Some(ders);
    cfg.auth_info.username = Some(node.to_string());
    cfg.auth_info.password = Some(token.secret.clone().into());
    Ok(cfg)
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
