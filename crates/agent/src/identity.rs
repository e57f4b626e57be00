//! A node's identity: the node password that binds its name to this machine, and the two
//! certificates the server signs for it (see `rudder_apiserver::join`): a client certificate
//! (`system:node:NAME` in `system:nodes`) it talks to the API server with, and a serving
//! certificate for its own server (the kubelet port). Their keys are made here and never leave
//! the machine.
//!
//! Everything is kept under `<data-dir>/agent`: `node-password` and `tls/{client,serving}.{crt,key}`
//! (keys mode 0600). Certificates on disk are used again after a restart while they are from
//! the same CA, name the node's addresses and are not yet due; they are due once 70-90% of
//! their lifetime has passed (the kubelet's rotation deadline), and are then renewed with new
//! keys. TLS reads them through a [`Slot`] at each handshake, so a renewal needs no restart.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use rudder_api::join::{JoinRequest, JoinResponse};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// How a node's certificates are asked for: over HTTPS with the token (a joining agent), or in
/// process (the server's own agent).
pub type Issue = Arc<dyn Fn(JoinRequest) -> BoxFuture<'static, Result<JoinResponse>> + Send + Sync>;

const PASSWORD_FILE: &str = "node-password";
const TLS_DIR: &str = "tls";
/// Renewal is retried this often at first, then less often, up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// A certified key that TLS takes as it is at each handshake.
#[derive(Debug)]
pub struct Slot(RwLock<Arc<CertifiedKey>>);

impl Slot {
    fn new(key: Arc<CertifiedKey>) -> Arc<Slot> {
        Arc::new(Slot(RwLock::new(key)))
    }

    /// A slot holding the certificate `cert_pem` with its key `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<Slot>> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("a certificate")?;
        Ok(Slot::new(certified(der, key_pem)?))
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl rustls::client::ResolvesClientCert for Slot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Slot {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Writes `data` to `path` through a temporary file and a rename, with `mode`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// The node password in `agent_dir`, made on first use (64 hex digits, mode 0600).
pub fn node_password(agent_dir: &Path) -> Result<String> {
    let path = agent_dir.join(PASSWORD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(p) if !p.trim().is_empty() => return Ok(p.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_file(&path, password.as_bytes(), 0o600)?;
    Ok(password)
}

/// One certificate and its key, as read or received.
struct Held {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn unix(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0))
}

/// The certificate `cert_pem` with its key `key_pem`, if it is issued by `ca_subject` (DER) and
/// names every one of `names`/`addresses` (nothing for a client certificate).
fn held(
    cert_pem: &str,
    key_pem: &str,
    ca_subject: &[u8],
    name: Option<&str>,
    addresses: &[IpAddr],
) -> Result<Held> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("a certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("a certificate")?;
    if cert.issuer().as_raw() != ca_subject {
        bail!("issued by another CA");
    }
    if let Some(name) = name {
        use x509_parser::extensions::GeneralName;
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| s.value.general_names.clone())
            .unwrap_or_default();
        let has_name = sans
            .iter()
            .any(|g| matches!(g, GeneralName::DNSName(d) if *d == name));
        let ips: Vec<IpAddr> = sans
            .iter()
            .filter_map(|g| match g {
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !has_name || addresses.iter().any(|a| !ips.contains(a)) {
            bail!("does not name the node's name and addresses");
        }
    }
    let validity = cert.validity();
    let (not_before, not_after) = (
        unix(validity.not_before.timestamp()),
        unix(validity.not_after.timestamp()),
    );
    Ok(Held {
        key: certified(der, key_pem)?,
        not_before,
        not_after,
    })
}

/// The certificate `der` with its key `key_pem`, checked to belong together.
fn certified(der: CertificateDer<'static>, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("a private key")?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).context("a private key")?;
    let key = Arc::new(CertifiedKey::new(vec![der], signer));
    key.keys_match()
        .context("the key is not the certificate's")?;
    Ok(key)
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal: at a random
/// point between 70% and 90% of its lifetime, as the kubelet rotates.
fn due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    let share = 0.7 + 0.2 * rand::random::<f64>();
    not_before + life.mul_f64(share)
}

/// The subject of the CA certificate(s) in `ca_pem` (the first one).
fn ca_subject(ca_pem: &str) -> Result<Vec<u8>> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("the cluster CA")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("the cluster CA")?;
    Ok(cert.subject().as_raw().to_vec())
}

/// A node's password and certificates.
pub struct Identity {
    name: String,
    addresses: Vec<IpAddr>,
    password: String,
    dir: PathBuf,
    ca_subject: Vec<u8>,
    /// The client certificate (`system:node:NAME`).
    pub client: Arc<Slot>,
    /// The serving certificate of the node's server.
    pub serving: Arc<Slot>,
    /// When the current certificates are due for renewal.
    renew_at: RwLock<SystemTime>,
}

impl Identity {
    /// The node's identity: its certificates from `agent_dir` if they are still good, else
    /// new ones from `issue`.
    pub async fn obtain(
        agent_dir: &Path,
        name: &str,
        addresses: Vec<IpAddr>,
        ca_pem: &str,
        issue: &Issue,
    ) -> Result<Identity> {
        let password = node_password(agent_dir)?;
        let dir = agent_dir.join(TLS_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let ca_subject = ca_subject(ca_pem)?;
        let stored = Self::load(&dir, &ca_subject, name, &addresses);
        let (client, serving) = match stored {
            Some(pair) => pair,
            None => {
                let req = JoinRequest {
                    node_name: name.to_string(),
                    node_password: password.clone(),
                    addresses: addresses.clone(),
                    ..Default::default()
                };
                Self::request(&dir, &ca_subject, req, issue).await?
            }
        };
        let renew_at = due(client.not_before, client.not_after)
            .min(due(serving.not_before, serving.not_after));
        Ok(Identity {
            name: name.to_string(),
            addresses,
            password,
            dir,
            ca_subject,
            client: Slot::new(client.key),
            serving: Slot::new(serving.key),
            renew_at: RwLock::new(renew_at),
        })
    }

    /// The certificates on disk, if both are good and not due.
    fn load(
        dir: &Path,
        ca_subject: &[u8],
        name: &str,
        addresses: &[IpAddr],
    ) -> Option<(Held, Held)> {
        if !dir.join("client.crt").exists() {
            tracing::info!("this node has no certificates yet: asking the server");
            return None;
        }
        let read = |which: &str, sans: Option<&str>| -> Result<Held> {
            let cert = std::fs::read_to_string(dir.join(format!("{which}.crt")))?;
            let key = std::fs::read_to_string(dir.join(format!("{which}.key")))?;
            let h = held(&cert, &key, ca_subject, sans, addresses)?;
            if due(h.not_before, h.not_after) <= SystemTime::now() {
                bail!("due for renewal");
            }
            Ok(h)
        };
        match (read("client", None), read("serving", Some(name))) {
            (Ok(c), Ok(s)) => Some((c, s)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::info!(reason = %e, "asking the server for new node certificates");
                None
            }
        }
    }

    /// New keys and certificates for them, written to `dir`.
    async fn request(
        dir: &Path,
        ca_subject: &[u8],
        mut req: JoinRequest,
        issue: &Issue,
    ) -> Result<(Held, Held)> {
        let csr = |key: &rcgen::KeyPair| -> Result<String> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                format!("system:node:{}", req.node_name),
            );
            Ok(params.serialize_request(key)?.pem()?)
        };
        let client_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let serving_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        req.client_request = Some(csr(&client_key)?);
        req.serving_request = Some(csr(&serving_key)?);
        let (name, addresses) = (req.node_name.clone(), req.addresses.clone());
        let answer = issue(req).await?;
        let (Some(client), Some(serving)) = (answer.client_certificate, answer.serving_certificate)
        else {
            bail!("the server answered without the node's certificates");
        };
        let client_key = client_key.serialize_pem();
        let serving_key = serving_key.serialize_pem();
        let client_held = held(&client, &client_key, ca_subject, None, &[])
            .context("the client certificate the server sent")?;
        let serving_held = held(&serving, &serving_key, ca_subject, Some(&name), &addresses)
            .context("the serving certificate the server sent")?;
        for (which, cert, key) in [
            ("client", &client, &client_key),
            ("serving", &serving, &serving_key),
        ] {
            write_file(&dir.join(format!("{which}.key")), key.as_bytes(), 0o600)?;
            write_file(&dir.join(format!("{which}.crt")), cert.as_bytes(), 0o644)?;
        }
        Ok((client_held, serving_held))
    }

    /// Renews the certificates whenever they are due, for as long as the task runs; after each
    /// renewal, `renewed` is called (to drop connections made with the old client
    /// certificate).
    pub async fn keep_renewed(&self, issue: Issue, renewed: impl Fn()) {
        let mut retry = RETRY_MIN;
        loop {
            let at = *self.renew_at.read().unwrap_or_else(|e| e.into_inner());
            if let Ok(wait) = at.duration_since(SystemTime::now()) {
                // In steps, so that a clock set forward is noticed.
                tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
                continue;
            }
            let req = JoinRequest {
                node_name: self.name.clone(),
                node_password: self.password.clone(),
                addresses: self.addresses.clone(),
                ..Default::default()
            };
            match Self::request(&self.dir, &self.ca_subject, req, &issue).await {
                Ok((client, serving)) => {
                    self.client.set(client.key);
                    self.serving.set(serving.key);
                    let next = due(client.not_before, client.not_after)
                        .min(due(serving.not_before, serving.not_after));
                    *self.renew_at.write().unwrap_or_else(|e| e.into_inner()) = next;
                    retry = RETRY_MIN;
                    tracing::info!(node = %self.name, "node certificates renewed");
                    renewed();
                }
                Err(e) => {
                    tracing::warn!(node = %self.name, error = %format!("{e:#}"), retry = ?retry, "renewing the node certificates failed");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_seventy_and_ninety_percent() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(1000);
        for _ in 0..100 {
            let at = due(start, end).duration_since(start).unwrap().as_secs_f64();
            assert!((700.0..=900.0).contains(&at), "{at}");
        }
    }

    #[test]
    fn the_node_password_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_password(dir.path()).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(node_password(dir.path()).unwrap(), p);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(PASSWORD_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
