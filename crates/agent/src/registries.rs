//! Registries as k3s's `registries.yaml` describes them: `mirrors` (per registry, endpoints
//! tried in order before the registry itself; plain HTTP allowed) and `configs` (per registry
//! host: credentials and TLS). The agent writes them for its containerd as one `hosts.toml`
//! per registry under `registry.config_path`, and hands the credentials to each pull (CRI
//! auth) for the one host they belong to, as it hands over those of the pod's
//! imagePullSecrets; they are written nowhere.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// What a registries file may weigh.
const MAX_FILE: u64 = 1 << 20;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, Config>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

/// Credentials for one registry host: a user and password, their base64 `auth` form, or an
/// identity token.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Auth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub identitytoken: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Tls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials for a pull, and the registry URL they may be sent to (`https://HOST`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub server: String,
    pub auth: Auth,
}

/// The registry host of an image reference: its first part when that names a host (has a
/// `.` or `:`, or is `localhost`), else Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `endpoint` with a scheme (`https://` when it has none), without a trailing slash.
fn endpoint_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else {
        format!("https://{e}")
    }
}

/// The host (and port) of an endpoint URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl Registries {
    /// The file at `path`, or a readable error.
    pub fn load(path: &Path) -> Result<Registries, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let size = std::fs::metadata(path).map_err(|e| fail(&e))?.len();
        if size > MAX_FILE {
            return Err(fail(&format!("larger than {MAX_FILE} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let r: Registries = serde_saphyr::from_str(&text).map_err(|e| fail(&e))?;
        if r.mirrors.contains_key("*") {
            return Err(fail(
                &"the \"*\" mirror is not supported by this containerd; name each registry",
            ));
        }
        Ok(r)
    }

    /// The `hosts.toml` of each registry that has mirrors or TLS settings, by registry host.
    pub fn hosts_files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        let tls_of = |url: &str| self.configs.get(host_of(url)).and_then(|c| c.tls.as_ref());
        let mut registries: Vec<&String> = self.mirrors.keys().collect();
        registries.extend(
            self.configs
                .iter()
                .filter(|(_, c)| c.tls.is_some())
                .map(|(h, _)| h),
        );
        registries.sort();
        registries.dedup();
        for registry in registries {
            let server = if registry == "docker.io" {
                "https://registry-1.docker.io".to_string()
            } else {
                endpoint_url(registry)
            };
            let mut text = format!("server = {}\n", toml_str(&server));
            let endpoints: Vec<String> = match self.mirrors.get(registry) {
                Some(m) => m.endpoint.iter().map(|e| endpoint_url(e)).collect(),
                None => vec![server.clone()],
            };
            for url in endpoints {
                text.push_str(&format!(
                    "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
                    toml_str(&url)
                ));
                if let Some(tls) = tls_of(&url) {
                    if tls.insecure_skip_verify {
                        text.push_str("  skip_verify = true\n");
                    }
                    if let Some(ca) = &tls.ca_file {
                        text.push_str(&format!("  ca = {}\n", toml_str(ca)));
                    }
                    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                        text.push_str(&format!(
                            "  client = [[{}, {}]]\n",
                            toml_str(cert),
                            toml_str(key)
                        ));
                    }
                }
            }
            files.insert(registry.clone(), text);
        }
        files
    }

    /// Writes [`Registries::hosts_files`] into `dir` (containerd's `config_path`), replacing
    /// what an earlier configuration left there.
    pub fn write_hosts(&self, dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        for (registry, text) in self.hosts_files() {
            if registry.contains(['/', '\\']) || registry.starts_with('.') {
                tracing::warn!(%registry, "not a registry host; left out");
                continue;
            }
            let d = dir.join(&registry);
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("hosts.toml"), text)?;
        }
        Ok(())
    }

    /// The credentials configured for pulling `image`: those of its registry's mirrors, in
    /// their order, then the registry's own; each bound to its host.
    pub fn credentials(&self, image: &str) -> Vec<PullAuth> {
        let registry = registry_of(image);
        let mut urls: Vec<String> = self
            .mirrors
            .get(registry)
            .map(|m| m.endpoint.iter().map(|e| endpoint_url(e)).collect())
            .unwrap_or_default();
        urls.push(endpoint_url(registry));
        urls.iter()
            .filter_map(|url| {
                let auth = self.configs.get(host_of(url))?.auth.clone()?;
                Some(PullAuth {
                    server: url.clone(),
                    auth,
                })
            })
            .collect()
    }
}

/// The URL containerd contacts for `registry` when no mirror stands in.
fn registry_url(registry: &str) -> String {
    if registry == "docker.io" {
        "https://registry-1.docker.io".into()
    } else {
        endpoint_url(registry)
    }
}

/// The registry a docker config key names: its host, Docker Hub's aliases as `docker.io`.
fn key_registry(key: &str) -> &str {
    match host_of(key.trim()) {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

/// The credentials of one image pull secret for `image`: the entries of its docker config
/// (`.dockerconfigjson`'s `auths`, or a legacy `.dockercfg`) whose registry is the image's
/// (`*.example.com` matches one more label), each bound to that registry.
pub fn secret_credentials(
    data: &BTreeMap<String, Vec<u8>>,
    image: &str,
) -> Result<Vec<PullAuth>, String> {
    let (text, nested) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
        (Some(t), _) => (t, true),
        (None, Some(t)) => (t, false),
        (None, None) => return Err("it has no .dockerconfigjson or .dockercfg".into()),
    };
    let config: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("its docker config: {e}"))?;
    let entries = if nested { &config["auths"] } else { &config };
    let registry = registry_of(image);
    let matches = |key: &str| {
        let k = key_registry(key);
        k == registry
            || k.strip_prefix("*.").is_some_and(|suffix| {
                registry
                    .split_once('.')
                    .is_some_and(|(_, rest)| rest == suffix)
            })
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    Ok(entries
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| matches(key))
        .map(|(_, v)| PullAuth {
            server: registry_url(registry),
            auth: Auth {
                username: text(v, "username"),
                password: text(v, "password"),
                auth: text(v, "auth"),
                identitytoken: text(v, "identitytoken"),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - mirror.example.com
  "127.0.0.1:5000":
    endpoint: ["http://127.0.0.1:5000"]
configs:
  "127.0.0.1:5000":
    auth: {username: me, password: secret}
  mirror.example.com:
    tls: {insecure_skip_verify: true, ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem}
  private.example.com:
    auth: {auth: bWU6cHc=}
"#;

    fn parsed() -> Registries {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, FILE).unwrap();
        Registries::load(&path).unwrap()
    }

    #[test]
    fn mirrors_and_tls_become_hosts_files() {
        let files = parsed().hosts_files();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["127.0.0.1:5000", "docker.io", "mirror.example.com"]
        );
        assert_eq!(
            files["docker.io"],
            "server = \"https://registry-1.docker.io\"\n\
             \n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n\
             \n[host.\"https://mirror.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n  \
             skip_verify = true\n  ca = \"/ca.pem\"\n  client = [[\"/c.pem\", \"/k.pem\"]]\n"
        );
        assert!(
            files["mirror.example.com"].starts_with("server = \"https://mirror.example.com\"\n")
        );
    }

    #[test]
    fn credentials_go_to_their_own_host_only() {
        let r = parsed();
        let creds = r.credentials("nginx:1.25");
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].server, "http://127.0.0.1:5000");
        assert_eq!(creds[0].auth.username, "me");
        let creds = r.credentials("private.example.com/app:1");
        assert_eq!(creds[0].server, "https://private.example.com");
        assert!(r.credentials("quay.io/x/y").is_empty());
    }

    #[test]
    fn bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, "mirrors: [1, 2]").unwrap();
        let err = Registries::load(&path).unwrap_err();
        assert!(err.contains("r.yaml"), "{err}");
        std::fs::write(&path, "mirrors:\n  \"*\":\n    endpoint: [x]\n").unwrap();
        assert!(Registries::load(&path).unwrap_err().contains("\"*\""));
        assert!(Registries::load(&dir.path().join("none")).is_err());
    }

    #[test]
    fn pull_secrets_match_the_image_registry() {
        let secret =
            |key: &str, json: &str| BTreeMap::from([(key.to_string(), json.as_bytes().to_vec())]);
        let config = secret(
            ".dockerconfigjson",
            r#"{"auths": {"https://index.docker.io/v1/": {"username": "hub", "password": "p"},
                          "*.example.com": {"auth": "eDp5"},
                          "other.io": {"username": "o"}}}"#,
        );
        let hub = secret_credentials(&config, "busybox").unwrap();
        assert_eq!(hub.len(), 1);
        assert_eq!(
            (hub[0].server.as_str(), hub[0].auth.username.as_str()),
            ("https://registry-1.docker.io", "hub")
        );
        let glob = secret_credentials(&config, "r.example.com/a/b:1").unwrap();
        assert_eq!(glob[0].auth.auth, "eDp5");
        assert!(secret_credentials(&config, "a.b.example.com/x")
            .unwrap()
            .is_empty());
        let legacy = secret(".dockercfg", r#"{"127.0.0.1:5000": {"username": "me"}}"#);
        assert_eq!(
            secret_credentials(&legacy, "127.0.0.1:5000/x").unwrap()[0].server,
            "https://127.0.0.1:5000"
        );
        assert!(secret_credentials(&BTreeMap::new(), "x").is_err());
    }
}
