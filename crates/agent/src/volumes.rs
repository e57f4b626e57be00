//! A pod's volumes on the node, as the kubelet sets them up: each under the pod's own
//! directory (`<agent dir>/pods/<uid>/volumes/<plugin>/<name>`), bind-mounted into the
//! containers that mount it.
//!
//! - `emptyDir`: a directory, or a tmpfs with `medium: Memory` (its size the `sizeLimit`);
//! - `hostPath`: the node's own path, checked (or made) as its `type` says;
//! - `configMap`, `secret`, `downwardAPI` and `projected` (of those three): files written
//!   atomically, as upstream's atomic writer does (the visible names are links into `..data`,
//!   which is swapped in one rename), so that an update of the ConfigMap or Secret reaches
//!   the running containers whole; Secrets' files live on a tmpfs, never on disk. Always
//!   read-only in the containers.
//!
//! A volume that cannot be set up (its ConfigMap missing and not `optional`, a hostPath of
//! the wrong type) holds the pod's containers back with the kubelet's `FailedMount` message.
//!
//! Also here: the pod's `/etc/hosts` (its own name and address, and `hostAliases`), which
//! every container of a pod off the host's network gets.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use crate::runtime::DnsConfig;

/// The file mode when neither the volume nor the item gives one (0644).
const DEFAULT_MODE: u32 = 0o644;
/// Where the atomic writer's current version is linked.
const DATA: &str = "..data";

/// What a container mounts: a host path at a path in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// A volume set up on the node: where it is, and whether containers may only read it.
#[derive(Clone, Debug)]
pub struct Ready {
    pub path: PathBuf,
    pub read_only: bool,
}

/// The directory of one pod's volumes and files on the node.
pub struct PodDir {
    dir: PathBuf,
}

impl PodDir {
    pub fn new(root: &Path, uid: &str) -> PodDir {
        PodDir {
            dir: root.join(uid),
        }
    }

    fn volume_dir(&self, plugin: &str, name: &str) -> PathBuf {
        self.dir.join("volumes").join(plugin).join(name)
    }

    /// Sets up (or brings up to date) every volume of `pod`; the error is the first failing
    /// volume's `FailedMount` message.
    pub async fn set_up(
        &self,
        client: &kube::Client,
        pod: &Pod,
        allocatable: &BTreeMap<String, Quantity>,
    ) -> Result<HashMap<String, Ready>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut objects = Objects {
            client,
            ns,
            read: HashMap::new(),
        };
        let mut ready = HashMap::new();
        for v in spec.volumes.iter().flatten() {
            let r = self
                .set_up_one(&mut objects, pod, v, allocatable)
                .await
                .map_err(|why| {
                    format!("MountVolume.SetUp failed for volume {:?} : {why}", v.name)
                })?;
            ready.insert(v.name.clone(), r);
        }
        Ok(ready)
    }

    async fn set_up_one(
        &self,
        objects: &mut Objects<'_>,
        pod: &Pod,
        v: &Volume,
        allocatable: &BTreeMap<String, Quantity>,
    ) -> Result<Ready, String> {
        let io = |path: &Path, e: io::Error| format!("{}: {e}", path.display());
        if let Some(e) = &v.empty_dir {
            let dir = self.volume_dir("kubernetes.io~empty-dir", &v.name);
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            if e.medium.as_deref() == Some("Memory") {
                let size = e
                    .size_limit
                    .as_ref()
                    .or(allocatable.get("memory"))
                    .and_then(|q| rudder_api::validation::Quantity::parse(&q.0))
                    .map(|q| q.nanos() / 1_000_000_000);
                mount_tmpfs(&dir, size).map_err(|e| io(&dir, e))?;
            }
            // Writable by whatever user the containers run as, as upstream's 0777.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io(&dir, e))?;
            return Ok(Ready {
                path: dir,
                read_only: false,
            });
        }
        if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            check_host_path(&path, h.type_.as_deref().unwrap_or(""))?;
            return Ok(Ready {
                path,
                read_only: false,
            });
        }
        let mut files = Vec::new();
        let plugin = if let Some(c) = &v.config_map {
            let name = c.name.as_str();
            if let Some(data) = objects.config_map(name, c.optional).await? {
                files = project(
                    &data,
                    c.items.as_deref(),
                    c.default_mode,
                    c.optional,
                    || format!("configmap {name:?}"),
                )?;
            }
            "kubernetes.io~configmap"
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or_default();
            if let Some(data) = objects.secret(name, s.optional).await? {
                files = project(
                    &data,
                    s.items.as_deref(),
                    s.default_mode,
                    s.optional,
                    || format!("secret {name:?}"),
                )?;
            }
            "kubernetes.io~secret"
        } else if let Some(d) = &v.downward_api {
            for item in d.items.iter().flatten() {
                files.push(downward(pod, item, d.default_mode, allocatable)?);
            }
            "kubernetes.io~downward-api"
        } else if let Some(p) = &v.projected {
            for source in p.sources.iter().flatten() {
                if let Some(c) = &source.config_map {
                    let name = c.name.as_str();
                    if let Some(data) = objects.config_map(name, c.optional).await? {
                        files.extend(project(
                            &data,
                            c.items.as_deref(),
                            p.default_mode,
                            c.optional,
                            || format!("configmap {name:?}"),
                        )?);
                    }
                }
                if let Some(s) = &source.secret {
                    let name = s.name.as_str();
                    if let Some(data) = objects.secret(name, s.optional).await? {
                        files.extend(project(
                            &data,
                            s.items.as_deref(),
                            p.default_mode,
                            s.optional,
                            || format!("secret {name:?}"),
                        )?);
                    }
                }
                if let Some(d) = &source.downward_api {
                    for item in d.items.iter().flatten() {
                        files.push(downward(pod, item, p.default_mode, allocatable)?);
                    }
                }
                // serviceAccountToken: the API server does not issue tokens yet (no
                // TokenRequest); the volume's other files are there.
            }
            "kubernetes.io~projected"
        } else {
            return Err(
                "this node does not support the volume's type yet (supported: emptyDir, \
                 hostPath, configMap, secret, downwardAPI, projected)"
                    .into(),
            );
        };
        let dir = self.volume_dir(plugin, &v.name);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        if v.secret.is_some() || v.projected.is_some() {
            // Secret data never reaches the disk.
            mount_tmpfs(&dir, None).map_err(|e| io(&dir, e))?;
        }
        write_atomically(&dir, &files).map_err(|e| io(&dir, e))?;
        Ok(Ready {
            path: dir,
            read_only: true,
        })
    }

    /// The mounts of container `c`: its volumeMounts over the volumes set up, then the pod's
    /// `/etc/hosts` (`hosts`) unless the container mounts its own.
    pub fn mounts(
        c: &Container,
        volumes: &HashMap<String, Ready>,
        hosts: Option<&Path>,
    ) -> Result<Vec<Mount>, String> {
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let v = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volume {:?} is not set up", m.name))?;
            let mut host_path = v.path.clone();
            let sub = m.sub_path.as_deref().unwrap_or("");
            if !sub.is_empty() {
                let rel = relative(sub).ok_or_else(|| {
                    format!("subPath {sub:?} must be a relative path within the volume")
                })?;
                host_path = host_path.join(rel);
                if !v.read_only && std::fs::symlink_metadata(&host_path).is_err() {
                    // As the kubelet does: a missing subPath of a writable volume is made.
                    std::fs::create_dir_all(&host_path)
                        .map_err(|e| format!("subPath {}: {e}", host_path.display()))?;
                }
                // A link inside the volume must not lead out of it.
                let real = host_path
                    .canonicalize()
                    .map_err(|e| format!("subPath {sub:?}: {e}"))?;
                let base = v.path.canonicalize().map_err(|e| format!("{e}"))?;
                if !real.starts_with(&base) {
                    return Err(format!("subPath {sub:?} leads outside the volume"));
                }
                host_path = real;
            }
            out.push(Mount {
                host_path,
                container_path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false) || v.read_only,
            });
        }
        if let Some(hosts) = hosts {
            if !out.iter().any(|m| m.container_path == "/etc/hosts") {
                out.push(Mount {
                    host_path: hosts.to_path_buf(),
                    container_path: "/etc/hosts".into(),
                    read_only: false,
                });
            }
        }
        Ok(out)
    }

    /// Writes the pod's `/etc/hosts` (as the kubelet's managed hosts file) and returns its path.
    pub fn write_hosts(&self, pod: &Pod, ip: Option<std::net::IpAddr>) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join("etc-hosts");
        let tmp = self.dir.join(".etc-hosts.tmp");
        std::fs::write(&tmp, hosts_file(pod, ip))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Removes everything of the pod on the node: its tmpfs mounts first, then its files.
    pub fn tear_down(&self) -> io::Result<()> {
        let volumes = self.dir.join("volumes");
        if let Ok(plugins) = std::fs::read_dir(&volumes) {
            for plugin in plugins.flatten() {
                for v in std::fs::read_dir(plugin.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    unmount(&v.path());
                }
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A ConfigMap's or Secret's data as files hold it.
type Data = BTreeMap<String, Vec<u8>>;

/// The ConfigMaps and Secrets of one set-up, each read once.
struct Objects<'a> {
    client: &'a kube::Client,
    ns: &'a str,
    read: HashMap<(Kind, String), Option<Data>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Objects<'_> {
    async fn config_map(
        &mut self,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<Data>, String> {
        self.data(Kind::ConfigMap, name, optional).await
    }

    async fn secret(&mut self, name: &str, optional: Option<bool>) -> Result<Option<Data>, String> {
        self.data(Kind::Secret, name, optional).await
    }

    /// The object's data (text and binary), or `None` when it is absent and `optional`.
    async fn data(
        &mut self,
        kind: Kind,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<Data>, String> {
        let what = match kind {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        };
        let key = (kind, name.to_string());
        if !self.read.contains_key(&key) {
            let failed = |e: kube::Error| format!("reading {what} {name:?}: {e}");
            let found = match kind {
                Kind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), self.ns)
                    .get_opt(name)
                    .await
                    .map_err(failed)?
                    .map(|c| {
                        let text = c
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()));
                        let binary = c
                            .binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0));
                        text.chain(binary).collect()
                    }),
                Kind::Secret => Api::<Secret>::namespaced(self.client.clone(), self.ns)
                    .get_opt(name)
                    .await
                    .map_err(failed)?
                    .map(|s| {
                        let data = s
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0));
                        let text = s
                            .string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()));
                        data.chain(text).collect()
                    }),
            };
            self.read.insert(key.clone(), found);
        }
        match self.read[&key].clone() {
            Some(d) => Ok(Some(d)),
            None if optional == Some(true) => Ok(None),
            None => Err(format!("{what} {name:?} not found")),
        }
    }
}

/// A file of a volume: its path in the volume, contents and mode.
type File = (PathBuf, Vec<u8>, u32);

/// The files of a ConfigMap's or Secret's `data`: every key, or the `items` listed (a missing
/// key is an error unless the source is `optional`).
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    what: impl Fn() -> String,
) -> Result<Vec<File>, String> {
    let mode = |m: Option<i32>| {
        m.or(default_mode)
            .map_or(DEFAULT_MODE, |m| (m as u32) & 0o777)
    };
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return data
            .iter()
            .map(|(k, v)| {
                let path = relative(k).ok_or_else(|| format!("invalid key {k:?} in {}", what()))?;
                Ok((path, v.clone(), mode(None)))
            })
            .collect();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(v) = data.get(&item.key) else {
            if optional == Some(true) {
                continue;
            }
            return Err(format!("couldn't find key {} in {}", item.key, what()));
        };
        let path = relative(&item.path).ok_or_else(|| format!("invalid path {:?}", item.path))?;
        out.push((path, v.clone(), mode(item.mode)));
    }
    Ok(out)
}

/// A downwardAPI file: a field of the pod (labels and annotations whole, one `key="value"`
/// per line) or a resource of one of its containers.
fn downward(
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    default_mode: Option<i32>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<File, String> {
    let mode = item
        .mode
        .or(default_mode)
        .map_or(DEFAULT_MODE, |m| (m as u32) & 0o777);
    let path = relative(&item.path).ok_or_else(|| format!("invalid path {:?}", item.path))?;
    let text = if let Some(f) = &item.field_ref {
        let map = match f.field_path.as_str() {
            "metadata.labels" => Some(&pod.metadata.labels),
            "metadata.annotations" => Some(&pod.metadata.annotations),
            _ => None,
        };
        match map {
            Some(m) => m
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect::<String>(),
            None => crate::env::field(pod, &f.field_path)?,
        }
    } else if let Some(r) = &item.resource_field_ref {
        let name = r.container_name.as_deref().unwrap_or_default();
        let c = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| format!("container {name:?} not found for resourceFieldRef"))?;
        crate::env::resource(c, &r.resource, r.divisor.as_ref(), allocatable)?
    } else {
        return Err(format!(
            "{:?}: neither fieldRef nor resourceFieldRef",
            item.path
        ));
    };
    Ok((path, text.into_bytes(), mode))
}

/// `p` as a path inside a volume: relative, without `..`, not empty.
fn relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !p.starts_with("..");
    ok.then(|| path.to_path_buf())
}

/// Writes `files` into `dir` as upstream's atomic writer: into a new hidden directory, then
/// `..data` swapped to it in one rename, the visible names being links through `..data`.
/// Nothing is written when the contents are the same.
fn write_atomically(dir: &Path, files: &[File]) -> io::Result<()> {
    let current = dir.join(DATA);
    if let Ok(target) = std::fs::read_link(&current) {
        let old = dir.join(&target);
        let same = files.iter().all(|(p, data, mode)| {
            std::fs::symlink_metadata(old.join(p))
                .is_ok_and(|m| m.is_file() && m.mode() & 0o777 == *mode)
                && std::fs::read(old.join(p)).is_ok_and(|d| &d == data)
        }) && count_files(&old) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}.{}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S"),
        rand::random::<u32>()
    );
    let new = dir.join(&stamp);
    std::fs::create_dir(&new)?;
    for (path, data, mode) in files {
        let file = new.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, data)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    let old = std::fs::read_link(&current).ok();
    std::fs::rename(&tmp, &current)?;
    // The visible names: one link per top-level name, through ..data.
    let top: std::collections::BTreeSet<_> = files
        .iter()
        .filter_map(|(p, _, _)| p.components().next().map(|c| c.as_os_str().to_owned()))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        if !name.as_bytes().starts_with(b"..") && !top.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Checks (or makes) a hostPath as its `type` says.
fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let shown = path.display();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!(
                "hostPath type check failed: {shown} is not a directory"
            )),
            Err(_) => {
                std::fs::create_dir_all(path).map_err(|e| format!("{shown}: {e}"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("{shown}: {e}"))
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("hostPath type check failed: {shown} is not a file")),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|_| ())
                .map_err(|e| format!("{shown}: {e}")),
        },
        _ => {
            let m =
                meta.map_err(|_| format!("hostPath type check failed: {shown} does not exist"))?;
            let t = m.file_type();
            let (ok, what) = match kind {
                "Directory" => (t.is_dir(), "a directory"),
                "File" => (t.is_file(), "a file"),
                "Socket" => (t.is_socket(), "a socket"),
                "CharDevice" => (t.is_char_device(), "a character device"),
                "BlockDevice" => (t.is_block_device(), "a block device"),
                other => return Err(format!("unknown hostPath type {other:?}")),
            };
            if ok {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not {what}"))
            }
        }
    }
}

/// Whether `dir` is a mount point (on another device than its parent).
fn is_mount(dir: &Path) -> bool {
    let (Ok(d), Some(Ok(p))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    d.dev() != p.dev()
}

/// Mounts a tmpfs at `dir` (of `size` bytes when given) unless one is there.
fn mount_tmpfs(dir: &Path, size: Option<i128>) -> io::Result<()> {
    if is_mount(dir) {
        return Ok(());
    }
    let target = CString::new(dir.as_os_str().as_bytes())?;
    let mut options = "mode=0755".to_string();
    if let Some(size) = size.filter(|s| *s > 0) {
        options.push_str(&format!(",size={size}"));
    }
    let options = CString::new(options)?;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unmount(dir: &Path) {
    if !is_mount(dir) {
        return;
    }
    if let Ok(target) = CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: umount2(2) with a NUL-terminated path; MNT_DETACH as the mount may be busy.
        unsafe {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// What a resolv.conf may hold, as the kubelet trims it.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The pod's resolv.conf as its dnsPolicy and dnsConfig say: `ClusterFirst` (the default; on
/// the host's network only with `ClusterFirstWithHostNet`) is the cluster DNS with the
/// namespace's, the cluster's and the node's search domains and `ndots:5`; `Default` is the
/// node's own; `None` only what dnsConfig gives, which the others are merged with. `None` as
/// the answer: the node's resolv.conf as it is.
pub fn dns_config(pod: &Pod, cluster_dns: Option<std::net::IpAddr>) -> Option<DnsConfig> {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let node =
        || parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let mut dns = match (policy, cluster, cluster_dns) {
        ("None", _, _) => DnsConfig::default(),
        (_, true, Some(server)) => {
            let mut searches = vec![
                format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ];
            searches.extend(node().searches);
            DnsConfig {
                servers: vec![server.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ if spec.dns_config.is_none() => return None,
        _ => node(),
    };
    if let Some(extra) = &spec.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !dns.servers.contains(s) {
                dns.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            dns.options
                .retain(|have| have.split(':').next() != Some(name.as_str()));
            dns.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns.servers.truncate(MAX_NAMESERVERS);
    dns.searches.truncate(MAX_SEARCHES);
    Some(dns)
}

/// The nameservers, search domains and options of a resolv.conf.
fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            // The last search line wins, as in the resolver.
            Some("search") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The kubelet's managed hosts file for a pod off the host's network.
fn hosts_file(pod: &Pod, ip: Option<std::net::IpAddr>) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let hostname = spec
        .hostname
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    if let Some(ip) = ip {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                out.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}\t{hostname}\n"
                ));
            }
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let pod = |policy: Option<&str>, host: bool, extra: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "team"},
                "spec": {"containers": [], "dnsPolicy": policy, "hostNetwork": host,
                         "dnsConfig": extra}
            }))
            .unwrap()
        };
        let dns: std::net::IpAddr = "10.43.0.10".parse().unwrap();
        let c = dns_config(&pod(None, false, serde_json::Value::Null), Some(dns)).unwrap();
        assert_eq!(c.servers, vec!["10.43.0.10"]);
        assert_eq!(
            &c.searches[..3],
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(c.options, vec!["ndots:5"]);
        // On the host's network ClusterFirst is the node's resolv.conf, unless asked for.
        assert_eq!(
            dns_config(&pod(None, true, serde_json::Value::Null), Some(dns)),
            None
        );
        let c = dns_config(
            &pod(
                Some("ClusterFirstWithHostNet"),
                true,
                serde_json::Value::Null,
            ),
            Some(dns),
        );
        assert_eq!(c.unwrap().servers, vec!["10.43.0.10"]);
        let extra = serde_json::json!({"nameservers": ["1.2.3.4"], "searches": ["x.example"],
                                       "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]});
        let c = dns_config(&pod(Some("None"), false, extra.clone()), Some(dns)).unwrap();
        assert_eq!(c.servers, vec!["1.2.3.4"]);
        assert_eq!(c.searches, vec!["x.example"]);
        assert_eq!(c.options, vec!["ndots:2", "edns0"]);
        let c = dns_config(&pod(None, false, extra), Some(dns)).unwrap();
        assert_eq!(c.servers, vec!["10.43.0.10", "1.2.3.4"]);
        assert_eq!(c.options, vec!["ndots:2", "edns0"]);
    }

    #[test]
    fn paths_stay_inside_the_volume() {
        assert!(relative("a/b").is_some());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "..data"] {
            assert!(relative(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn files_are_swapped_in_whole_and_old_names_go() {
        let d = tempfile::tempdir().unwrap();
        let f = |p: &str, s: &str| (PathBuf::from(p), s.as_bytes().to_vec(), 0o644);
        write_atomically(d.path(), &[f("a", "1"), f("dir/b", "2")]).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_to_string(d.path().join("dir/b")).unwrap(),
            "2"
        );
        let first = std::fs::read_link(d.path().join(DATA)).unwrap();
        // The same contents: nothing written.
        write_atomically(d.path(), &[f("a", "1"), f("dir/b", "2")]).unwrap();
        assert_eq!(std::fs::read_link(d.path().join(DATA)).unwrap(), first);
        // An update: the new version whole, the old one and its names gone.
        write_atomically(d.path(), &[f("a", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.path().join("dir")).is_err());
        assert!(!d.path().join(first).exists());
    }

    #[test]
    fn items_pick_keys_and_modes() {
        let data: BTreeMap<String, Vec<u8>> =
            [("k".to_string(), b"v".to_vec())].into_iter().collect();
        let items = [KeyToPath {
            key: "k".into(),
            path: "sub/file".into(),
            mode: Some(0o400),
        }];
        let files = project(&data, Some(&items), Some(0o644), None, || "cm".into()).unwrap();
        assert_eq!(
            files,
            vec![(PathBuf::from("sub/file"), b"v".to_vec(), 0o400)]
        );
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(project(&data, Some(&missing), None, None, || "cm".into()).is_err());
        assert!(
            project(&data, Some(&missing), None, Some(true), || "cm".into())
                .unwrap()
                .is_empty()
        );
    }
}
