//! Signal analysis and processing stages, one file each.

pub mod biquad;
pub mod design;
pub mod frames;
pub mod gain;
pub mod kfilter;
pub mod kweight;
pub mod levels;
pub mod loudness;
pub mod p56;
pub mod resample;
pub mod silence;
pub mod spectrum;
pub mod stereo;
pub mod true_peak;
