//! A `callrec serve` (or `callrec reconcile`) child process in a temporary folder, started on a
//! free loopback port and stopped (SIGTERM) or killed (SIGKILL) by the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789";

pub struct Service {
    pub child: Child,
    pub url: String,
    pub dir: Option<tempfile::TempDir>,
}

impl Service {
    pub fn start(env: &[(&str, &str)]) -> Service {
        Self::start_in(tempfile::tempdir().unwrap(), env)
    }

    /// Starts in `dir`, which may hold the data of an earlier run, and a `callrec.toml` to use.
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Service {
        Self::start_at(dir, "127.0.0.1:0", env)
    }

    pub fn start_at(dir: tempfile::TempDir, listen: &str, env: &[(&str, &str)]) -> Service {
        let mut args = vec!["serve", "--listen", listen];
        if dir.path().join("callrec.toml").is_file() {
            args.extend(["--config", "callrec.toml"]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(&args)
            .current_dir(dir.path())
            .env("CALLREC_SERVER__BEARER_TOKENS", format!("[\"{TOKEN}\"]"))
            .env("CALLREC_LOG", "warn")
            // Most tests upload without a CDR End: processed at once unless a test says otherwise.
            .env("CALLREC_SERVER__END_WAIT_S", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callrec serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Service {
            child,
            url,
            dir: Some(dir),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("the service has its folder")
            .path()
            .join("callrec-data")
    }

    /// SIGKILL: no chance to finish anything. Returns the folder for the next start.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().expect("the service has its folder")
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
