//! The real scalar types that the CPU reference and the scalar math shared with kernels (e.g.
//! [`crate::kernels::spectral::SpectralFn`]) are generic over.

/// A real scalar: `f32` (to compare bit-for-bit behaviour with the GPU) or `f64` (as ground
/// truth).
pub trait Real: nalgebra::RealField + Copy {
    /// Converts an f64 constant.
    fn c(v: f64) -> Self;
}

impl Real for f32 {
    fn c(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn c(v: f64) -> Self {
        v
    }
}
