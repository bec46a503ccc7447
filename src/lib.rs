//! # eigengrad
//!
//! Portable GPU training on raw `wgpu` compute shaders, centred on layers that
//! eigendecompose matrices on the GPU every step. `docs/ARCHITECTURE.md` draws the modules and
//! the path of one training step through them; the README shows what it does.
//!
//! Where to start: [`nn`] describes a model once ([`nn::Module`], [`nn::Sequential`]);
//! [`model`] compiles it into a training plan and an inference plan that shares its weights,
//! and evaluates over a [`data::Dataset`]; [`optim`] trains it, with a learning-rate
//! [`optim::Schedule`]; [`graph::checkpoint`] saves and loads it. Underneath, [`graph`] is
//! the op graph and its two executors, and [`kernels`] the WGSL kernels.
//!
//! ```no_run
//! use eigengrad::{Device, Tensor, kernels::elementwise::{unary, UnaryOp}};
//! let device = Device::new()?;
//! let x = Tensor::from_slice(&device, &[2, 2], &[-1.0, 0.5, 2.0, -3.0])?;
//! let y = unary(UnaryOp::Relu, &x)?;
//! assert_eq!(y.to_vec()?, vec![0.0, 0.5, 2.0, 0.0]);
//! # Ok::<(), eigengrad::Error>(())
//! ```
//!
//! ## Cargo features
//!
//! - `data` (default): the `data` module — in-memory datasets, MNIST-format IDX files, the
//!   stratified split, standardisation and the batcher — and the `model` module, which trains
//!   and evaluates classifiers on them.
//! - `digits` (off; the demos and the data tests turn it on): the scikit-learn 8×8 digits
//!   embedded without a download, through the `smartcore` crate.

#![warn(missing_docs)]

pub(crate) mod atomic_file;
#[cfg(feature = "data")]
pub mod data;
pub mod device;
pub mod error;
pub(crate) mod gl_lock;
pub mod graph;
pub mod kernels;
#[cfg(feature = "data")]
pub mod model;
pub mod nn;
pub mod optim;
pub mod pipeline;
pub mod profile;
pub mod reference;
pub mod scalar;
pub mod tensor;

pub use device::{Backend, Device, DeviceInfo, DeviceLimits, DeviceOptions};
pub use error::{Error, Result};
pub use kernels::jacobi::{eigh, eigh_warm, Eigh, EighOptions, EighVariant, WarmStart};
pub use tensor::Tensor;
pub use wgpu;

/// The README's examples, compiled by `cargo test` so that they cannot go stale (the
/// train-evaluate-save-reload one runs). They load the embedded digits, hence the `digits`
/// feature.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "digits"))]
pub struct ReadmeDoctests;
