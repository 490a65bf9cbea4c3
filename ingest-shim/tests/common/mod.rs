#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod aws_proxy;
pub mod reconcile;
pub mod service;
