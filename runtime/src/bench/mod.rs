//! Benchmarks behind `jobstack bench`: each measures in one run and returns
//! figures as a serializable report, so ratios compare numbers taken together
//! on the same (possibly noisy) machine.

pub mod engine;
pub mod scheduler;
