//! CPU reference of every kernel, in nalgebra and plain Rust, generic over `f32` and `f64`.
//!
//! These functions are the oracle the tests compare the GPU against and the baseline the
//! benches measure beside it. They take and return row-major slices with explicit shapes,
//! exactly as the kernels see their buffers.

pub mod dropout;
pub mod eigh;
pub mod elementwise;
pub mod finite;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod reduce;
pub mod softmax;
pub mod spectral;
pub mod transpose;

/// The scalar types the reference runs in (defined in [`crate::scalar`]).
pub use crate::scalar::Real;
