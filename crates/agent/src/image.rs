//! Images made on the node, with no registry: an OCI image layout archive (one uncompressed
//! layer) that `ctr images import` and `rudder images import` take. The sandbox (pause) image is
//! made this way from the static program the build compiles (`pause/pause.c`); tests make
//! busybox images the same way.

use std::collections::BTreeMap;

use ring::digest::{digest, SHA256};
use serde_json::json;

/// The sandbox image every pod's sandbox runs, made by [`pause_archive`].
pub const PAUSE_IMAGE: &str = "rudder.local/pause:1";

/// The static pause program (`pause/pause.c`, compiled by build.rs).
const PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// One entry of an image's only layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// What an image is made of.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The full reference, e.g. `rudder.local/pause:1`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("writing the image archive: {0}")]
    Io(#[from] std::io::Error),
}

/// The OCI architecture name of this machine.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn sha256(data: &[u8]) -> String {
    let d = digest(&SHA256, data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The layer: a tar of the entries, owned by root, dated at the epoch so the same entries
/// always make the same digest.
fn layer(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match e {
            Entry::Dir { path } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            Entry::File { path, mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    b.into_inner()
}

/// The name's tag (what follows the last `:` after the last `/`), or `latest`.
fn tag(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// The image as an OCI image layout archive (a tar holding `oci-layout`, `index.json` and the
/// blobs), named by the `io.containerd.image.name` annotation.
pub fn archive(spec: &Spec) -> Result<Vec<u8>, Error> {
    if spec.name.is_empty() || spec.name.contains(char::is_whitespace) {
        return Err(Error::Invalid {
            name: spec.name.clone(),
            message: "an image needs a name without spaces".into(),
        });
    }
    let layer = layer(&spec.entries)?;
    let layer_digest = sha256(&layer);
    let mut config = BTreeMap::new();
    if !spec.entrypoint.is_empty() {
        config.insert("Entrypoint", json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        config.insert("Cmd", json!(spec.cmd));
    }
    if !spec.env.is_empty() {
        config.insert("Env", json!(spec.env));
    }
    if let Some(w) = &spec.working_dir {
        config.insert("WorkingDir", json!(w));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": architecture(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(std::io::Error::other)?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .map_err(std::io::Error::other)?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": architecture(), "os": "linux"},
            "annotations": {
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": tag(&spec.name),
            },
        }],
    }))
    .map_err(std::io::Error::other)?;
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let files: [(String, &[u8]); 5] = [
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
        (blob(&manifest_digest), &manifest),
        (blob(&config_digest), &config),
        (blob(&layer_digest), &layer),
    ];
    let mut out = tar::Builder::new(Vec::new());
    for dir in ["blobs", "blobs/sha256"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(0);
        out.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        out.append_data(&mut h, path, data)?;
    }
    Ok(out.into_inner()?)
}

/// The sandbox image: the pause program as `/pause`, its entrypoint.
pub fn pause_archive() -> Result<Vec<u8>, Error> {
    archive(&Spec {
        name: PAUSE_IMAGE.into(),
        entrypoint: vec!["/pause".into()],
        entries: vec![Entry::File {
            path: "pause".into(),
            mode: 0o755,
            data: PAUSE.to_vec(),
        }],
        ..Spec::default()
    })
}

/// A busybox image: a static `busybox` as `/bin/busybox`, each applet a link to it, `PATH=/bin`
/// and `sh` as its command (what tests and airgapped nodes run; Debian's busybox-static has
/// the binary at `/bin/busybox`).
pub fn busybox_archive(name: &str, busybox: Vec<u8>, applets: &[&str]) -> Result<Vec<u8>, Error> {
    archive(&busybox_spec(name, busybox, applets))
}

/// The [`Spec`] of [`busybox_archive`], for images made of busybox and more.
pub fn busybox_spec(name: &str, busybox: Vec<u8>, applets: &[&str]) -> Spec {
    let mut entries = vec![
        Entry::Dir { path: "bin".into() },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        },
    ];
    for applet in applets {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    Spec {
        name: name.into(),
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        entries,
        ..Spec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn files(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(archive);
        let mut out = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(path, data);
        }
        out
    }

    #[test]
    fn the_pause_archive_is_an_oci_layout_whose_digests_hold() {
        let a = pause_archive().unwrap();
        assert_eq!(a, pause_archive().unwrap(), "the same bytes every time");
        let f = files(&a);
        let index: serde_json::Value = serde_json::from_slice(&f["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            json!(PAUSE_IMAGE)
        );
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            json!("1")
        );
        let blob = |d: &serde_json::Value| {
            let d = d.as_str().unwrap();
            let data = &f[&format!("blobs/sha256/{}", &d[7..])];
            assert_eq!(sha256(data), d, "a blob's name is its digest");
            data.clone()
        };
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&m["digest"])).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
        let layer = blob(&manifest["layers"][0]["digest"]);
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            manifest["layers"][0]["digest"]
        );
        assert_eq!(config["config"]["Entrypoint"], json!(["/pause"]));
        let inner = files(&layer);
        assert_eq!(inner["pause"], PAUSE);
        assert!(PAUSE.starts_with(b"\x7fELF"));
    }

    #[test]
    fn tags_and_names() {
        assert_eq!(tag("rudder.local/pause:1"), "1");
        assert_eq!(tag("localhost:5000/busybox"), "latest");
        assert_eq!(tag("busybox"), "latest");
        assert!(archive(&Spec::default()).is_err());
    }
}
