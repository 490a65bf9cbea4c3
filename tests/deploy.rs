//! The deployment, proved on every change: `deploy/test.sh` applies the Terraform module to the
//! AWS emulator, builds the container image around this build's `callrec`, runs `callrec init
//! --check` and `callrec serve` from the image against what Terraform created, drives calls
//! through it and checks every one is stored as the stack promises, then destroys the stack and
//! stops what it started (dockerd, the emulator). What it needs and installs is in the script.

use std::process::Command;

#[test]
fn the_terraform_module_the_image_and_the_binary_work_together() {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg(format!("{root}/deploy/test.sh"))
        .arg(env!("CARGO_BIN_EXE_callrec"))
        .current_dir(root)
        .status()
        .expect("run deploy/test.sh");
    assert!(status.success(), "deploy/test.sh: {status}");
}
