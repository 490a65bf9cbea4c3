//! Helpers shared by the end-to-end tests of the `callrec` binary.
#![allow(dead_code)]

pub mod ocp;
pub mod service;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root, where `fixtures/` is.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `callrec` binary with `args` from the workspace root.
pub fn callrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run callrec")
}
