//! Scripts that use the official Kubernetes Python client (`pip install kubernetes`), run
//! against a [`RudderServer`]: the server's kubeconfig in `KUBECONFIG`, as for any user.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::RudderServer;

/// The interpreter the scripts run with (from `PATH`; `scripts/test` installs the client into it).
pub const PYTHON: &str = "python3";

/// Lines of the server's log quoted when a script fails.
const LOG_TAIL_LINES: usize = 40;

impl RudderServer {
    /// A `python3` command pointed at this server: `KUBECONFIG` is its admin kubeconfig and
    /// `TMPDIR` its data dir (the dynamic client caches discovery there, per server URL); no
    /// `__pycache__` is written next to the scripts.
    pub fn python_cmd(&self) -> Command {
        let mut c = Command::new(PYTHON);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("TMPDIR", self.data_dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("PYTHONPATH")
            .stdin(Stdio::null());
        c
    }

    /// Runs `python3 script` and returns its standard output; panics unless it exits 0, with
    /// everything the script printed and the end of the server's log.
    #[track_caller]
    pub fn python(&self, script: &Path) -> String {
        let out = self
            .python_cmd()
            .arg(script)
            .output()
            .unwrap_or_else(|e| panic!("run {PYTHON} {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let hint = if stderr.contains("No module named 'kubernetes'") {
                "\nThe Kubernetes Python client is missing: scripts/test installs it \
                 (RUDDER_TEST_PIP in scripts/lib.sh), or `python3 -m pip install` that version.\n"
            } else {
                ""
            };
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            panic!(
                "{PYTHON} {} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}{hint}\
                 --- the end of the server's log\n{tail}",
                script.display(),
                out.status
            );
        }
        stdout.into_owned()
    }
}
