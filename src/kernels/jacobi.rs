//! Batched symmetric eigensolver: two-sided cyclic Jacobi on the GPU, the kernel the Eigen
//! layers stand on.
//!
//! For a batch of symmetric matrices A (`[batch, n, n]`, or one `[n, n]`) it returns the
//! eigenvalues in ascending order (the LAPACK/PyTorch order) and orthonormal eigenvectors,
//! column j of `vectors` belonging to `values[j]`, each with the sign that makes its
//! largest-magnitude component positive (the first such component on ties). An asymmetric
//! input is replaced by its symmetric part (A + Aᵀ)/2. [`eigh`] and [`eigh_warm`] run once;
//! an [`EighPlan`] is built once and recorded every step. Every setting lives in
//! [`EighOptions`]: tolerance, sweep limits, where runs start ([`WarmStart`]) and which solver
//! runs ([`EighVariant`]).
//!
//! # Algorithm
//! - Parallel round-robin (Brent–Luk) ordering: a round rotates m/2 disjoint pairs at once
//!   (m = n rounded up to even, a dummy index for odd n), m − 1 rounds make a sweep.
//! - Rutishauser's update: t = sign(θ)/(|θ| + √(θ² + 1)) with θ = (a_qq − a_pp)/(2a_pq), then
//!   a_pq = 0 exactly, a_pp −= t·a_pq, a_qq += t·a_pq; the other rows and columns of A and the
//!   columns of V are rotated.
//! - Demmel–Veselić stopping: a_pq is negligible when |a_pq| ≤ tol·√|a_pp|·√|a_qq| (or below
//!   1e-30·‖A‖_F); negligible pairs are not rotated, and a matrix has converged when every
//!   off-diagonal entry is negligible, which implies off(A) ≤ tol·√n·‖A‖_F. This relative test
//!   is what gives Jacobi its high relative accuracy on graded matrices (the small eigenvalues
//!   of D·R·D keep their digits); its price is that the roundoff-level null space of a
//!   rank-deficient matrix is resolved too, which costs a few more sweeps there.
//! - The test runs on the device before every sweep; converged matrices stop doing work and
//!   the number of sweeps each matrix needed is recorded.
//! - Range: the prologue multiplies each matrix by the power of two 2^e that brings its
//!   largest entry into [2, 4) — exact, so the solver sees the same matrix whether its entries
//!   are near 3e38 (whose rotations would overflow) or subnormal (whose off-diagonal entries
//!   would pass for negligible) — and the epilogue divides the eigenvalues by 2^e. A finite
//!   matrix whose spectrum exceeds f32::MAX is flagged ([`STATUS_VALUES_OVERFLOW`]), never
//!   returned as NaN.
//!
//! # Accuracy
//! The rotations round every column of V about (n − 1)·sweeps times, a random walk of
//! ~ε·√(n·sweeps) away from the eigenvectors, and the diagonal they leave carries the same.
//! The epilogue measures both against the input afresh: the eigenvalues are the Rayleigh
//! quotients d_j = w_jᵀ·A·w_j of the orthonormalised vectors, and each vector gets the
//! first-order correction w_j += Σ_k w_k·c_kj/(d_j − d_k), c_kj = w_kᵀ·A·w_j, for the pairs
//! that are well separated (|c_kj| < 2⁻¹²·|d_j − d_k|). Measured on lavapipe against f64,
//! random and rank-deficient Gram matrices: residual ‖AV − VΛ‖_F/‖A‖_F 1.4e-7 (n = 16) to
//! 8.2e-7 (n = 512), eigenvalue error 1.5e-7 to 9.1e-7·‖A‖₂ — LAPACK `ssyevd` in f32 gets
//! 1.1e-6 and 9e-7 — with ‖VᵀV − I‖_F ≈ 0.1·n·ε (LAPACK ~0.5·n·ε) and graded matrices still
//! at ≤ 0.3·n·ε relative error in every eigenvalue. Before the epilogue measured them, the
//! residual grew to 1.4e-5 and the eigenvalue error to 9e-6 at n = 512.
//!
//! # Kernels
//! All in one command buffer, with no host round trip:
//! - a prologue, one workgroup per matrix: finiteness check, scaling, symmetrisation, ‖A‖_F,
//!   V = I — or, for a warm run, then V0ᵀ·A·V0 and V = V0 in two tiled products, with the
//!   largest |(V0ᵀV0 − I)_ij|, and a fallback to the cold start where that is too large;
//! - n ≤ 32 (and n ≤ 64 where the device has the ~25 KiB of workgroup memory it needs): one
//!   workgroup per matrix with A (packed upper triangle) and Vᵀ in workgroup memory, which
//!   tests and sweeps until convergence or the run's budget — in one dispatch for the whole
//!   solve ([`EighVariant::SmallOneDispatch`]), or one dispatch per sweep
//!   ([`EighVariant::SmallPerSweep`]) where the adapter ends long invocations (llvmpipe stops
//!   any invocation after 65,535 loop iterations, about 31 sweeps at n = 64); a finished
//!   matrix costs a dispatch one status read;
//! - larger n ([`EighVariant::Blocked`], see [`jacobi_block`](super::jacobi_block)): blocked
//!   Jacobi with A and Vᵀ in storage buffers. The order is split into 2k = 2⌈n/64⌉ blocks of
//!   b ≤ 32 indices; a round of the round-robin schedule over the blocks makes two dispatches
//!   — `block_solve` sweeps the k disjoint 2b×2b block-pair problems in workgroup memory,
//!   `block_apply` applies their rotations to the rest of A and to Vᵀ as tiled 2b×2b products
//!   — so a sweep is 2(2k − 1) + 2 dispatches with the convergence `check` (16 at n = 256, 32
//!   at n = 512) instead of the 2(n − 1) of a scalar ordering. The round dispatches are
//!   *indirect*, sized by the check to the matrices still iterating, so converged work costs
//!   an empty dispatch. A round of B matrices spreads over B·k solve and
//!   B·(k(k − 1)/2 + k·⌈n/2b⌉) tile workgroups (100 for one 512×512 matrix);
//! - an epilogue: a Newton–Schulz step V ← V(3I − VᵀV)/2 (the rotations leave ‖VᵀV − I‖_F ≈
//!   1.5·n^1.5·ε), the Rayleigh quotients and the first-order correction (four tiled or
//!   per-value kernels), a second Newton–Schulz step (the correction's second-order XᵀX), the
//!   rank sort of the eigenvalues with the division by 2^e, sign normalisation, and the
//!   gather into ascending order.
//!
//! The work per matrix grows with n³ on both paths, and the blocked path pads n only to a
//! multiple of 2k (n = 65 runs four blocks of 17), so the time per matrix has no cliff where
//! one hands over to the other (33 or 65) or where the blocked path adds blocks (129). Every kernel keeps the loop iterations of one
//! invocation below 65,535 on llvmpipe; the one-dispatch solver is refused there where it
//! would not ([`EighVariant::Auto`] then records per sweep).
//!
//! # Variants
//! [`EighVariant::Auto`] takes the one-workgroup variant that tuning ([`SmallEigh`], through
//! the kernels' common [`autotune`]) measured fastest on the adapter (cached
//! per adapter in memory and on disk, like matmul's), else one
//! dispatch per sweep on CPU adapters and one dispatch elsewhere; larger orders go to the
//! blocked path. Tests force each variant explicitly.
//!
//! # Warm start
//! With a warm start V0 (orthogonal, e.g. the previous step's eigenvectors) the solver works on
//! V0ᵀ·A·V0, which is nearly diagonal when A moved little, and returns V0·J₁·J₂·…: one or two
//! sweeps instead of six to nine. Only the prologue reads V0, so an [`EighPlan`]'s V0 buffer
//! may be refreshed from its own `vectors` output between steps
//! ([`EighPlan::record_feedback`]); [`WarmStart::Feedback`] plans start cold at run 0 and
//! every `cold_restart_every` runs. The Newton–Schulz steps keep fed-back vectors from
//! drifting. A V0 that is not orthogonal (or a V0 buffer never written) is detected in the
//! prologue and that matrix solved from a cold start ([`STATUS_WARM_START_REJECTED`]).
//!
//! Warm runs record only [`EighOptions::warm_sweeps`] sweeps (default 3) on the per-sweep
//! and blocked paths: warm starts in training converge in 1–3. A matrix that needs more — a large step, a
//! rejected V0 — ends the run flagged [`STATUS_NOT_CONVERGED`] with orthonormal vectors and
//! Rayleigh-quotient eigenvalues, and the next run, fed back from them, continues where it
//! stopped. The one-dispatch solver needs no such budget: it loops on the device until
//! convergence or `max_sweeps` at no cost when it is not needed.

use super::autotune::{self, Trial, Tunable, Variant};
use super::jacobi_block::{largest_block, BlockedSweeps, Working};
use super::{grid_1d, same_device, to_u32, Dispatch, Kernel, Shader};
use crate::device::{Device, DeviceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, Override};
use crate::tensor::{read_words, Tensor};
use std::sync::Arc;

/// A Jacobi shader: jacobi_common.wgsl (the parameters, status bits and helpers every kernel
/// shares), then the named files.
macro_rules! jacobi_shader {
    ($name:literal, $($file:literal),+) => {
        Shader {
            name: $name,
            subgroups: false,
            source: concat!(
                include_str!("../../shaders/jacobi_common.wgsl"),
                $(include_str!(concat!("../../shaders/", $file))),+
            ),
        }
    };
}
pub(super) use jacobi_shader;

const PREP: Shader = jacobi_shader!("jacobi_prep", "jacobi_input.wgsl", "jacobi_prep.wgsl");
const WARM: Shader = jacobi_shader!("jacobi_warm", "jacobi_warm.wgsl");
const SMALL: Shader = jacobi_shader!("jacobi_small", "jacobi_small.wgsl");
const ORTHO: Shader = jacobi_shader!("jacobi_ortho", "jacobi_ortho.wgsl");
const RAYLEIGH: Shader = jacobi_shader!(
    "jacobi_rayleigh",
    "jacobi_input.wgsl",
    "jacobi_rayleigh.wgsl"
);
const RANK: Shader = jacobi_shader!("jacobi_rank", "jacobi_rank.wgsl");
const GATHER: Shader = jacobi_shader!("jacobi_gather", "jacobi_gather.wgsl");

/// A kernel of the solver outside the blocked path: `entry` of `shader`, `wg` invocations.
const fn kernel(shader: &'static Shader, entry: &'static str, wg: u32) -> Kernel<Params> {
    Kernel::new(shader, entry, [wg, 1, 1])
}

const INIT: Kernel<Params> = kernel(&PREP, "init", WG_MATRIX);
const WARM_FALLBACK: Kernel<Params> = kernel(&PREP, "warm_fallback", WG_MATRIX);
const WARM_PRODUCT: Kernel<Params> = kernel(&WARM, "warm_product", WG_TILE);
const WARM_CONGRUENCE: Kernel<Params> = kernel(&WARM, "warm_congruence", WG_TILE);
/// The one-workgroup sweeps for orders up to 32 and up to 64 (the `NMAX` override sizes the
/// workgroup arrays).
const SOLVE_SMALL32: Kernel<Params> =
    kernel(&SMALL, "solve_small", WG_SMALL as u32).with_overrides(&[Override::u32("NMAX", 32)]);
const SOLVE_SMALL64: Kernel<Params> =
    kernel(&SMALL, "solve_small", WG_SMALL as u32).with_overrides(&[Override::u32("NMAX", 64)]);
const GRAM: Kernel<Params> = kernel(&ORTHO, "gram", WG_TILE);
const CORRECT: Kernel<Params> = kernel(&ORTHO, "correct", WG_TILE);
const RQ_PRODUCT: Kernel<Params> = kernel(&RAYLEIGH, "rq_product", WG_TILE);
const RQ_VALUES: Kernel<Params> = kernel(&RAYLEIGH, "rq_values", WG_PER_PAIR);
const COUPLING: Kernel<Params> = kernel(&RAYLEIGH, "coupling", WG_TILE);
const REFINE: Kernel<Params> = kernel(&RAYLEIGH, "refine", WG_TILE);
const RANK_VALUES: Kernel<Params> = kernel(&RANK, "rank", WG_PER_PAIR);
const SIGN: Kernel<Params> = kernel(&GATHER, "sign", WG_PER_PAIR);
const GATHER_VECTORS: Kernel<Params> = kernel(&GATHER, "gather", WG_FLAT);

/// Every kernel of the solver outside the blocked path (checked by the contract test).
pub(super) const KERNELS: [KernelSpec; 15] = [
    INIT.spec(),
    WARM_FALLBACK.spec(),
    WARM_PRODUCT.spec(),
    WARM_CONGRUENCE.spec(),
    SOLVE_SMALL32.spec(),
    SOLVE_SMALL64.spec(),
    GRAM.spec(),
    CORRECT.spec(),
    RQ_PRODUCT.spec(),
    RQ_VALUES.spec(),
    COUPLING.spec(),
    REFINE.spec(),
    RANK_VALUES.spec(),
    SIGN.spec(),
    GATHER_VECTORS.spec(),
];

/// Workgroup sizes of the kernels, as declared in their WGSL.
/// `TILE_WG` of jacobi_common.wgsl: the kernels computing 4×4 tiles of n×n products.
const WG_TILE: u32 = 64;
const WG_FLAT: u32 = 64;
const WG_PER_PAIR: u32 = 64;
/// `WG` of jacobi_small.wgsl.
const WG_SMALL: u64 = 64;
/// `WG` of jacobi_prep.wgsl: the kernels with one workgroup per matrix.
const WG_MATRIX: u32 = 256;
/// Size in bytes of one `Rot` record (c, s, i, j).
const ROT_BYTES: u64 = 16;
/// The most sweeps a plan may record (cuSOLVER's `syevj` default cap).
pub const MAX_SWEEPS: u32 = 100;
/// The largest order solved: the blocked path's convergence check loops over n²/512 entries
/// per invocation, which must stay well below the 65,535 loop iterations llvmpipe allows one
/// invocation.
pub const MAX_ORDER: usize = 2048;
/// Default of [`EighOptions::tolerance`]: 10·ε_f32 ≈ 1.2e-6.
pub const DEFAULT_TOLERANCE: f32 = 10.0 * f32::EPSILON;
/// Default of [`EighOptions::max_sweeps`].
pub const DEFAULT_MAX_SWEEPS: u32 = 15;
/// Default of [`EighOptions::warm_sweeps`].
pub const DEFAULT_WARM_SWEEPS: u32 = 3;
/// Default period of [`WarmStart::Feedback`]: warm-started solves feed each run's eigenvectors
/// into the next; the closing Newton–Schulz step keeps them orthogonal, and a cold start every
/// this many runs bounds whatever else a long chain of warm starts could accumulate.
pub const DEFAULT_COLD_RESTART_EVERY: u64 = 100;

/// Status bit: the input matrix holds NaN or Inf.
pub const STATUS_NONFINITE_INPUT: u32 = 1;
/// Status bit: the warm start V0 holds NaN or Inf.
pub const STATUS_NONFINITE_WARM_START: u32 = 2;
/// Status bit: the run's sweep budget ran out before the convergence test passed (the result
/// is orthonormal and usable, only less accurate; a warm start fed back from it continues).
pub const STATUS_NOT_CONVERGED: u32 = 4;
/// Status bit: the solve of this matrix has ended (set for every matrix after a run).
pub const STATUS_FINISHED: u32 = 8;
/// Status bit: the warm start V0 was not orthogonal (some |(V0ᵀV0 − I)_ij| over
/// 4·max(n, 16)·ε), so this matrix was solved from a cold start instead.
pub const STATUS_WARM_START_REJECTED: u32 = 16;
/// Status bit: an eigenvalue lies outside the f32 range (|λ| > f32::MAX); the matrix's
/// entries are finite but its spectrum is not representable.
pub const STATUS_VALUES_OVERFLOW: u32 = 32;

/// Where a plan's runs start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarmStart {
    /// Every run starts cold, from V = I; the plan has no V0 buffer.
    #[default]
    Off,
    /// Every run starts from the plan's V0 buffer, which the caller fills (or refreshes from
    /// the last run with [`EighPlan::record_feedback`]).
    Given,
    /// Runs feed their eigenvectors back into V0 ([`EighPlan::record_feedback`]): run 0 and
    /// every multiple of `cold_restart_every` start cold, the others from the last result.
    Feedback {
        /// Period of the cold starts, in runs (at least 1).
        cold_restart_every: u64,
    },
}

impl WarmStart {
    /// Feedback with the default period [`DEFAULT_COLD_RESTART_EVERY`].
    pub fn feedback() -> WarmStart {
        WarmStart::Feedback {
            cold_restart_every: DEFAULT_COLD_RESTART_EVERY,
        }
    }
}

/// Which solver a plan runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EighVariant {
    /// n ≤ 64 (n ≤ 32 where the device lacks the ~25 KiB of workgroup memory n = 64 needs):
    /// the small-matrix variant [`SmallEigh`]'s tuning chose on this device, else its default
    /// (per sweep on CPU adapters, one dispatch elsewhere) — per sweep wherever one dispatch
    /// would run past a CPU adapter's loop cap. Larger n: [`EighVariant::Blocked`].
    #[default]
    Auto,
    /// One workgroup per matrix, A and V in workgroup memory, one dispatch per sweep: what
    /// llvmpipe needs (it ends an invocation silently after 65,535 loop iterations).
    SmallPerSweep,
    /// One workgroup per matrix, A and V in workgroup memory, the whole solve in one
    /// dispatch. On CPU adapters only where it stays under the loop cap (an error otherwise).
    SmallOneDispatch,
    /// Blocked Jacobi (see [`jacobi_block`](super::jacobi_block)) at any order, with the
    /// largest blocks the device allows (32 indices, or 16 with little workgroup memory).
    Blocked,
    /// [`EighVariant::Blocked`] with blocks of at most `max_block` indices: small blocks give
    /// small orders many blocks (for tests), or trade dispatches for smaller tiles.
    BlockedWith {
        /// The largest block size, 1 to the device's largest.
        max_block: usize,
    },
}

impl EighVariant {
    /// The two one-workgroup variants, which [`SmallEigh`]'s tuning chooses between.
    pub const SMALL: [EighVariant; 2] = [EighVariant::SmallPerSweep, EighVariant::SmallOneDispatch];

    /// The variant's name, as the autotune cache stores it.
    pub fn name(self) -> &'static str {
        match self {
            EighVariant::Auto => "Auto",
            EighVariant::SmallPerSweep => "SmallPerSweep",
            EighVariant::SmallOneDispatch => "SmallOneDispatch",
            EighVariant::Blocked => "Blocked",
            EighVariant::BlockedWith { .. } => "BlockedWith",
        }
    }

    /// The one-workgroup variant [`EighVariant::Auto`] uses on `device`: the one
    /// [`SmallEigh`]'s tuning chose there, if it ran on this device; else its default (per
    /// sweep on CPU adapters, one dispatch elsewhere).
    pub fn small_for_device(device: &Device) -> EighVariant {
        autotune::variant::<SmallEigh>(device)
    }
}

/// Options of [`EighPlan::new`], [`eigh`] and [`eigh_warm`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EighOptions {
    /// Relative tolerance of the convergence test: a_pq counts as zero once
    /// |a_pq| ≤ tolerance·√|a_pp·a_qq|, so that off(A) ≤ tolerance·√n·‖A‖_F at convergence.
    /// Default [`DEFAULT_TOLERANCE`].
    pub tolerance: f32,
    /// Sweeps after which a cold run stops even if not converged (default
    /// [`DEFAULT_MAX_SWEEPS`]; at most [`MAX_SWEEPS`]).
    pub max_sweeps: u32,
    /// Sweeps a warm-started run of a plan records on the per-sweep path (default
    /// [`DEFAULT_WARM_SWEEPS`], at most `max_sweeps`): warm starts in training converge in
    /// 1–3. A matrix that needs more ends the run with [`STATUS_NOT_CONVERGED`], its vectors
    /// orthonormal, and the next run fed back from them continues where it stopped. The
    /// one-dispatch variant loops on the device until convergence or `max_sweeps` instead,
    /// and the one-shot [`eigh_warm`] allows `max_sweeps`.
    pub warm_sweeps: u32,
    /// Where runs of an [`EighPlan`] start from (default [`WarmStart::Off`]). [`eigh`] and
    /// [`eigh_warm`] run once: they start from I and from the V0 they are given.
    pub warm_start: WarmStart,
    /// Which solver to run (default [`EighVariant::Auto`]).
    pub variant: EighVariant,
}

impl Default for EighOptions {
    fn default() -> Self {
        EighOptions {
            tolerance: DEFAULT_TOLERANCE,
            max_sweeps: DEFAULT_MAX_SWEEPS,
            warm_sweeps: DEFAULT_WARM_SWEEPS,
            warm_start: WarmStart::Off,
            variant: EighVariant::Auto,
        }
    }
}

impl EighOptions {
    /// `InvalidArgument` for a negative or non-finite tolerance, more than [`MAX_SWEEPS`]
    /// sweeps, or a zero cold-restart period.
    fn validate(&self) -> Result<()> {
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "eigh: tolerance must be finite and non-negative, got {}",
                self.tolerance
            )));
        }
        if self.max_sweeps > MAX_SWEEPS {
            return Err(Error::InvalidArgument(format!(
                "eigh: max_sweeps {} is over the cap of {MAX_SWEEPS}",
                self.max_sweeps
            )));
        }
        if let WarmStart::Feedback {
            cold_restart_every: 0,
        } = self.warm_start
        {
            return Err(Error::InvalidArgument(
                "eigh: cold_restart_every must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The result of [`eigh`] and [`eigh_warm`]: eigenvalues, eigenvectors and per-matrix solver
/// statistics.
#[derive(Debug)]
pub struct Eigh {
    /// Eigenvalues in ascending order, `[batch, n]` (`[n]` for a single `[n, n]` input).
    pub values: Tensor,
    /// Eigenvectors, `[batch, n, n]` (`[n, n]` for a single input): column j of each matrix
    /// belongs to `values[j]`.
    pub vectors: Tensor,
    /// Whether each matrix met the tolerance within `max_sweeps`.
    pub converged: Vec<bool>,
    /// The number of sweeps each matrix needed (0 for an input that is already diagonal).
    pub sweeps: Vec<u32>,
    /// Whether each matrix's warm start was rejected as not orthogonal (it was then solved
    /// from a cold start; always false for [`eigh`]).
    pub warm_start_rejected: Vec<bool>,
}

/// Shape rule of [`eigh`]: `[n, n]` or `[batch, n, n]`; returns `(batch, n)`.
pub fn eigh_shape(shape: &[usize]) -> Result<(usize, usize)> {
    match *shape {
        [r, c] if r == c => Ok((1, r)),
        [b, r, c] if r == c => Ok((b, r)),
        _ => Err(Error::shape(
            "eigh",
            format!("expected a square matrix [n, n] or a batch [batch, n, n], got {shape:?}"),
        )),
    }
}

/// Uniform parameters shared by every Jacobi kernel (`Params` in jacobi_common.wgsl, where
/// the fields are described).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub batch: u32,
    pub n: u32,
    pub chunks: u32,
    pub m: u32,
    pub pairs: u32,
    pub round: u32,
    pub max_sweeps: u32,
    pub items: u32,
    pub groups_rotate: u32,
    pub groups_apply: u32,
    pub tol: f32,
    pub sweeps_per_dispatch: u32,
    pub orth_tol: f32,
}
crate::impl_params!(Params {
    batch,
    n,
    chunks,
    m,
    pairs,
    round,
    max_sweeps,
    items,
    groups_rotate,
    groups_apply,
    tol,
    sweeps_per_dispatch,
    orth_tol
});

/// The largest |(V0ᵀV0 − I)_ij| a warm start may have, 4·max(n, 16)·ε: computing V0ᵀV0 in f32
/// rounds each entry by at most n·ε, and a V0 fed back from a previous run departs by about
/// 0.1·n·ε; a V0 beyond it would leave its departure in the result.
fn orthogonality_tolerance(n: usize) -> f32 {
    4.0 * n.max(16) as f32 * f32::EPSILON
}

/// How a plan runs the sweeps.
enum Solver {
    /// One workgroup per matrix, up to `per_dispatch` sweeps per dispatch; `cold` and `warm`
    /// differ only in the sweep budget in their parameters.
    Small {
        cold: Dispatch,
        warm: Dispatch,
        per_dispatch: u32,
        cold_budget: u32,
        warm_budget: u32,
    },
    /// Blocked Jacobi: two indirect dispatches per round, a reset and a check between sweeps;
    /// `cold_budget` sweeps recorded for a cold run, `warm_budget` for a warm one.
    Blocked {
        sweeps: BlockedSweeps,
        cold_budget: u32,
        warm_budget: u32,
    },
}

impl Solver {
    /// Dispatches one run records, cold or warm.
    fn dispatches(&self, cold: bool) -> usize {
        match self {
            Solver::Small {
                per_dispatch,
                cold_budget,
                warm_budget,
                ..
            } => {
                let budget = if cold { cold_budget } else { warm_budget };
                small_dispatches(*budget, *per_dispatch) as usize
            }
            Solver::Blocked {
                sweeps,
                cold_budget,
                warm_budget,
            } => sweeps.dispatches(if cold { *cold_budget } else { *warm_budget }),
        }
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, cold: bool) {
        match self {
            Solver::Small {
                cold: cold_sweep,
                warm: warm_sweep,
                per_dispatch,
                cold_budget,
                warm_budget,
            } => {
                let (sweep, budget) = match cold {
                    true => (cold_sweep, cold_budget),
                    false => (warm_sweep, warm_budget),
                };
                for _ in 0..small_dispatches(*budget, *per_dispatch) {
                    sweep.record(pass);
                }
            }
            Solver::Blocked {
                sweeps,
                cold_budget,
                warm_budget,
            } => sweeps.record(pass, if cold { *cold_budget } else { *warm_budget }, cold),
        }
    }
}

/// Dispatches of the one-workgroup solver for a sweep budget: each tests, sweeps up to
/// `per_dispatch` times and tests again, so ⌈budget / per_dispatch⌉ — and one that only tests
/// for a zero budget.
fn small_dispatches(budget: u32, per_dispatch: u32) -> u32 {
    budget.div_ceil(per_dispatch).max(1)
}

/// Workgroup memory the one-workgroup solver needs for matrices of order up to `nmax`.
fn small_bytes(nmax: u64) -> u64 {
    4 * (nmax * (nmax + 1) / 2 + nmax * nmax) + ROT_BYTES * (nmax / 2) + 16
}

/// The largest order the one-workgroup solver takes on `device`: 64 where it has the
/// workgroup memory, else 32.
fn small_limit(device: &Device) -> usize {
    let wg_memory = device.info().limits.max_compute_workgroup_storage_size as u64;
    if wg_memory >= small_bytes(64) {
        64
    } else {
        32
    }
}

/// The loop iterations llvmpipe allows one invocation, in all its loops together (it ends
/// the invocation silently after them, leaving wrong results).
const LOOP_CAP: u64 = 65_535;

/// The share of [`LOOP_CAP`] a one-dispatch solve may use: a margin for llvmpipe versions that
/// count a little differently from the one [`small_loop_iterations`] was fitted on.
const LOOP_CAP_MARGIN: f64 = 0.9;

/// Loop iterations of one invocation of `solve_small` (jacobi_small.wgsl) at order n, sweeping
/// `sweeps` times in one dispatch, counted as llvmpipe counts them: every pass through a loop
/// body, the final one that leaves the loop included. Loop by loop: the copies in and out
/// (rows i, their ≤ 1 entry per lane, and the vec4s of Vᵀ), a test per pass of the sweep loop
/// (rows i, ≤ 1 entry each), and per sweep m − 1 rounds of the rows of Vᵀ (m/2 pairs,
/// 64/⌈n/4⌉ at a time) and one block row (≤ m/4 blocks) — plus one pass per round that the
/// loops do not show but the measurement does. Fitted on lavapipe (Mesa 22.3, forcing every
/// sweep): the first sweep count that broke the results was 53 at n = 48, 40 at n = 56 and
/// 32 at n = 64, exactly where this count first exceeds the cap.
fn small_loop_iterations(n: usize, sweeps: u32) -> u64 {
    let (n, sweeps) = (n as u64, sweeps as u64);
    let m = n + n % 2;
    let pairs = m / 2;
    let chunks = n.div_ceil(4);
    let stride = WG_SMALL / chunks;
    let copy = (n + 1) + 2 * n + (n * chunks).div_ceil(WG_SMALL) + 1;
    let test = (n + 1) + 2 * n;
    let round = pairs.div_ceil(stride) + 1 + 2 + pairs / 2 + 1 + 1;
    let sweep = m + (m - 1) * round;
    2 * copy + (sweeps + 1) * (test + 1) + sweeps * sweep
}

/// Whether the whole solve of order n in one dispatch, `sweeps` sweeps at most, is safe on
/// `device`: always on GPUs; on CPU adapters (llvmpipe) only well under the loop cap.
fn one_dispatch_fits(device: &Device, n: usize, sweeps: u32) -> bool {
    !device.info().is_cpu()
        || small_loop_iterations(n, sweeps) as f64 <= LOOP_CAP_MARGIN * LOOP_CAP as f64
}

/// The solver `options.variant` means for order n on `device`.
fn resolve_variant(device: &Device, n: usize, options: &EighOptions) -> Result<EighVariant> {
    let limit = small_limit(device);
    let fits = n <= limit && one_dispatch_fits(device, n, options.max_sweeps);
    match options.variant {
        EighVariant::Auto if n > limit => Ok(EighVariant::Blocked),
        EighVariant::Auto => Ok(match EighVariant::small_for_device(device) {
            EighVariant::SmallOneDispatch if !fits => EighVariant::SmallPerSweep,
            small => small,
        }),
        small @ (EighVariant::SmallPerSweep | EighVariant::SmallOneDispatch) if n > limit => {
            Err(Error::InvalidArgument(format!(
                "eigh: {} solves n ≤ {limit} on this device, not n = {n}",
                small.name()
            )))
        }
        EighVariant::SmallOneDispatch if !fits => Err(Error::InvalidArgument(format!(
            "eigh: SmallOneDispatch at n = {n} with {} sweeps would run {} loop iterations in \
             one invocation, too close to the {LOOP_CAP} a CPU adapter (llvmpipe) allows; \
             use SmallPerSweep or fewer sweeps",
            options.max_sweeps,
            small_loop_iterations(n, options.max_sweeps)
        ))),
        other => Ok(other),
    }
}

/// A prepared eigendecomposition of `batch` matrices of order `n`: buffers, pipelines and bind
/// groups built once, recorded every step without allocating.
///
/// Buffers it owns: `input` (A, `[batch, n, n]`, written by the caller before each run), the
/// `warm_start` V0 (same shape, read only by the prologue) when [`EighOptions::warm_start`]
/// is not `Off`, `values` (`[batch, n]`), `vectors` (`[batch, n, n]`; scratch during a run,
/// the result after it), and two `u32` buffers of `batch` words: `sweeps` and `status`
/// (`STATUS_*` bits). The outputs stay valid until the next run. A layer that warm-starts
/// every step builds the plan with [`WarmStart::Feedback`] and calls
/// [`EighPlan::record_feedback`] after [`EighPlan::record`].
pub struct EighPlan {
    batch: usize,
    n: usize,
    warm_start: WarmStart,
    variant: EighVariant,
    input: Tensor,
    warm_start_buffer: Option<Tensor>,
    values: Tensor,
    vectors: Tensor,
    status: Arc<wgpu::Buffer>,
    sweeps: Arc<wgpu::Buffer>,
    /// `init`, then for a warm run the warm-start products and the fallback check.
    prologue: Vec<Dispatch>,
    solver: Solver,
    epilogue: Vec<Dispatch>,
}

impl std::fmt::Debug for EighPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EighPlan({} × {}×{}, {}, warm start {:?})",
            self.batch,
            self.n,
            self.n,
            self.variant.name(),
            self.warm_start
        )
    }
}

/// A device buffer of `words` 32-bit words, checked against the limits.
pub(super) fn words_buffer(
    device: &Device,
    what: &str,
    words: usize,
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer> {
    let bytes = (words as u64).saturating_mul(4);
    device.check_buffer_size(&format!("eigh: {what} buffer"), bytes)?;
    Ok(device.wgpu_device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size: bytes,
        usage,
        mapped_at_creation: false,
    }))
}

/// The working buffers of a plan, besides its tensors and its status and sweep words.
struct Work {
    /// The working matrix (upper triangle), then Wᵀ (the corrected eigenvectors as rows).
    a: wgpu::Buffer,
    /// Vᵀ, rows padded to whole vec4s.
    v: wgpu::Buffer,
    /// Per matrix: negligibility floor, scale exponent e, warm-start departure.
    floors: wgpu::Buffer,
    scales: wgpu::Buffer,
    departure: wgpu::Buffer,
    /// Rayleigh quotients `[batch, n]` and the ascending order of the eigenvalues.
    quotients: wgpu::Buffer,
    order: wgpu::Buffer,
}

impl Work {
    fn new(device: &Device, batch: usize, n: usize, v_elems: usize) -> Result<Work> {
        let storage = wgpu::BufferUsages::STORAGE;
        Ok(Work {
            a: words_buffer(device, "eigh working matrix", batch * n * n, storage)?,
            v: words_buffer(device, "eigh working vectors", v_elems, storage)?,
            floors: words_buffer(device, "eigh floors", batch, storage)?,
            scales: words_buffer(device, "eigh scales", batch, storage)?,
            departure: words_buffer(device, "eigh warm-start departure", batch, storage)?,
            quotients: words_buffer(device, "eigh Rayleigh quotients", batch * n, storage)?,
            order: words_buffer(device, "eigh order", batch * n, storage)?,
        })
    }
}

impl EighPlan {
    /// Builds the plan for `options` (tolerance, sweeps, warm start and solver variant).
    ///
    /// Errors: `Empty` for a zero batch or order, `InvalidArgument` for a negative or
    /// non-finite tolerance, more than [`MAX_SWEEPS`] sweeps, a zero cold-restart period, or a
    /// forced one-workgroup variant that cannot take this order on this device, `TooLarge`
    /// when the batch exceeds the workgroups of one dispatch dimension or a buffer the
    /// device's limits.
    pub fn new(device: &Device, batch: usize, n: usize, options: &EighOptions) -> Result<EighPlan> {
        let _gl = device.gl_guard();
        if batch == 0 || n == 0 {
            return Err(Error::Empty {
                op: "eigh".into(),
                shape: vec![batch, n, n],
            });
        }
        options.validate()?;
        if n > MAX_ORDER {
            return Err(Error::TooLarge {
                what: format!("eigh: matrices of order {n}"),
                requested: n as u64,
                limit_name: "eigengrad::kernels::jacobi::MAX_ORDER",
                limit: MAX_ORDER as u64,
            });
        }
        let max_groups = device.info().limits.max_compute_workgroups_per_dimension;
        if batch > max_groups as usize {
            return Err(Error::TooLarge {
                what: format!("eigh: batch of {batch} matrices (one workgroup each)"),
                requested: batch as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max_groups as u64,
            });
        }
        let variant = resolve_variant(device, n, options)?;
        // Vᵀ rows are padded to whole vec4s; every index the kernels form stays below 2³².
        let chunks = n.div_ceil(4);
        let v_elems = batch * n * 4 * chunks;
        to_u32(&format!("eigh: {batch} matrices of order {n}"), v_elems)?;

        let input = Tensor::zeros(device, &[batch, n, n])?;
        let warm_start_buffer = match options.warm_start {
            WarmStart::Off => None,
            _ => Some(Tensor::zeros(device, &[batch, n, n])?),
        };
        let values = Tensor::zeros(device, &[batch, n])?;
        let vectors = Tensor::zeros(device, &[batch, n, n])?;
        let readable = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let status = Arc::new(words_buffer(device, "eigh status", batch, readable)?);
        let sweeps = Arc::new(words_buffer(device, "eigh sweeps", batch, readable)?);
        let work = Work::new(device, batch, n, v_elems)?;

        let m = n + n % 2;
        let pairs = m / 2;
        let params = Params {
            batch: batch as u32,
            n: n as u32,
            chunks: chunks as u32,
            m: m as u32,
            pairs: pairs as u32,
            round: 0,
            max_sweeps: options.max_sweeps,
            // The blocked solver sets these to its block geometry.
            items: 0,
            groups_rotate: 0,
            groups_apply: 0,
            tol: options.tolerance,
            sweeps_per_dispatch: 1,
            orth_tol: orthogonality_tolerance(n),
        };
        let bufs = PlanBuffers {
            input: input.buffer(),
            vectors: vectors.buffer(),
            values: values.buffer(),
            status: &status,
            sweeps: &sweeps,
            work: &work,
        };
        let prologue = prologue(device, &params, &bufs, warm_start_buffer.as_ref())?;
        let solver = match variant {
            EighVariant::Blocked => blocked_solver(
                device,
                &params,
                &bufs,
                largest_block(device)?,
                options.warm_sweeps,
            )?,
            EighVariant::BlockedWith { max_block } => {
                let largest = largest_block(device)?;
                if !(1..=largest).contains(&max_block) {
                    return Err(Error::InvalidArgument(format!(
                        "eigh: block size {max_block} is outside 1 to {largest} on this device"
                    )));
                }
                blocked_solver(device, &params, &bufs, max_block, options.warm_sweeps)?
            }
            small => small_solver(device, params, &bufs, small, options.warm_sweeps)?,
        };
        let epilogue = epilogue(device, &params, &bufs)?;
        Ok(EighPlan {
            batch,
            n,
            warm_start: options.warm_start,
            variant,
            input,
            warm_start_buffer,
            values,
            vectors,
            status,
            sweeps,
            prologue,
            solver,
            epilogue,
        })
    }

    /// Whether run number `run` starts cold (from V = I) rather than from the V0 buffer.
    pub fn starts_cold(&self, run: u64) -> bool {
        match self.warm_start {
            WarmStart::Off => true,
            WarmStart::Given => false,
            WarmStart::Feedback { cold_restart_every } => run.is_multiple_of(cold_restart_every),
        }
    }

    /// Records one complete solve into an open compute pass: prologue, the sweeps, epilogue.
    /// Reads `input` (and, for a warm run, `warm_start`), writes `values`, `vectors`, `sweeps`
    /// and `status`. `run` numbers the plan's runs from 0 (e.g. a training step count): with
    /// [`WarmStart::Feedback`] it decides which runs start cold; other plans ignore it.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, run: u64) {
        self.record_run(pass, self.starts_cold(run));
    }

    /// Records one complete solve as [`Self::record`] does, cold (from V = I) or warm (from
    /// the V0 buffer) as the caller decides — e.g. cold after the caller reset its state.
    pub fn record_run(&self, pass: &mut wgpu::ComputePass<'_>, cold: bool) {
        let prologue = if cold {
            &self.prologue[..1]
        } else {
            &self.prologue
        };
        for d in prologue {
            d.record(pass);
        }
        self.solver.record(pass, cold);
        for d in &self.epilogue {
            d.record(pass);
        }
    }

    /// Records, into an encoder outside any pass, the copy of this run's `vectors` into the
    /// `warm_start` buffer, so that the next run starts from them (no-op without a warm start).
    pub fn record_feedback(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(v0) = &self.warm_start_buffer {
            let bytes = (self.vectors.len() * 4) as u64;
            encoder.copy_buffer_to_buffer(self.vectors.buffer(), 0, v0.buffer(), 0, bytes);
        }
    }

    /// Kernel launches a warm run records (a cold one for plans without a warm start): the
    /// steady state of a plan fed back every step.
    pub fn dispatches_per_run(&self) -> usize {
        self.dispatches(self.warm_start == WarmStart::Off)
    }

    /// Kernel launches a cold run records (a plan's first run, and every restart).
    pub fn dispatches_per_cold_run(&self) -> usize {
        self.dispatches(true)
    }

    fn dispatches(&self, cold: bool) -> usize {
        let prologue = if cold { 1 } else { self.prologue.len() };
        prologue + self.solver.dispatches(cold) + self.epilogue.len()
    }

    /// The solver this plan runs ([`EighVariant::Auto`] resolved for its order and device).
    pub fn variant(&self) -> EighVariant {
        self.variant
    }

    /// Indices per block of the blocked solver (`None` for the one-workgroup solver).
    pub fn block_size(&self) -> Option<usize> {
        match &self.solver {
            Solver::Blocked { sweeps, .. } => Some(sweeps.layout().block),
            Solver::Small { .. } => None,
        }
    }

    /// The number of matrices.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The order of the matrices.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Where the caller puts A, `[batch, n, n]` (only its symmetric part is used).
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// Where the caller puts V0, `[batch, n, n]`, for plans with a warm start.
    pub fn warm_start(&self) -> Option<&Tensor> {
        self.warm_start_buffer.as_ref()
    }

    /// Eigenvalues in ascending order, `[batch, n]`.
    pub fn values(&self) -> &Tensor {
        &self.values
    }

    /// Eigenvectors, `[batch, n, n]`, column j belonging to `values[j]`.
    pub fn vectors(&self) -> &Tensor {
        &self.vectors
    }

    /// Sweeps per matrix, `batch` words of `u32`.
    pub fn sweeps(&self) -> &wgpu::Buffer {
        &self.sweeps
    }

    /// Status per matrix, `batch` words of `u32` made of the `STATUS_*` bits.
    pub fn status(&self) -> &wgpu::Buffer {
        &self.status
    }
}

/// The buffers a plan's dispatches bind.
struct PlanBuffers<'a> {
    input: &'a wgpu::Buffer,
    vectors: &'a wgpu::Buffer,
    values: &'a wgpu::Buffer,
    status: &'a wgpu::Buffer,
    sweeps: &'a wgpu::Buffer,
    work: &'a Work,
}

/// Grid of a tiled kernel: one invocation per 4×4 tile of every matrix.
fn tile_grid(device: &Device, p: &Params, what: &str) -> Result<[u32; 3]> {
    let tiles = p.batch as u64 * p.chunks as u64 * p.chunks as u64;
    grid_1d(device, what, tiles, WG_TILE)
}

/// `init`, and with a warm start the products V0ᵀ·A·V0 and the fallback of matrices whose
/// V0 is not orthogonal (recorded only by warm runs).
fn prologue(
    device: &Device,
    p: &Params,
    b: &PlanBuffers,
    v0: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let w = b.work;
    let per_matrix = [p.batch, 1, 1];
    let mut prologue = vec![INIT.dispatch(
        device,
        p,
        &[
            b.input,
            &w.a,
            &w.v,
            &w.floors,
            b.status,
            b.sweeps,
            &w.scales,
            &w.departure,
        ],
        per_matrix,
    )?];
    if let Some(v0) = v0 {
        let grid = tile_grid(device, p, "eigh warm start")?;
        // T = A·V0 goes to `vectors`, which only the epilogue writes for real.
        prologue.push(WARM_PRODUCT.dispatch(device, p, &[&w.a, v0.buffer(), b.vectors], grid)?);
        prologue.push(WARM_CONGRUENCE.dispatch(
            device,
            p,
            &[&w.a, v0.buffer(), b.vectors, &w.v, b.status, &w.departure],
            grid,
        )?);
        prologue.push(WARM_FALLBACK.dispatch_bound(
            device,
            p,
            &[
                (1, b.input),
                (2, &w.a),
                (3, &w.v),
                (5, b.status),
                (7, &w.scales),
                (8, &w.departure),
            ],
            per_matrix,
        )?);
    }
    Ok(prologue)
}

/// The one-workgroup solver: one dispatch per sweep, or the whole solve in one.
fn small_solver(
    device: &Device,
    mut p: Params,
    b: &PlanBuffers,
    variant: EighVariant,
    warm_sweeps: u32,
) -> Result<Solver> {
    let kernel = if p.n <= 32 {
        SOLVE_SMALL32
    } else {
        SOLVE_SMALL64
    };
    let w = b.work;
    let cold_budget = p.max_sweeps;
    let (per_dispatch, warm_budget) = match variant {
        EighVariant::SmallOneDispatch => (cold_budget.max(1), cold_budget),
        _ => (1, warm_sweeps.min(cold_budget)),
    };
    p.sweeps_per_dispatch = per_dispatch;
    let mut sweep = |budget: u32| {
        p.max_sweeps = budget;
        kernel.dispatch(
            device,
            &p,
            &[&w.a, &w.v, &w.floors, b.status, b.sweeps],
            [p.batch, 1, 1],
        )
    };
    Ok(Solver::Small {
        cold: sweep(cold_budget)?,
        warm: sweep(warm_budget)?,
        per_dispatch,
        cold_budget,
        warm_budget,
    })
}

/// The blocked solver ([`jacobi_block`](super::jacobi_block)) in blocks of at most
/// `max_block` indices: `max_sweeps` sweeps recorded for a cold run, `warm_sweeps` for a warm
/// one, the sweeps of converged matrices being empty indirect dispatches.
fn blocked_solver(
    device: &Device,
    p: &Params,
    b: &PlanBuffers,
    max_block: usize,
    warm_sweeps: u32,
) -> Result<Solver> {
    let w = b.work;
    let working = Working {
        a: &w.a,
        v: &w.v,
        floors: &w.floors,
        status: b.status,
        sweeps: b.sweeps,
    };
    let warm_budget = warm_sweeps.min(p.max_sweeps);
    Ok(Solver::Blocked {
        sweeps: BlockedSweeps::new(device, p, max_block, &working, warm_budget)?,
        cold_budget: p.max_sweeps,
        warm_budget,
    })
}

/// The closing kernels: Newton–Schulz step, Rayleigh quotients and the first-order
/// correction, sort, signs, gather.
fn epilogue(device: &Device, p: &Params, b: &PlanBuffers) -> Result<Vec<Dispatch>> {
    let w = b.work;
    let n = p.n;
    let per_value = [n.div_ceil(WG_PER_PAIR), p.batch, 1];
    let flat = grid_1d(
        device,
        "eigh epilogue",
        p.batch as u64 * (n * n) as u64,
        WG_FLAT,
    )?;
    let tiled = tile_grid(device, p, "eigh epilogue")?;
    // One Newton–Schulz step: E = I − VᵀV into the output-vectors buffer, then the corrected
    // rows W into the working matrix (free once the sweeps are done).
    let orthonormalise = || -> Result<[Dispatch; 2]> {
        Ok([
            GRAM.dispatch(device, p, &[&w.v, b.vectors], tiled)?,
            CORRECT.dispatch(device, p, &[&w.v, b.vectors, &w.a], tiled)?,
        ])
    };
    // Scratch until `gather`: the working vectors hold T = A·Wᵀ, then the refined Vᵀ; the
    // output-vectors buffer E, then X, then E again.
    let mut epilogue = Vec::from(orthonormalise()?);
    epilogue.extend([
        RQ_PRODUCT.dispatch(device, p, &[b.input, &w.a, &w.v, &w.scales], tiled)?,
        RQ_VALUES.dispatch_bound(
            device,
            p,
            &[(2, &w.a), (3, &w.v), (5, &w.quotients)],
            per_value,
        )?,
        COUPLING.dispatch_bound(
            device,
            p,
            &[(2, &w.a), (3, &w.v), (5, &w.quotients), (6, b.vectors)],
            tiled,
        )?,
        REFINE.dispatch_bound(device, p, &[(2, &w.a), (3, &w.v), (6, b.vectors)], tiled)?,
    ]);
    epilogue.extend(orthonormalise()?);
    epilogue.extend([
        RANK_VALUES.dispatch(
            device,
            p,
            &[&w.quotients, b.status, b.values, &w.order, &w.scales],
            per_value,
        )?,
        SIGN.dispatch(device, p, &[&w.a], per_value)?,
        GATHER_VECTORS.dispatch(device, p, &[&w.a, &w.order, b.status, b.vectors], flat)?,
    ]);
    Ok(epilogue)
}

/// Eigendecomposition of the symmetric part of every matrix in `a` (`[batch, n, n]` or
/// `[n, n]`), from a cold start: one run of a fresh [`EighPlan`], the input copied into it on
/// the device. `options.warm_start` is not used (see [`eigh_warm`]).
///
/// Errors: `Shape` unless `a` is square of rank 2 or 3, `NonFinite { what: "eigh input",
/// index }` with the first batch index whose matrix holds NaN or Inf (detected on the
/// device), `NonFinite { what: "eigh eigenvalues (…)", index }` when a finite matrix's
/// spectrum lies beyond the f32 range, and the errors of [`EighPlan::new`].
pub fn eigh(a: &Tensor, options: &EighOptions) -> Result<Eigh> {
    solve_once(a, None, options)
}

/// [`eigh`] started from the eigenvectors `v0` (shaped like `a`, orthogonal columns, e.g. an
/// earlier result for a nearby matrix): a few sweeps instead of six to nine. A matrix whose
/// `v0` is not orthogonal is solved from a cold start instead and flagged in
/// [`Eigh::warm_start_rejected`]. The one run may use `max_sweeps` sweeps.
///
/// Errors: those of [`eigh`], `Shape` when `v0` is not shaped like `a`, and
/// `NonFinite { what: "eigh warm start", index }` when a matrix of `v0` holds NaN or Inf.
pub fn eigh_warm(a: &Tensor, v0: &Tensor, options: &EighOptions) -> Result<Eigh> {
    same_device("eigh", &[a, v0])?;
    if v0.shape() != a.shape() {
        return Err(Error::shape(
            "eigh",
            format!(
                "warm start {:?} must have the input's shape {:?}",
                v0.shape(),
                a.shape()
            ),
        ));
    }
    solve_once(a, Some(v0), options)
}

fn solve_once(a: &Tensor, v0: Option<&Tensor>, options: &EighOptions) -> Result<Eigh> {
    let (batch, n) = eigh_shape(a.shape())?;
    let device = a.device().clone();
    let _gl = device.gl_guard();
    let plan_options = EighOptions {
        warm_start: match v0 {
            Some(_) => WarmStart::Given,
            None => WarmStart::Off,
        },
        warm_sweeps: options.max_sweeps,
        ..*options
    };
    let plan = EighPlan::new(&device, batch, n, &plan_options)?;
    let bytes = (a.len() * 4) as u64;
    let mut encoder =
        device
            .wgpu_device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eigh"),
            });
    encoder.copy_buffer_to_buffer(a.buffer(), 0, plan.input().buffer(), 0, bytes);
    if let (Some(v0), Some(dst)) = (v0, plan.warm_start()) {
        encoder.copy_buffer_to_buffer(v0.buffer(), 0, dst.buffer(), 0, bytes);
    }
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("eigh"),
            timestamp_writes: None,
        });
        plan.record(&mut pass, 0);
    }
    device.queue().submit([encoder.finish()]);
    let status = read_words(&device, plan.status(), batch)?;
    for (bit, what) in [
        (STATUS_NONFINITE_INPUT, "eigh input"),
        (STATUS_NONFINITE_WARM_START, "eigh warm start"),
        (
            STATUS_VALUES_OVERFLOW,
            "eigh eigenvalues (the spectrum of this finite matrix exceeds f32::MAX)",
        ),
    ] {
        if let Some(index) = status.iter().position(|s| s & bit != 0) {
            return Err(Error::NonFinite {
                what: what.into(),
                index: index as u64,
            });
        }
    }
    let flags = |bit: u32| -> Vec<bool> { status.iter().map(|s| s & bit != 0).collect() };
    let converged: Vec<bool> = flags(STATUS_NOT_CONVERGED).iter().map(|f| !f).collect();
    let warm_start_rejected = flags(STATUS_WARM_START_REJECTED);
    if let Some(b) = converged.iter().position(|c| !c) {
        log::warn!(
            "eigh: matrix {b} (of {batch}, n = {n}) not converged after {} sweeps",
            options.max_sweeps
        );
    }
    if let Some(b) = warm_start_rejected.iter().position(|&r| r) {
        log::warn!("eigh: the warm start of matrix {b} (of {batch}) is not orthogonal; solved from a cold start");
    }
    let (values, vectors) = if a.shape().len() == 2 {
        (
            plan.values().reshape(&[n])?,
            plan.vectors().reshape(&[n, n])?,
        )
    } else {
        (plan.values().clone(), plan.vectors().clone())
    };
    Ok(Eigh {
        values,
        vectors,
        converged,
        sweeps: read_words(&device, plan.sweeps(), batch)?,
        warm_start_rejected,
    })
}

/// (batch, n) of the cold solve [`SmallEigh`] times: a batch large enough that launch
/// overhead does not decide alone, an order whose whole solve stays under llvmpipe's loop cap
/// in one dispatch.
pub const TUNE_CASE: (usize, usize) = (256, 16);

/// The one-workgroup path of the solver as a [`Tunable`] kernel: [`autotune::tune`] times a
/// cold [`TUNE_CASE`] solve on each of [`EighVariant::SMALL`] and keeps the faster for
/// [`EighVariant::Auto`] on that adapter (the blocked path is chosen by order, not tuned). On
/// CPU adapters a tuned one-dispatch choice is still used only where it fits the loop cap.
/// Tune before building plans: plans built earlier keep the variant they were built with.
///
/// [`autotune::tune`]: super::autotune::tune
pub struct SmallEigh;

impl Variant for EighVariant {
    const ALL: &'static [EighVariant] = &EighVariant::SMALL;

    fn name(self) -> &'static str {
        EighVariant::name(self)
    }
}

impl Trial for EighPlan {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_run(pass, true);
    }

    fn dispatches(&self) -> usize {
        self.dispatches_per_cold_run()
    }
}

impl Tunable for SmallEigh {
    type Variant = EighVariant;
    type Trial = EighPlan;
    const KERNEL: &'static str = "jacobi_small";

    /// One dispatch per sweep on CPU adapters, the whole solve in one dispatch elsewhere.
    fn default_variant(info: &DeviceInfo) -> EighVariant {
        if info.is_cpu() {
            EighVariant::SmallPerSweep
        } else {
            EighVariant::SmallOneDispatch
        }
    }

    /// A cold solve of [`TUNE_CASE`] symmetric matrices several sweeps from convergence,
    /// a_ij = ((i·j + i + j + b) mod 17) / 8 − 1 in matrix b, per variant.
    fn trials(device: &Device) -> Result<Vec<EighPlan>> {
        let (batch, n) = TUNE_CASE;
        let data: Vec<f32> = (0..batch * n * n)
            .map(|e| {
                let (i, j) = ((e / n) % n, e % n);
                ((i * j + i + j + e / (n * n)) % 17) as f32 / 8.0 - 1.0
            })
            .collect();
        EighVariant::SMALL
            .iter()
            .map(|&variant| {
                let options = EighOptions {
                    variant,
                    ..EighOptions::default()
                };
                let plan = EighPlan::new(device, batch, n, &options)?;
                plan.input().write(&data)?;
                Ok(plan)
            })
            .collect()
    }
}
