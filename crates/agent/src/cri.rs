//! A client of a container runtime's CRI (containerd's `io.containerd.grpc.v1.cri` plugin) over
//! its Unix socket: the `RuntimeService` and `ImageService` of CRI v1 (`k8s-cri` types, tonic).
//! The agent's `cri` runtime is built on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// How long one CRI call may take before it is given up (pulls excepted: they take their own).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the container runtime at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("container runtime: {0}")]
    Call(#[from] tonic::Status),
}

/// The two CRI services over one connection.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI at `socket` (a path, or `unix://PATH` as kubelet flags spell it).
    pub async fn connect(socket: &Path) -> Result<Cri, Error> {
        let path: PathBuf = socket
            .to_str()
            .and_then(|s| s.strip_prefix("unix://"))
            .map_or_else(|| socket.to_path_buf(), PathBuf::from);
        let target = path.clone();
        // The URI is not used: every connection is the socket.
        let channel = Endpoint::from_static("http://cri.invalid")
            .timeout(CALL_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let target = target.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(target).await?,
                    ))
                }
            }))
            .await
            .map_err(|source| Error::Connect { path, source })?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// Stops and removes every pod sandbox the runtime holds, with its containers and its
    /// network (its CNI DEL): for tests and benchmarks, whose nodes must leave nothing running
    /// behind. A sandbox that will not go is left.
    pub async fn remove_all_sandboxes(&self) -> Result<(), Error> {
        let mut runtime = self.runtime.clone();
        let list = runtime
            .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
            .await?;
        for sb in list.into_inner().items {
            let id = sb.id;
            let _ = runtime
                .stop_pod_sandbox(api::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = runtime
                .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        }
        Ok(())
    }

    /// Every image the runtime holds.
    pub async fn list_images(&self) -> Result<Vec<api::Image>, Error> {
        Ok(self
            .images
            .clone()
            .list_images(api::ListImagesRequest { filter: None })
            .await?
            .into_inner()
            .images)
    }

    /// The runtime's name and version, and the CRI version it speaks.
    pub async fn version(&self) -> Result<api::VersionResponse, Error> {
        Ok(self
            .runtime
            .clone()
            .version(api::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner())
    }

    /// The image's status, or `None` when the runtime does not have it.
    pub async fn image(&self, name: &str) -> Result<Option<api::Image>, Error> {
        Ok(self
            .images
            .clone()
            .image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: name.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner()
            .image)
    }
}
