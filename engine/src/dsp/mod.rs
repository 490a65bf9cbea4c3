//! Signal analysis and processing stages, one file each.

pub mod biquad;
pub mod design;
pub mod kweight;
pub mod levels;
pub mod loudness;
pub mod p56;
pub mod true_peak;
