//! Signal analysis and processing stages, one file each.

pub mod levels;
