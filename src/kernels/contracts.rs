//! What the Rust side of the kernels assumes about their WGSL, gathered in one place for
//! `tests/kernel_contracts.rs`, which parses every shader with naga and checks: each kernel's
//! entry point and workgroup size, its override constants, the layout of its parameter struct
//! field by field, and the constants both sides declare (status bits, tile sizes, mode ids).

use super::{
    dropout, elementwise, finite, jacobi, jacobi_block, matmul, norm, optim, reduce, softmax,
    spectral, transpose,
};
use crate::pipeline::{KernelSpec, Shader, SharedConstant};

/// Everything the Rust side assumes about the shaders.
#[derive(Clone, Debug)]
pub struct Contracts {
    /// Every typed kernel of the crate.
    pub kernels: Vec<KernelSpec>,
    /// Constants that a shader and Rust both declare.
    pub constants: Vec<SharedConstant>,
}

/// The parameters, status bits and helpers every Jacobi shader starts with.
const JACOBI_COMMON: Shader = Shader {
    name: "jacobi_common",
    subgroups: false,
    source: include_str!("../../shaders/jacobi_common.wgsl"),
};

/// The Jacobi solver's status bits, as `jacobi_common.wgsl` declares them.
const JACOBI_STATUS: [SharedConstant; 6] = [
    SharedConstant::u32(
        &JACOBI_COMMON,
        "NONFINITE_INPUT",
        jacobi::STATUS_NONFINITE_INPUT,
    ),
    SharedConstant::u32(
        &JACOBI_COMMON,
        "NONFINITE_WARM_START",
        jacobi::STATUS_NONFINITE_WARM_START,
    ),
    SharedConstant::u32(
        &JACOBI_COMMON,
        "NOT_CONVERGED",
        jacobi::STATUS_NOT_CONVERGED,
    ),
    SharedConstant::u32(&JACOBI_COMMON, "FINISHED", jacobi::STATUS_FINISHED),
    SharedConstant::u32(
        &JACOBI_COMMON,
        "WARM_START_REJECTED",
        jacobi::STATUS_WARM_START_REJECTED,
    ),
    SharedConstant::u32(
        &JACOBI_COMMON,
        "VALUES_OVERFLOW",
        jacobi::STATUS_VALUES_OVERFLOW,
    ),
];

/// The contracts of every kernel module.
pub fn contracts() -> Contracts {
    let kernels = [
        &elementwise::KERNELS[..],
        &dropout::KERNELS,
        &finite::KERNELS,
        &jacobi::KERNELS,
        &jacobi_block::KERNELS,
        &matmul::KERNELS,
        &norm::KERNELS,
        &optim::KERNELS,
        &reduce::KERNELS,
        &softmax::KERNELS,
        &spectral::KERNELS,
        &transpose::KERNELS,
    ]
    .concat();
    let constants = [
        &elementwise::CONSTANTS[..],
        &dropout::CONSTANTS,
        &finite::CONSTANTS,
        &matmul::CONSTANTS,
        &norm::CONSTANTS,
        &optim::CONSTANTS,
        &reduce::CONSTANTS,
        &softmax::CONSTANTS,
        &spectral::CONSTANTS,
        &transpose::CONSTANTS,
        &JACOBI_STATUS,
    ]
    .concat();
    Contracts { kernels, constants }
}
