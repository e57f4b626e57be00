//! The `fake` runtime (kwok-style): it keeps sandboxes and containers in memory and runs no
//! process. A started container runs until it is stopped, except one created to run to
//! completion (an init container), which exits 0 as soon as it starts; a stopped container
//! exits 0 at once, as a process that handles SIGTERM does. Images are "pulled" instantly.
//! One agent process can so act as thousands of nodes (`rudder agent --fake-nodes N`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use crate::logs::LogSource;
use crate::runtime::{
    Container, ContainerConfig, ContainerState, ContainerStats, ImageInfo, Result, Runtime,
    RuntimeError, Sandbox, SandboxConfig, SandboxState, StreamRequest,
};

#[derive(Default)]
pub struct Fake {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, FakeContainer>,
}

struct FakeContainer {
    container: Container,
    run_to_completion: bool,
    log: Vec<u8>,
}

fn new_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another worker panicked mid-update; the maps stay usable.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }
}

fn log_line(log: &mut Vec<u8>, what: &str) {
    log.extend_from_slice(crate::logs::record(Timestamp::now(), "stdout", what).as_bytes());
}

#[async_trait]
impl Runtime for Fake {
    fn version(&self) -> String {
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    }

    fn id_scheme(&self) -> &'static str {
        "fake"
    }

    fn poll_period(&self) -> Option<Duration> {
        None
    }

    fn simulated(&self) -> bool {
        true
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        crate::runtime::check_image_reference(image)?;
        Ok(Some(ImageInfo {
            id: image.to_string(),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        image: &str,
        _secrets: &[crate::registries::PullAuth],
    ) -> Result<String> {
        crate::runtime::check_image_reference(image)?;
        Ok(image.to_string())
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let sandbox = Sandbox {
            id: new_id(),
            state: SandboxState::Ready,
            ip: config.ip,
            created_at: Timestamp::now(),
            labels: config.labels.clone(),
        };
        self.with(|s| s.sandboxes.insert(sandbox.id.clone(), sandbox.clone()));
        Ok(sandbox)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        self.with(|s| {
            let now = Timestamp::now();
            for c in s.containers.values_mut() {
                if c.container.sandbox_id == id {
                    stop(c, now);
                }
            }
            match s.sandboxes.get_mut(id) {
                Some(sb) => {
                    sb.state = SandboxState::NotReady;
                    Ok(())
                }
                None => Err(RuntimeError::NotFound(format!("sandbox {id}"))),
            }
        })
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.with(|s| {
            s.containers.retain(|_, c| c.container.sandbox_id != id);
            s.sandboxes.remove(id);
        });
        Ok(())
    }

    async fn list_sandboxes(&self, pod_uid: Option<&str>) -> Result<Vec<Sandbox>> {
        Ok(self.with(|s| {
            s.sandboxes
                .values()
                .filter(|sb| {
                    pod_uid.is_none_or(|uid| {
                        sb.labels
                            .get(crate::runtime::POD_UID_LABEL)
                            .map(String::as_str)
                            == Some(uid)
                    })
                })
                .cloned()
                .collect()
        }))
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let id = new_id();
        self.with(|s| {
            if !s.sandboxes.contains_key(sandbox_id) {
                return Err(RuntimeError::NotFound(format!("sandbox {sandbox_id}")));
            }
            let mut log = Vec::new();
            log_line(&mut log, &format!("fake container {} created", config.name));
            let attempt = config.attempt;
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    container: Container {
                        id: id.clone(),
                        sandbox_id: sandbox_id.to_string(),
                        name: config.name.clone(),
                        image: config.image.clone(),
                        image_ref: config.image.clone(),
                        attempt,
                        state: ContainerState::Created,
                        labels: config.labels.clone(),
                    },
                    run_to_completion: config.run_to_completion,
                    log,
                },
            );
            Ok(id.clone())
        })
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.with(|s| {
            let c = s
                .containers
                .get_mut(id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
            let now = Timestamp::now();
            log_line(&mut c.log, "fake container started");
            c.container.state = if c.run_to_completion {
                log_line(&mut c.log, "fake container completed");
                ContainerState::Exited {
                    started_at: Some(now),
                    finished_at: now,
                    exit_code: 0,
                    reason: None,
                    message: None,
                }
            } else {
                ContainerState::Running { started_at: now }
            };
            Ok(())
        })
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        self.with(|s| match s.containers.get_mut(id) {
            Some(c) => {
                stop(c, Timestamp::now());
                Ok(())
            }
            None => Err(RuntimeError::NotFound(format!("container {id}"))),
        })
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.with(|s| s.containers.remove(id));
        Ok(())
    }

    async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<Container>> {
        Ok(self.with(|s| {
            s.containers
                .values()
                .filter(|c| c.container.sandbox_id == sandbox_id)
                .map(|c| c.container.clone())
                .collect()
        }))
    }

    async fn log_source(&self, container_id: &str) -> Result<LogSource> {
        self.with(|s| match s.containers.get(container_id) {
            Some(c) => Ok(LogSource::Memory(c.log.clone())),
            None => Err(RuntimeError::NotFound(format!("container {container_id}"))),
        })
    }

    async fn exec_sync(
        &self,
        _container_id: &str,
        _command: &[String],
        _timeout: Duration,
    ) -> Result<(i32, Vec<u8>)> {
        Err(RuntimeError::Unsupported(
            "the fake runtime runs no processes, so it cannot exec into a container".into(),
        ))
    }

    async fn stream_url(&self, _request: &StreamRequest) -> Result<String> {
        Err(RuntimeError::Unsupported(
            "the fake runtime runs no processes, so it has nothing to stream".into(),
        ))
    }

    async fn container_stats(&self) -> Result<Vec<ContainerStats>> {
        Err(RuntimeError::Unsupported(
            "the fake runtime runs no processes to measure".into(),
        ))
    }
}

fn stop(c: &mut FakeContainer, now: Timestamp) {
    if let ContainerState::Running { started_at } = c.container.state {
        log_line(&mut c.log, "fake container stopped");
        c.container.state = ContainerState::Exited {
            started_at: Some(started_at),
            finished_at: now,
            exit_code: 0,
            reason: None,
            message: None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn containers_run_until_stopped_and_init_containers_complete() {
        let rt = Fake::new();
        let sb = rt.run_sandbox(&SandboxConfig::default()).await.unwrap();
        let init = ContainerConfig {
            name: "init".into(),
            image: "busybox".into(),
            run_to_completion: true,
            ..Default::default()
        };
        let main = ContainerConfig {
            name: "main".into(),
            image: "nginx".into(),
            ..Default::default()
        };
        let i = rt.create_container(&sb.id, &init).await.unwrap();
        rt.start_container(&i).await.unwrap();
        let m = rt.create_container(&sb.id, &main).await.unwrap();
        rt.start_container(&m).await.unwrap();
        let state =
            |id: &str, all: &[Container]| all.iter().find(|c| c.id == id).unwrap().state.clone();
        let all = rt.list_containers(&sb.id).await.unwrap();
        assert!(matches!(
            state(&i, &all),
            ContainerState::Exited { exit_code: 0, .. }
        ));
        assert!(matches!(state(&m, &all), ContainerState::Running { .. }));
        rt.stop_sandbox(&sb.id).await.unwrap();
        let all = rt.list_containers(&sb.id).await.unwrap();
        assert!(matches!(
            state(&m, &all),
            ContainerState::Exited { exit_code: 0, .. }
        ));
        let log = crate::logs::read_all(rt.log_source(&m).await.unwrap(), Default::default())
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(log).unwrap(),
            "fake container main created\nfake container started\nfake container stopped\n"
        );
        rt.remove_sandbox(&sb.id).await.unwrap();
        assert!(rt.list_containers(&sb.id).await.unwrap().is_empty());
        assert!(rt.pull_image("bad image", &[]).await.is_err());
        assert!(rt.exec_sync(&m, &[], Duration::from_secs(1)).await.is_err());
    }
}
