//! The cluster's PKI, as k3s keeps it for the operator.
//!
//! Owns everything under `<data-dir>/server/tls` (the cluster CA, the API server's serving
//! certificate, the `system:admin` client certificate), the node join token file
//! (`<data-dir>/server/node-token`, k3s's `K10<ca hash>::server:<secret>` format), the rustls
//! server configuration of the API server, the mapping of a verified client certificate to a
//! Kubernetes user (CN → name, O → groups) and the writing of kubeconfig files.
//!
//! Must not touch: anything outside the paths it is given; it never regenerates an existing CA
//! (that would orphan every kubeconfig and agent), it reports a damaged file by name instead.
//!
//! Written by hand (with rcgen, rustls, x509-parser and ring doing the cryptography) because no
//! maintained crate does k3s-style bootstrap. Client-certificate subjects are DER-encoded here
//! because rcgen 0.14 keeps one value per attribute type, and Kubernetes users need several `O`
//! (group) values (rcgen issue #81).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SigningKey as _,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// File names inside the TLS directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVING_CERT_FILE: &str = "serving.crt";
pub const SERVING_KEY_FILE: &str = "serving.key";
pub const ADMIN_CERT_FILE: &str = "client-admin.crt";
pub const ADMIN_KEY_FILE: &str = "client-admin.key";

/// Name and groups of the administrator's client certificate (k3s: `system:admin`).
pub const ADMIN_USER: &str = "system:admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// The DNS names every serving certificate carries (as k3s and kubeadm do).
pub const DEFAULT_DNS_SANS: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const DAY: u64 = 24 * 60 * 60;
const CA_VALIDITY: u64 = 3650 * DAY;
const LEAF_VALIDITY: u64 = 365 * DAY;
/// Leaf certificates closer than this to their expiry are renewed at start (k3s: 90 days).
const RENEW_BEFORE: u64 = 90 * DAY;
/// Certificates start to be valid a little in the past, for machines with skewed clocks.
const BACKDATE: u64 = 60 * 60;

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const TOKEN_MODE: u32 = 0o600;

/// k3s's token prefix ("K10" + hex sha256 of the CA bundle + "::" + user ":" secret).
const TOKEN_PREFIX: &str = "K10";
const TOKEN_USER: &str = "server";

/// OID of the Kubernetes x509 UID attribute (`1.3.6.1.4.1.57683.2`, Kubernetes 1.34+).
const UID_OID: &str = "1.3.6.1.4.1.57683.2";

/// What can go wrong with the PKI. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "{} exists but {} is missing: restore it (the cluster CA is never regenerated while \
         certificates issued by it may exist)",
        present.display(),
        missing.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("encoding a certificate: {0}")]
    Encode(&'static str),
    #[error("invalid subject alternative name {san:?}: {reason}")]
    InvalidSan { san: String, reason: String },
    #[error("invalid certificate subject: {0}")]
    InvalidSubject(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid token from {origin}: {reason}")]
    InvalidToken { origin: String, reason: String },
    #[error(
        "token from {origin} is for a different cluster CA (token CA hash {token_hash}, this \
         server's CA hash {ca_hash})"
    )]
    TokenCaMismatch {
        origin: String,
        token_hash: String,
        ca_hash: String,
    },
    #[error("invalid file mode {0:?}: expected octal permission bits such as 600 or 0644")]
    InvalidMode(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn damaged(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A Kubernetes user as authenticated by a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Subject common name.
    pub name: String,
    /// Subject organization values, in certificate order.
    pub groups: Vec<String>,
    /// The subject's UID attribute (OID 1.3.6.1.4.1.57683.2), when present.
    pub uid: Option<String>,
}

/// Maps a (verified) client certificate to the user it authenticates, as Kubernetes' x509
/// authenticator does: name = subject CN, groups = subject O values. `None` when the
/// certificate cannot be parsed or has no common name.
pub fn user_from_client_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    // Go's pkix.Name keeps the last CN when there are several.
    let name = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .last()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    let uid = subject
        .iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == UID_OID)
        .filter_map(|a| a.as_str().ok())
        .last()
        .map(str::to_string);
    Some(User { name, groups, uid })
}

/// A subject alternative name, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

impl San {
    fn to_rcgen(&self) -> Result<SanType, PkiError> {
        Ok(match self {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(d) => SanType::DnsName(d.clone().try_into().map_err(|e: rcgen::Error| {
                PkiError::InvalidSan {
                    san: d.clone(),
                    reason: e.to_string(),
                }
            })?),
        })
    }
}

/// Parses one operator-given SAN: an IP address if it parses as one, else a DNS name.
fn parse_extra_san(raw: &str) -> Result<Option<San>, PkiError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Some(San::Ip(ip)));
    }
    let valid = s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b'_'));
    if !valid {
        return Err(PkiError::InvalidSan {
            san: raw.to_string(),
            reason: "neither an IP address nor a DNS name".to_string(),
        });
    }
    Ok(Some(San::Dns(s.to_ascii_lowercase())))
}

/// The SANs the serving certificate must carry, in a stable order, without duplicates.
fn wanted_sans(extra: &[String]) -> Result<Vec<San>, PkiError> {
    let mut out: Vec<San> = DEFAULT_DNS_SANS
        .iter()
        .map(|d| San::Dns((*d).to_string()))
        .collect();
    if let Some(h) = hostname() {
        out.push(San::Dns(h));
    }
    out.push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    out.push(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    out.extend(interface_addresses().into_iter().map(San::Ip));
    for raw in extra {
        if let Some(san) = parse_extra_san(raw)? {
            out.push(san);
        }
    }
    let mut seen = HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(out)
}

/// The machine's host name, lower-cased, when it is a usable DNS name.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "gethostname failed; serving certificate will not name the host");
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end])
        .ok()?
        .trim()
        .to_ascii_lowercase();
    match parse_extra_san(&name) {
        Ok(Some(San::Dns(d))) if d != "localhost" => Some(d),
        _ => None,
    }
}

/// Every address of the host's interfaces that a client could reach us on: not loopback,
/// unspecified, multicast or link-local (link-local addresses appear and vanish with every pod
/// veth, and cannot be used in a URL without a zone anyway). Sorted, without duplicates.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "getifaddrs failed; serving certificate will only name loopback addresses");
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list returned by getifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points at a sockaddr whose family tells its type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = match family {
                libc::AF_INET => {
                    // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
                    let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 => {
                    // SAFETY: family AF_INET6 means the sockaddr is a sockaddr_in6.
                    let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                    Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            };
            if let Some(ip) = ip.filter(is_reachable_address) {
                out.push(ip);
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

fn is_reachable_address(ip: &IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// What pki.rs needs to know about a certificate read from disk.
struct CertInfo {
    der: Vec<u8>,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    public_key: Vec<u8>,
    not_after: i64,
    is_ca: bool,
    sans: HashSet<San>,
}

fn parse_cert_pem(path: &Path, text: &str) -> Result<CertInfo, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map_err(|e| damaged(path, format!("not a PEM certificate ({e})")))?;
    if pem.label != "CERTIFICATE" {
        return Err(damaged(
            path,
            format!("expected a CERTIFICATE PEM block, found {:?}", pem.label),
        ));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| damaged(path, format!("not a valid X.509 certificate ({e})")))?;
    let mut sans = HashSet::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| damaged(path, format!("bad subjectAltName extension ({e})")))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    sans.insert(San::Dns(d.to_ascii_lowercase()));
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        sans.insert(San::Ip(IpAddr::from(a)));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        sans.insert(San::Ip(IpAddr::from(a)));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        der: pem.contents.clone(),
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        sans,
    })
}

fn parse_key_pem(path: &Path, text: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(text).map_err(|e| damaged(path, format!("not a usable private key ({e})")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sets the validity window of `params` to `[now - BACKDATE, now + lifetime]` (unix seconds).
fn set_validity(params: &mut CertificateParams, now: u64, lifetime: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(now.saturating_sub(BACKDATE));
    params.not_after = epoch + Duration::from_secs(now.saturating_add(lifetime));
}

/// A random positive 128-bit serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive and minimally encoded: top bit clear, first byte non-zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// ---- minimal DER, for certificate subjects with several O values ----

fn der_push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    der_push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// One DER element at the front of a byte string.
struct Der<'a> {
    tag: u8,
    /// The whole element: tag, length and content.
    element: &'a [u8],
    content: &'a [u8],
    /// What follows the element.
    rest: &'a [u8],
}

/// Splits one DER element off the front of `input`. Only single-byte tags (all that the
/// X.509 certificate structure uses at the levels read here).
fn der_split(input: &[u8]) -> Option<Der<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some(Der {
        tag,
        element: input.get(..end)?,
        content: input.get(header..end)?,
        rest: input.get(end..)?,
    })
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

fn der_rdn(oid: &[u8], value: &str) -> Vec<u8> {
    let mut atv = der_tlv(0x06, oid);
    atv.extend(der_tlv(0x0c, value.as_bytes()));
    der_tlv(0x31, &der_tlv(0x30, &atv))
}

/// An X.509 Name in Go's order (O values, then CN), every value a UTF8String.
fn encode_subject(cn: &str, orgs: &[&str]) -> Result<Vec<u8>, PkiError> {
    if cn.is_empty() {
        return Err(PkiError::InvalidSubject(
            "the common name (user name) is empty".to_string(),
        ));
    }
    if orgs.iter().any(|o| o.is_empty()) {
        return Err(PkiError::InvalidSubject(
            "an organization (group) is empty".to_string(),
        ));
    }
    let mut rdns = Vec::new();
    for o in orgs {
        rdns.extend(der_rdn(OID_ORGANIZATION, o));
    }
    rdns.extend(der_rdn(OID_COMMON_NAME, cn));
    Ok(der_tlv(0x30, &rdns))
}

/// Replaces the subject of a certificate rcgen produced and signs it again with `signer`
/// (the issuer's key, whose algorithm rcgen already wrote into the certificate).
fn replace_subject(cert_der: &[u8], subject: &[u8], signer: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let cert = der_split(cert_der).ok_or(PkiError::Encode("unreadable certificate"))?;
    if cert.tag != 0x30 || !cert.rest.is_empty() {
        return Err(PkiError::Encode("unexpected certificate structure"));
    }
    let tbs = der_split(cert.content).ok_or(PkiError::Encode("missing tbsCertificate"))?;
    let sig_alg = der_split(tbs.rest).ok_or(PkiError::Encode("missing signatureAlgorithm"))?;
    if tbs.tag != 0x30 || sig_alg.tag != 0x30 {
        return Err(PkiError::Encode("unexpected certificate structure"));
    }
    let mut elements = Vec::new();
    let mut cur = tbs.content;
    while !cur.is_empty() {
        let e = der_split(cur).ok_or(PkiError::Encode("malformed tbsCertificate"))?;
        cur = e.rest;
        elements.push(e);
    }
    // version [0] (optional), serial, signature, issuer, validity, subject, ...
    let subject_index = if elements.first().map(|e| e.tag) == Some(0xa0) {
        5
    } else {
        4
    };
    if elements.get(subject_index).map(|e| e.tag) != Some(0x30) {
        return Err(PkiError::Encode("tbsCertificate has no subject"));
    }
    let mut new_tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
    for (i, e) in elements.iter().enumerate() {
        if i == subject_index {
            new_tbs_content.extend_from_slice(subject);
        } else {
            new_tbs_content.extend_from_slice(e.element);
        }
    }
    let tbs = der_tlv(0x30, &new_tbs_content);
    let signature = signer.sign(&tbs)?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend(signature);
    let mut body = tbs;
    body.extend_from_slice(sig_alg.element);
    body.extend(der_tlv(0x03, &bits));
    Ok(der_tlv(0x30, &body))
}

// ---- generation ----

fn generate_ca(now: u64) -> Result<(String, KeyPair), PkiError> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("rudder-ca@{now}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Issues a leaf certificate; returns (certificate PEM, PKCS#8 key PEM).
fn issue_leaf(
    issuer: &Issuer<'static, KeyPair>,
    now: u64,
    cn: &str,
    orgs: &[&str],
    sans: &[San],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), PkiError> {
    let key = new_key()?;
    let leaf = Leaf {
        cn,
        orgs,
        sans,
        usage,
        not_before: now.saturating_sub(BACKDATE),
        not_after: now.saturating_add(LEAF_VALIDITY),
    };
    Ok((sign_leaf(issuer, &leaf, &key)?, key.serialize_pem()))
}

/// What a leaf certificate says.
struct Leaf<'a> {
    cn: &'a str,
    orgs: &'a [&'a str],
    sans: &'a [San],
    usage: ExtendedKeyUsagePurpose,
    /// Unix seconds.
    not_before: u64,
    not_after: u64,
}

/// Signs `leaf` for the public key `key`; returns the certificate PEM.
fn sign_leaf(
    issuer: &Issuer<'static, KeyPair>,
    leaf: &Leaf<'_>,
    key: &impl rcgen::PublicKeyData,
) -> Result<String, PkiError> {
    let Leaf { cn, orgs, sans, .. } = *leaf;
    let subject = encode_subject(cn, orgs)?;
    let mut params = CertificateParams::default();
    // rcgen writes a one-attribute placeholder; the real subject is put in below.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![leaf.usage.clone()];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(leaf.not_before);
    params.not_after = epoch + Duration::from_secs(leaf.not_after);
    let cert = params.signed_by(key, issuer)?;
    let der = replace_subject(cert.der(), &subject, issuer.key())?;
    Ok(pem_encode("CERTIFICATE", &der))
}

/// The certificates a node asks for (see [`Pki::sign_node`]), PEM.
#[derive(Debug)]
pub struct NodeCertificates {
    /// `system:node:NAME` in `system:nodes`, for client authentication.
    pub client: String,
    /// For the node's server, naming the node and its addresses.
    pub serving: String,
}

/// The public key of a PEM certificate signing request whose signature is valid (the
/// requester holds the private key).
fn csr_key(pem: &str, which: &str) -> Result<rcgen::CertificateSigningRequestParams, PkiError> {
    rcgen::CertificateSigningRequestParams::from_pem(pem).map_err(|e| {
        PkiError::InvalidRequest(format!(
            "the {which} certificate request is not a valid signed PKCS#10 request ({e})"
        ))
    })
}

// ---- files ----

/// Writes `data` to `path` atomically: temporary file in the same directory created with
/// `mode` (set explicitly, whatever the umask), fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| PkiError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        })?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp)(e)),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a text file; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| damaged(path, "not UTF-8 text")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Reads a private key file, tightening its mode to 0600 if it is readable by others.
fn read_key_optional(path: &Path) -> Result<Option<String>, PkiError> {
    let text = read_optional(path)?;
    if text.is_some() {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "private key was readable by others; setting mode 0600");
            fs::set_permissions(path, Permissions::from_mode(KEY_MODE)).map_err(io_err(path))?;
        }
    }
    Ok(text)
}

fn create_dir_private(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

// ---- the PKI ----

/// The cluster's certificates, loaded from (or created in) `<data-dir>/server/tls`.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    serving_cert_pem: String,
    serving_key_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Which leaf certificate is being loaded, and what it must satisfy.
struct LeafSpec<'a> {
    cert_file: &'a str,
    key_file: &'a str,
    cn: &'a str,
    orgs: &'a [&'a str],
    sans: &'a [San],
    usage: ExtendedKeyUsagePurpose,
    /// Whether the existing certificate must carry every SAN of `sans`.
    check_sans: bool,
}

impl Pki {
    /// Loads the PKI from `dir` (`<data-dir>/server/tls`), creating what is missing.
    ///
    /// First start: a cluster CA (ECDSA P-256, 10 years), a serving certificate for the default
    /// names, the host name, loopback, every interface address and `sans`, and the
    /// `system:admin` client certificate (both 1 year). Later starts reuse them; the serving
    /// certificate is reissued when it no longer covers the wanted SANs, and a leaf is reissued
    /// when it expires within 90 days. The CA is never regenerated once certificates may exist.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        create_dir_private(dir)?;
        let wanted = wanted_sans(sans)?;
        let now = unix_now();

        let (ca_cert_pem, ca_key) = load_or_create_ca(dir, now)?;
        let ca_path = dir.join(CA_CERT_FILE);
        let ca = parse_cert_pem(&ca_path, &ca_cert_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)
            .map_err(|e| damaged(&ca_path, format!("cannot be used as an issuer ({e})")))?;

        let (serving_cert_pem, serving_key_pem) = load_or_issue_leaf(
            dir,
            &ca,
            &issuer,
            now,
            &LeafSpec {
                cert_file: SERVING_CERT_FILE,
                key_file: SERVING_KEY_FILE,
                cn: "rudder",
                orgs: &["rudder"],
                sans: &wanted,
                usage: ExtendedKeyUsagePurpose::ServerAuth,
                check_sans: true,
            },
        )?;
        let (admin_cert_pem, admin_key_pem) = load_or_issue_leaf(
            dir,
            &ca,
            &issuer,
            now,
            &LeafSpec {
                cert_file: ADMIN_CERT_FILE,
                key_file: ADMIN_KEY_FILE,
                cn: ADMIN_USER,
                orgs: &[ADMIN_GROUP],
                sans: &[],
                usage: ExtendedKeyUsagePurpose::ClientAuth,
                check_sans: false,
            },
        )?;

        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            ca_cert_der: ca.der,
            issuer,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
        })
    }

    /// The TLS configuration of the API server: TLS 1.2 and 1.3 (ring), ALPN `h2` and
    /// `http/1.1`, the serving certificate, and client certificates optional but verified
    /// against the cluster CA when presented (authentication is decided later, per request).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca_cert_der.clone()))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let serving_path = self.dir.join(SERVING_CERT_FILE);
        let serving = parse_cert_pem(&serving_path, &self.serving_cert_pem)?;
        let key_path = self.dir.join(SERVING_KEY_FILE);
        let key = parse_key_pem(&key_path, &self.serving_key_pem)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(serving.der)], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Issues a client certificate for user `cn` in groups `orgs`, signed by the cluster CA,
    /// valid one year. Returns (certificate PEM, private key PEM). Nothing is written to disk.
    pub fn issue_client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
        issue_leaf(
            &self.issuer,
            unix_now(),
            cn,
            orgs,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// Signs a node's certificates for the keys of its PKCS#10 requests (their subjects and
    /// extensions are not read: what a node is certified as is decided here): a client
    /// certificate for `system:node:NAME` in `system:nodes`, and a serving certificate naming
    /// `name` and `addresses`. Both are valid for `lifetime`, from a little before now (for
    /// skewed clocks: an hour, or a quarter of a short lifetime).
    pub fn sign_node(
        &self,
        name: &str,
        addresses: &[IpAddr],
        client_csr: &str,
        serving_csr: &str,
        lifetime: Duration,
    ) -> Result<NodeCertificates, PkiError> {
        let client_key = csr_key(client_csr, "client")?;
        let serving_key = csr_key(serving_csr, "serving")?;
        let now = unix_now();
        let lifetime = lifetime.as_secs().max(1);
        let not_before = now.saturating_sub(BACKDATE.min(lifetime / 4));
        let not_after = now.saturating_add(lifetime);
        let user = format!("system:node:{name}");
        let client = Leaf {
            cn: &user,
            orgs: &["system:nodes"],
            sans: &[],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            not_before,
            not_after,
        };
        let mut sans = vec![San::Dns(name.to_string())];
        sans.extend(addresses.iter().map(|ip| San::Ip(*ip)));
        let serving = Leaf {
            cn: &user,
            orgs: &["system:nodes"],
            sans: &sans,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            not_before,
            not_after,
        };
        Ok(NodeCertificates {
            client: sign_leaf(&self.issuer, &client, &client_key.public_key)?,
            serving: sign_leaf(&self.issuer, &serving, &serving_key.public_key)?,
        })
    }

    /// The TLS directory this PKI lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster CA certificate, exactly as stored in `ca.crt` (the token's CA hash is
    /// computed over these bytes).
    pub fn ca_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The cluster CA certificate in DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// The API server's serving certificate (PEM).
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving_cert_pem
    }

    /// The `system:admin` client certificate (PEM).
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin_cert_pem
    }

    /// The `system:admin` client key (PKCS#8 PEM).
    pub fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }
}

/// Loads `ca.crt`/`ca.key`, or creates them on first start.
fn load_or_create_ca(dir: &Path, now: u64) -> Result<(String, KeyPair), PkiError> {
    let crt_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let crt = read_optional(&crt_path)?;
    let key = read_key_optional(&key_path)?;
    match (crt, key) {
        (Some(crt), Some(key)) => {
            let info = parse_cert_pem(&crt_path, &crt)?;
            if !info.is_ca {
                return Err(damaged(&crt_path, "not a CA certificate"));
            }
            let key_pair = parse_key_pem(&key_path, &key)?;
            if key_pair.public_key_raw() != info.public_key.as_slice() {
                return Err(damaged(
                    &key_path,
                    format!("does not belong to {}", crt_path.display()),
                ));
            }
            let left = info.not_after - now as i64;
            if left < RENEW_BEFORE as i64 {
                tracing::warn!(
                    path = %crt_path.display(),
                    days_left = left / DAY as i64,
                    "the cluster CA expires soon; it is never renewed automatically"
                );
            }
            Ok((crt, key_pair))
        }
        (None, None) => create_ca(dir, &crt_path, &key_path, now),
        (None, Some(_)) => {
            // ca.crt is written last: without it no certificate can have been issued by this
            // CA, unless leaves exist (then someone removed ca.crt, and we must not guess).
            let leaves_exist = [SERVING_CERT_FILE, ADMIN_CERT_FILE]
                .iter()
                .any(|f| dir.join(f).exists());
            if leaves_exist {
                return Err(PkiError::Incomplete {
                    present: key_path,
                    missing: crt_path,
                });
            }
            tracing::warn!(path = %key_path.display(), "found a CA key without its certificate (interrupted first start); creating a new CA");
            create_ca(dir, &crt_path, &key_path, now)
        }
        (Some(_), None) => Err(PkiError::Incomplete {
            present: crt_path,
            missing: key_path,
        }),
    }
}

fn create_ca(
    dir: &Path,
    crt_path: &Path,
    key_path: &Path,
    now: u64,
) -> Result<(String, KeyPair), PkiError> {
    let (crt, key) = generate_ca(now)?;
    write_atomic(key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(crt_path, crt.as_bytes(), CERT_MODE)?;
    tracing::info!(dir = %dir.display(), "created the cluster CA");
    Ok((crt, key))
}

/// Loads a leaf certificate and key, reissuing them when missing, mismatched, not issued by
/// the current CA, expiring within 90 days or (serving) missing a wanted SAN.
fn load_or_issue_leaf(
    dir: &Path,
    ca: &CertInfo,
    issuer: &Issuer<'static, KeyPair>,
    now: u64,
    spec: &LeafSpec<'_>,
) -> Result<(String, String), PkiError> {
    let crt_path = dir.join(spec.cert_file);
    let key_path = dir.join(spec.key_file);
    let crt = read_optional(&crt_path)?;
    let key = read_key_optional(&key_path)?;
    let reason = match (&crt, &key) {
        (Some(crt), Some(key)) => {
            let info = parse_cert_pem(&crt_path, crt)?;
            let key_pair = parse_key_pem(&key_path, key)?;
            leaf_problem(&info, &key_pair, ca, now, spec)
        }
        (None, None) => Some("not created yet".to_string()),
        (Some(_), None) => Some(format!("{} is missing", key_path.display())),
        (None, Some(_)) => Some(format!("{} is missing", crt_path.display())),
    };
    match (reason, crt, key) {
        (None, Some(crt), Some(key)) => Ok((crt, key)),
        (reason, _, _) => {
            let reason = reason.unwrap_or_default();
            let (crt, key) = issue_leaf(
                issuer,
                now,
                spec.cn,
                spec.orgs,
                spec.sans,
                spec.usage.clone(),
            )?;
            // Key first, certificate last: an interrupted write leaves a mismatched pair,
            // which the next start detects and reissues.
            write_atomic(&key_path, key.as_bytes(), KEY_MODE)?;
            write_atomic(&crt_path, crt.as_bytes(), CERT_MODE)?;
            tracing::info!(path = %crt_path.display(), %reason, "issued certificate");
            Ok((crt, key))
        }
    }
}

/// Why an existing leaf must be reissued, or `None` when it is fine.
fn leaf_problem(
    info: &CertInfo,
    key: &KeyPair,
    ca: &CertInfo,
    now: u64,
    spec: &LeafSpec<'_>,
) -> Option<String> {
    if key.public_key_raw() != info.public_key.as_slice() {
        return Some("key and certificate do not match".to_string());
    }
    if info.issuer_raw != ca.subject_raw {
        return Some("not issued by the current cluster CA".to_string());
    }
    let left = info.not_after - now as i64;
    if left < RENEW_BEFORE as i64 {
        return Some(format!("expires in {} days", left.max(0) / DAY as i64));
    }
    if spec.check_sans {
        let missing: Vec<String> = spec
            .sans
            .iter()
            .filter(|s| !info.sans.contains(s))
            .map(San::to_string)
            .collect();
        if !missing.is_empty() {
            return Some(format!("missing SANs {}", missing.join(", ")));
        }
    }
    None
}

// ---- node token ----

/// Hex SHA-256 of the CA certificate PEM bytes, as in k3s tokens.
pub fn ca_hash(ca_pem: &str) -> String {
    rudder_api::tls::sha256_hex(ca_pem.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A token as given by an operator or an agent, split into its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// The CA hash of a full `K10…` token; `None` for a bare secret.
    pub ca_hash: Option<String>,
    /// The user part of a full token (`server` for server tokens).
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Parses a k3s-style token: `K10<sha256 hex>::<user>:<secret>`, or a bare secret (user
/// `server`). `origin` says where the token came from, for the error message.
pub fn parse_token(token: &str, origin: &str) -> Result<ParsedToken, PkiError> {
    let invalid = |reason: &str| PkiError::InvalidToken {
        origin: origin.to_string(),
        reason: reason.to_string(),
    };
    if token.is_empty() {
        return Err(invalid("empty"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
        return Ok(ParsedToken {
            ca_hash: None,
            username: TOKEN_USER.to_string(),
            secret: token.to_string(),
        });
    };
    let (hash, creds) = rest
        .split_once("::")
        .ok_or_else(|| invalid("K10 token without \"::\" after the CA hash"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("the CA hash is not 64 hexadecimal digits"));
    }
    let (user, secret) = creds
        .split_once(':')
        .ok_or_else(|| invalid("K10 token without \"<user>:<secret>\" after \"::\""))?;
    if user.is_empty() || secret.is_empty() {
        return Err(invalid("empty user or secret"));
    }
    Ok(ParsedToken {
        ca_hash: Some(hash.to_ascii_lowercase()),
        username: user.to_string(),
        secret: secret.to_string(),
    })
}

/// The cluster's node join token.
#[derive(Clone)]
pub struct NodeToken {
    full: String,
    secret: String,
    ca_hash: String,
}

impl fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl NodeToken {
    /// Builds the token from operator input: a bare secret is wrapped into the full format; a
    /// full token must carry our CA's hash.
    fn from_input(input: &str, ca_hash: &str, origin: &str) -> Result<NodeToken, PkiError> {
        let parsed = parse_token(input, origin)?;
        match parsed.ca_hash {
            None => Ok(NodeToken {
                full: format!("{TOKEN_PREFIX}{ca_hash}::{TOKEN_USER}:{}", parsed.secret),
                secret: parsed.secret,
                ca_hash: ca_hash.to_string(),
            }),
            Some(hash) if hash == ca_hash => Ok(NodeToken {
                full: format!(
                    "{TOKEN_PREFIX}{ca_hash}::{}:{}",
                    parsed.username, parsed.secret
                ),
                secret: parsed.secret,
                ca_hash: ca_hash.to_string(),
            }),
            Some(hash) => Err(PkiError::TokenCaMismatch {
                origin: origin.to_string(),
                token_hash: hash,
                ca_hash: ca_hash.to_string(),
            }),
        }
    }

    /// The full token, `K10<ca hash>::server:<secret>` (what `rudder agent --token` takes).
    pub fn full(&self) -> &str {
        &self.full
    }

    /// The secret part alone.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The CA hash the token carries.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// Whether `bearer` is this token, in full or as the bare secret (constant time).
    pub fn matches_bearer(&self, bearer: &str) -> bool {
        // Non-short-circuit `|`: both comparisons always run.
        constant_time_eq(bearer.as_bytes(), self.full.as_bytes())
            | constant_time_eq(bearer.as_bytes(), self.secret.as_bytes())
    }
}

/// Compares SHA-256 digests of both sides without early exit, so timing reveals nothing
/// about where (or whether lengths) differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    let diff = da
        .as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

/// Loads or creates the node token at `path` (`<data-dir>/server/node-token`, mode 0600).
///
/// `given` is the operator's `--token`: a bare secret is wrapped into k3s's full format
/// `K10<sha256(ca_pem)>::server:<secret>`; a full token must carry this CA's hash. Without
/// `given`, the stored token is reused, or a new one with 32 random hex characters is created.
pub fn load_or_create_token(
    path: &Path,
    given: Option<&str>,
    ca_pem: &str,
) -> Result<NodeToken, PkiError> {
    let hash = ca_hash(ca_pem);
    let stored = read_optional(path)?;
    let token = match (given, &stored) {
        (Some(g), _) => NodeToken::from_input(g.trim(), &hash, "--token")?,
        (None, Some(text)) => {
            NodeToken::from_input(text.trim(), &hash, &path.display().to_string())?
        }
        (None, None) => {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            NodeToken::from_input(&hex(&bytes), &hash, "a generated secret")?
        }
    };
    let wanted = format!("{}\n", token.full);
    if stored.as_deref() != Some(wanted.as_str()) {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir_private(parent)?;
        }
        write_atomic(path, wanted.as_bytes(), TOKEN_MODE)?;
    } else {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, Permissions::from_mode(TOKEN_MODE)).map_err(io_err(path))?;
        }
    }
    Ok(token)
}

// ---- kubeconfig ----

/// Parses a file mode given in octal, as `--write-kubeconfig-mode` takes it (`600`, `0644`,
/// `0o640`). Only permission bits (at most 0777) are accepted.
pub fn parse_mode(s: &str) -> Result<u32, PkiError> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(PkiError::InvalidMode(s.to_string()));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(PkiError::InvalidMode(s.to_string())),
    }
}

/// The kubeconfig text k3s writes: one cluster, context and user, all named `default`, with
/// the CA, client certificate and key embedded as base64 data.
pub fn kubeconfig_yaml(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    // A JSON string is a valid YAML double-quoted scalar.
    let server = serde_json::Value::String(server_url.to_string()).to_string();
    format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    \
             certificate-authority-data: {ca}\n    \
             server: {server}\n  \
           name: default\n\
         contexts:\n\
         - context:\n    \
             cluster: default\n    \
             user: default\n  \
           name: default\n\
         current-context: default\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: default\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// Writes a kubeconfig (see [`kubeconfig_yaml`]) atomically with file mode `mode`, creating
/// the parent directory if needed.
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    server_url: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), PkiError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let text = kubeconfig_yaml(server_url, ca_pem, cert_pem, key_pem);
    write_atomic(path, text.as_bytes(), mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_and_token_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Pki>();
        assert_send_sync::<NodeToken>();
        assert_send_sync::<PkiError>();
    }

    #[test]
    fn serving_certificate_names_the_host_and_its_interfaces() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &[]).unwrap();
        let info = parse_cert_pem(Path::new("serving"), pki.serving_cert_pem()).unwrap();
        let mut expected: Vec<San> = interface_addresses().into_iter().map(San::Ip).collect();
        expected.extend(hostname().map(San::Dns));
        println!("host names and addresses: {expected:?}");
        for san in &expected {
            assert!(info.sans.contains(san), "{san} missing");
        }
    }

    #[test]
    fn der_split_handles_long_lengths() {
        let content = vec![7u8; 300];
        let tlv = der_tlv(0x30, &content);
        assert_eq!(&tlv[..4], &[0x30, 0x82, 0x01, 0x2c]);
        let e = der_split(&tlv).unwrap();
        assert_eq!(e.tag, 0x30);
        assert_eq!(e.element.len(), tlv.len());
        assert_eq!(e.content, content.as_slice());
        assert!(e.rest.is_empty());
        assert!(der_split(&tlv[..100]).is_none());
    }

    #[test]
    fn several_groups_survive_issuing() {
        let now = unix_now();
        let (ca_pem, ca_key) = generate_ca(now).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let (crt, _) = issue_leaf(
            &issuer,
            now,
            "alice",
            &["dev", "ops", "system:authenticated"],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
        .unwrap();
        let info = parse_cert_pem(Path::new("t"), &crt).unwrap();
        let user = user_from_client_cert(&info.der).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(user.uid, None);
        let ca = parse_cert_pem(Path::new("ca"), &ca_pem).unwrap();
        assert_eq!(info.issuer_raw, ca.subject_raw);
    }

    #[test]
    fn leaves_are_reissued_near_expiry_or_for_a_new_ca() {
        let now = unix_now();
        let (ca_pem, ca_key) = generate_ca(now).unwrap();
        let ca = parse_cert_pem(Path::new("ca"), &ca_pem).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let sans = [San::Dns("localhost".into())];
        let spec = LeafSpec {
            cert_file: "c",
            key_file: "k",
            cn: "x",
            orgs: &[],
            sans: &sans,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            check_sans: true,
        };
        let (crt, key) = issue_leaf(&issuer, now, "x", &[], &sans, spec.usage.clone()).unwrap();
        let info = parse_cert_pem(Path::new("c"), &crt).unwrap();
        let key = KeyPair::from_pem(&key).unwrap();
        assert_eq!(leaf_problem(&info, &key, &ca, now, &spec), None);
        // 300 days later it has 65 days left: reissue.
        let later = now + 300 * DAY;
        let why = leaf_problem(&info, &key, &ca, later, &spec).unwrap();
        assert!(why.contains("expires"), "{why}");
        // Signed by another CA.
        let (other_pem, _) = generate_ca(now + 1).unwrap();
        let other = parse_cert_pem(Path::new("ca2"), &other_pem).unwrap();
        assert!(leaf_problem(&info, &key, &other, now, &spec).is_some());
        // A key that is not the certificate's.
        let stranger = new_key().unwrap();
        assert!(leaf_problem(&info, &stranger, &ca, now, &spec).is_some());
    }

    #[test]
    fn empty_subject_parts_are_refused() {
        assert!(matches!(
            encode_subject("", &[]),
            Err(PkiError::InvalidSubject(_))
        ));
        assert!(matches!(
            encode_subject("a", &[""]),
            Err(PkiError::InvalidSubject(_))
        ));
    }

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("644").unwrap(), 0o644);
        assert_eq!(parse_mode("0600").unwrap(), 0o600);
        assert_eq!(parse_mode("0o640").unwrap(), 0o640);
        for bad in ["", "8", "abc", "1777", "-600", "0x1a4"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_parse() {
        let hash = "a".repeat(64);
        let t = parse_token(&format!("K10{hash}::server:s3cret"), "t").unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(
            (t.username.as_str(), t.secret.as_str()),
            ("server", "s3cret")
        );
        let bare = parse_token("abc:def", "t").unwrap();
        assert_eq!((bare.ca_hash, bare.secret.as_str()), (None, "abc:def"));
        for bad in [
            "",
            "K10abc::server:x",
            "K10nohash",
            &format!("K10{hash}::server:"),
        ] {
            assert!(parse_token(bad, "t").is_err(), "{bad:?}");
        }
        assert!(parse_token("has space", "t").is_err());
    }

    #[test]
    fn extra_sans_parse() {
        assert_eq!(
            parse_extra_san("10.0.0.1").unwrap(),
            Some(San::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse_extra_san("[fd00::1]").unwrap(),
            Some(San::Ip("fd00::1".parse().unwrap()))
        );
        assert_eq!(
            parse_extra_san("API.Example.com").unwrap(),
            Some(San::Dns("api.example.com".into()))
        );
        assert_eq!(parse_extra_san("  ").unwrap(), None);
        assert!(parse_extra_san("bad name").is_err());
    }

    #[test]
    fn link_local_and_loopback_are_not_reachable_addresses() {
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "ff02::1",
        ] {
            assert!(!is_reachable_address(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.168.1.2", "fd00::5", "2001:db8::1"] {
            assert!(is_reachable_address(&ip.parse().unwrap()), "{ip}");
        }
    }
}
