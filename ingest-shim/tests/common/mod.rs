#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod reconcile;
pub mod service;
