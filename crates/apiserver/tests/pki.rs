//! The cluster PKI through its public API: real files, real TLS handshakes over loopback, and
//! the real kubectl reading (and connecting with) the kubeconfig we write.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rudder_apiserver::pki::{
    self, load_or_create_token, parse_mode, user_from_client_cert, write_kubeconfig, Pki, PkiError,
    User,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "serving.crt",
    "serving.key",
    "client-admin.crt",
    "client-admin.key",
];

fn snapshot(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    FILES
        .iter()
        .map(|f| (*f, std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn serving_sans(pem: &str) -> Vec<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn second_start_reuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server/tls");
    let first = Pki::load_or_create(&dir, &[]).unwrap();
    let before = snapshot(&dir);
    let second = Pki::load_or_create(&dir, &[]).unwrap();
    assert_eq!(before, snapshot(&dir));
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.admin_key_pem(), second.admin_key_pem());
    assert_eq!(first.serving_cert_pem(), second.serving_cert_pem());
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        first.ca_pem()
    );

    let sans = serving_sans(first.serving_cert_pem());
    for want in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "::1",
    ] {
        assert!(
            sans.iter().any(|s| s == want),
            "{want} missing from {sans:?}"
        );
    }
    let (_, ca) = x509_parser::pem::parse_x509_pem(first.ca_pem().as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let cn = ca.subject().iter_common_name().next().unwrap();
    assert!(cn.as_str().unwrap().starts_with("rudder-ca@"));
    assert!(ca.is_ca());
}

#[test]
fn a_new_san_reissues_only_the_serving_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    Pki::load_or_create(&dir, &[]).unwrap();
    let before = snapshot(&dir);

    let extra = vec!["API.example.com".to_string(), "10.11.12.13".to_string()];
    let pki = Pki::load_or_create(&dir, &extra).unwrap();
    let after = snapshot(&dir);
    for f in ["ca.crt", "ca.key", "client-admin.crt", "client-admin.key"] {
        assert_eq!(before[f], after[f], "{f} changed");
    }
    assert_ne!(before["serving.crt"], after["serving.crt"]);
    assert_ne!(before["serving.key"], after["serving.key"]);
    let sans = serving_sans(pki.serving_cert_pem());
    assert!(sans.iter().any(|s| s == "api.example.com"), "{sans:?}");
    assert!(sans.iter().any(|s| s == "10.11.12.13"), "{sans:?}");

    // Same SANs, or fewer: nothing changes.
    Pki::load_or_create(&dir, &extra).unwrap();
    assert_eq!(after, snapshot(&dir));
    Pki::load_or_create(&dir, &[]).unwrap();
    assert_eq!(after, snapshot(&dir));

    let bad = Pki::load_or_create(&dir, &["not a name".to_string()]).unwrap_err();
    assert!(matches!(bad, PkiError::InvalidSan { .. }), "{bad}");
}

#[test]
fn a_damaged_ca_is_an_error_naming_it_and_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    Pki::load_or_create(&dir, &[]).unwrap();
    let before = snapshot(&dir);

    std::fs::write(dir.join("ca.crt"), "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    let err = Pki::load_or_create(&dir, &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PkiError::Damaged { .. }), "{msg}");
    assert!(
        msg.contains(&dir.join("ca.crt").display().to_string()),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(dir.join("ca.crt")).unwrap(),
        b"-----BEGIN CERTIFICATE-----\nnope\n"
    );
    for f in ["ca.key", "serving.crt", "client-admin.crt"] {
        assert_eq!(
            before[f],
            std::fs::read(dir.join(f)).unwrap(),
            "{f} changed"
        );
    }

    // A damaged leaf key is named too.
    std::fs::write(dir.join("ca.crt"), &before["ca.crt"]).unwrap();
    std::fs::write(dir.join("serving.key"), "garbage").unwrap();
    let msg = Pki::load_or_create(&dir, &[]).unwrap_err().to_string();
    assert!(msg.contains("serving.key"), "{msg}");

    // A missing CA key is never papered over with a new CA.
    std::fs::write(dir.join("serving.key"), &before["serving.key"]).unwrap();
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let err = Pki::load_or_create(&dir, &[]).unwrap_err();
    assert!(matches!(err, PkiError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert_eq!(before["ca.crt"], std::fs::read(dir.join("ca.crt")).unwrap());
}

#[test]
fn a_missing_leaf_is_reissued_from_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    Pki::load_or_create(&dir, &[]).unwrap();
    let before = snapshot(&dir);
    std::fs::remove_file(dir.join("client-admin.key")).unwrap();
    Pki::load_or_create(&dir, &[]).unwrap();
    let after = snapshot(&dir);
    assert_eq!(before["ca.crt"], after["ca.crt"]);
    assert_eq!(before["serving.crt"], after["serving.crt"]);
    assert_ne!(before["client-admin.crt"], after["client-admin.crt"]);
}

#[test]
fn private_keys_are_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    Pki::load_or_create(&dir, &[]).unwrap();
    for f in ["ca.key", "serving.key", "client-admin.key"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    for f in ["ca.crt", "serving.crt", "client-admin.crt"] {
        assert_eq!(mode(&dir.join(f)), 0o644, "{f}");
    }
    assert_eq!(mode(&dir), 0o700);
    // No temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);

    // A key that became world-readable is tightened on the next start.
    std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    Pki::load_or_create(&dir, &[]).unwrap();
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
}

// ---- TLS ----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

struct Outcome {
    /// The server's view: the authenticated user (if a certificate was presented) and ALPN.
    server: Result<(Option<User>, Option<Vec<u8>>), String>,
    /// What the client read after the handshake.
    client: Result<Vec<u8>, String>,
}

async fn handshake(pki: &Pki, client: Arc<ClientConfig>, server_name: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_config().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let (_, conn) = tls.get_ref();
                let user = conn
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| user_from_client_cert(cert));
                let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                tls.write_all(b"hello").await.unwrap();
                tls.shutdown().await.ok();
                Ok((user, alpn))
            }
            Err(e) => Err(e.to_string()),
        }
    });
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    };
    let client = tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .unwrap();
    let server = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    Outcome { server, client }
}

#[tokio::test]
async fn tls_accepts_the_admin_certificate_and_maps_it_to_system_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let tls13 = &[&rustls::version::TLS13][..];
    let client = client_config(
        pki.ca_pem(),
        Some((pki.admin_cert_pem(), pki.admin_key_pem())),
        tls13,
    );
    let out = handshake(&pki, client, "localhost").await;
    let (user, alpn) = out.server.unwrap();
    assert_eq!(
        user,
        Some(User {
            name: "system:admin".into(),
            groups: vec!["system:masters".into()],
            uid: None,
        })
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(out.client.unwrap(), b"hello");
}

#[tokio::test]
async fn tls_1_2_and_ip_server_names_work() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let (cert, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes", "extra"])
        .unwrap();
    let tls12 = &[&rustls::version::TLS12][..];
    let client = client_config(pki.ca_pem(), Some((&cert, &key)), tls12);
    let out = handshake(&pki, client, "127.0.0.1").await;
    let (user, _) = out.server.unwrap();
    let user = user.unwrap();
    assert_eq!(user.name, "system:node:n1");
    assert_eq!(user.groups, ["system:nodes", "extra"]);
    assert_eq!(out.client.unwrap(), b"hello");
}

#[tokio::test]
async fn tls_without_a_client_certificate_connects_anonymously() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let client = client_config(pki.ca_pem(), None, rustls::DEFAULT_VERSIONS);
    let out = handshake(&pki, client, "kubernetes.default.svc").await;
    let (user, _) = out.server.unwrap();
    assert_eq!(user, None);
    assert_eq!(out.client.unwrap(), b"hello");
}

#[tokio::test]
async fn tls_rejects_a_client_certificate_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("a"), &[]).unwrap();
    let other = Pki::load_or_create(&tmp.path().join("b"), &[]).unwrap();
    assert_ne!(pki.ca_pem(), other.ca_pem());
    // Trusts our server, but presents a certificate signed by the other cluster's CA.
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let client = client_config(
            pki.ca_pem(),
            Some((other.admin_cert_pem(), other.admin_key_pem())),
            versions,
        );
        let out = handshake(&pki, client, "localhost").await;
        let err = out.server.unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        assert!(
            out.client.as_deref() != Ok(b"hello".as_slice()),
            "client got data"
        );
    }
}

// ---- kubeconfig ----

#[test]
fn kubeconfig_is_accepted_by_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let path = tmp.path().join("etc/rudder/rudder.yaml");
    let url = "https://127.0.0.1:6443";
    write_kubeconfig(
        &path,
        0o600,
        url,
        pki.ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .unwrap();
    assert_eq!(mode(&path), 0o600);

    let out = Command::new("/usr/bin/kubectl")
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(v["current-context"], "default");
    assert_eq!(v["clusters"][0]["name"], "default");
    assert_eq!(v["clusters"][0]["cluster"]["server"], url);
    assert_eq!(
        v["clusters"][0]["cluster"]["certificate-authority-data"],
        b64(pki.ca_pem())
    );
    assert_eq!(v["contexts"][0]["context"]["cluster"], "default");
    assert_eq!(v["contexts"][0]["context"]["user"], "default");
    assert_eq!(v["users"][0]["name"], "default");
    assert_eq!(
        v["users"][0]["user"]["client-certificate-data"],
        b64(pki.admin_cert_pem())
    );
    assert_eq!(
        v["users"][0]["user"]["client-key-data"],
        b64(pki.admin_key_pem())
    );

    // The mode is applied exactly, whatever the umask, also when overwriting.
    write_kubeconfig(
        &path,
        parse_mode("644").unwrap(),
        url,
        pki.ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .unwrap();
    assert_eq!(mode(&path), 0o644);
}

/// kubectl (Go's TLS) verifies our serving certificate, loads our client key and certificate,
/// and our verifier maps it to system:admin.
#[tokio::test]
async fn kubectl_connects_with_the_written_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = (*pki.server_config().unwrap()).clone();
    // This stand-in server only speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| user_from_client_cert(c));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = match user {
                Some(u) => format!("{}|{}", u.name, u.groups.join(",")),
                None => "anonymous".to_string(),
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });

    let path = tmp.path().join("kubeconfig");
    write_kubeconfig(
        &path,
        0o600,
        &format!("https://{addr}"),
        pki.ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("/usr/bin/kubectl")
            .args(["get", "--raw", "/healthz", "--kubeconfig"])
            .arg(&path)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    server.abort();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "system:admin|system:masters"
    );
}

// ---- node token ----

#[test]
fn node_token_is_generated_once_and_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let path = tmp.path().join("server/node-token");
    let token = load_or_create_token(&path, None, pki.ca_pem()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let hash = pki::ca_hash(pki.ca_pem());
    assert_eq!(hash.len(), 64);
    assert_eq!(token.secret().len(), 32);
    assert!(token.secret().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        token.full(),
        format!("K10{hash}::server:{}", token.secret())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token.full());

    let again = load_or_create_token(&path, None, pki.ca_pem()).unwrap();
    assert_eq!(again.full(), token.full());

    assert!(token.matches_bearer(token.full()));
    assert!(token.matches_bearer(token.secret()));
    assert!(!token.matches_bearer("wrong"));
    assert!(!token.matches_bearer(""));
    assert!(!token.matches_bearer(&format!("{}x", token.secret())));
    assert!(!token.matches_bearer(&token.secret()[1..]));
    // Debug output does not reveal the secret.
    assert!(!format!("{token:?}").contains(token.secret()));
}

#[test]
fn node_token_from_the_operator() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &[]).unwrap();
    let hash = pki::ca_hash(pki.ca_pem());
    let path = tmp.path().join("node-token");

    // A bare secret is wrapped in the full format.
    let token = load_or_create_token(&path, Some("my-secret"), pki.ca_pem()).unwrap();
    assert_eq!(token.full(), format!("K10{hash}::server:my-secret"));
    assert!(token.matches_bearer("my-secret"));
    assert!(token.matches_bearer(&format!("K10{hash}::server:my-secret")));
    assert_eq!(
        load_or_create_token(&path, None, pki.ca_pem())
            .unwrap()
            .full(),
        token.full()
    );

    // A full token for our CA is accepted as is.
    let full = format!("K10{hash}::server:other");
    let token = load_or_create_token(&path, Some(&full), pki.ca_pem()).unwrap();
    assert_eq!(token.full(), full);
    assert_eq!(token.secret(), "other");

    // A full token for another cluster's CA is refused, and the stored token is kept.
    let other = Pki::load_or_create(&tmp.path().join("other"), &[]).unwrap();
    let foreign = format!("K10{}::server:other", pki::ca_hash(other.ca_pem()));
    let err = load_or_create_token(&path, Some(&foreign), pki.ca_pem()).unwrap_err();
    assert!(matches!(err, PkiError::TokenCaMismatch { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), full);

    // So is a stored token once the CA it names is not ours.
    let err = load_or_create_token(&path, None, other.ca_pem()).unwrap_err();
    assert!(err.to_string().contains("node-token"), "{err}");

    // Malformed input.
    for bad in ["", "K10abc::server:x", "two words"] {
        assert!(
            load_or_create_token(&path, Some(bad), pki.ca_pem()).is_err(),
            "{bad:?}"
        );
    }
}
