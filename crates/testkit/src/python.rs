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

    /// Runs the official client's own suites with pytest and the `rudder_upstream` plugin
    /// (in `plugin_dir`: crates/rudder/tests/python/upstream), which holds the list of expected
    /// failures and skips with their reasons and fails the run on anything else: a failure, an
    /// error, a skip, a listed failure that passes, or a listed test that no longer exists.
    /// `suites` are pytest arguments; `e2e_dir`, when given, is RUDDER_PYTHON_E2E_DIR (and the
    /// working directory, from which upstream's test_utils reads its YAML files). Returns the plugin's `RUDDER-UPSTREAM` summary line; panics unless
    /// nothing failed and something passed.
    #[track_caller]
    pub fn python_upstream(
        &self,
        plugin_dir: &Path,
        suites: &[&str],
        e2e_dir: Option<&Path>,
    ) -> String {
        let mut cmd = self.python_cmd();
        cmd.env("PYTHONPATH", plugin_dir)
            .args([
                "-m",
                "pytest",
                "-p",
                "rudder_upstream",
                "-p",
                "no:cacheprovider",
            ])
            .args(["-q", "-rfEsx", "-o", "console_output_style=classic"])
            // Test modules by their paths (e2e_test and aio/e2e_test share a folder name).
            .arg("--import-mode=importlib")
            .current_dir(self.data_dir());
        if let Some(dir) = e2e_dir {
            cmd.env("RUDDER_PYTHON_E2E_DIR", dir).current_dir(dir);
        }
        cmd.args(suites);
        let out = cmd.output().expect("run python3 -m pytest");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail = || {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        };
        assert!(
            out.status.success(),
            "the client's suites failed against rudder ({}):\n{text}\n--- the end of the server's log\n{}",
            out.status,
            tail()
        );
        let summary = text
            .lines()
            .find(|l| l.starts_with("RUDDER-UPSTREAM "))
            .unwrap_or_else(|| panic!("no RUDDER-UPSTREAM summary line:\n{text}"));
        let count = |what: &str| -> usize {
            summary
                .split(' ')
                .find_map(|w| w.strip_prefix(&format!("{what}=")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {what}= in {summary}"))
        };
        assert_eq!(
            (count("failed"), count("error"), count("xpassed")),
            (0, 0, 0),
            "{summary}"
        );
        assert!(count("passed") > 0, "nothing passed: {summary}");
        summary.to_owned()
    }
}
