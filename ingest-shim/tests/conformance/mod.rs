//! Conformance suites shared by every backend's test file.

#![allow(
    dead_code,
    reason = "each test binary runs the suites of its own trait"
)]

pub mod calls;
pub mod objects;
