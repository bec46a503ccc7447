//! Batched symmetric eigensolver: two-sided cyclic Jacobi on the GPU, the kernel the Eigen
//! layers stand on.
//!
//! For a batch of symmetric matrices A (`[batch, n, n]`, or one `[n, n]`) it returns the
//! eigenvalues in ascending order (the LAPACK/PyTorch order) and orthonormal eigenvectors,
//! column j of `vectors` belonging to `values[j]`, each with the sign that makes its
//! largest-magnitude component positive (the first such component on ties). An asymmetric
//! input is replaced by its symmetric part (A + Aᵀ)/2.
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
//!
//! # Kernels
//! All in one command buffer, with no host round trip:
//! - a prologue, one workgroup per matrix: finiteness check, symmetrisation, ‖A‖_F, V = I —
//!   or, warm-started, V0ᵀ·A·V0 and V = V0;
//! - n ≤ 32 (and n ≤ 64 where the device has the ~25 KiB of workgroup memory it needs): one
//!   workgroup per matrix and one dispatch per sweep (`max_sweeps + 1` recorded), A (packed
//!   upper triangle) and Vᵀ in workgroup memory; the test runs at the top, and a finished
//!   matrix costs one status read;
//! - larger n: two dispatches per round (`rotate`: the m/2 rotations; `apply`: every
//!   off-diagonal 2×2 block of A and every pair of rows of Vᵀ) with A and Vᵀ in storage
//!   buffers, and a convergence `check` between sweeps: `max_sweeps` sweeps are recorded, and
//!   the round dispatches are *indirect*, sized by the check to the matrices still iterating,
//!   so converged work costs an empty dispatch, not a pass over the batch;
//! - an epilogue: rank sort of the eigenvalues, one Newton–Schulz step V ← V(3I − VᵀV)/2 (the
//!   rotations leave ‖VᵀV − I‖_F ≈ 1.5·n^1.5·ε, the step ≈ 0.1·n·ε, with the residual
//!   unchanged), sign normalisation, and the gather into ascending order.
//!
//! The work per matrix grows with n³ on both paths, so the time per matrix has no cliff where
//! one hands over to the other (33 or 65). Every kernel keeps the loop iterations of one
//! invocation far below 65,535: llvmpipe silently ends an invocation after that many.
//!
//! # Warm start
//! With a warm start V0 (orthogonal, e.g. the previous step's eigenvectors) the solver works on
//! V0ᵀ·A·V0, which is nearly diagonal when A moved little, and returns V0·J₁·J₂·…: one or two
//! sweeps instead of six to nine. Only the prologue reads V0, so an
//! [`EighPlan`]'s V0 buffer may be refreshed from its own `vectors` output between steps
//! ([`EighPlan::record_feedback`]). V0 must be orthogonal; the result inherits its departure
//! from orthogonality only until the closing Newton–Schulz step, so feeding the vectors back
//! step after step does not drift.

use super::{grid_1d, same_device, to_u32, Dispatch, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::{read_words, Tensor};
use std::sync::Arc;

macro_rules! jacobi_shader {
    ($name:literal, $prefix:literal, $file:literal) => {
        Shader {
            name: $name,
            source: concat!(
                $prefix,
                include_str!("../../shaders/jacobi_common.wgsl"),
                include_str!(concat!("../../shaders/", $file))
            ),
        }
    };
}

const PREP: Shader = jacobi_shader!("jacobi_prep", "", "jacobi_prep.wgsl");
const WARM: Shader = jacobi_shader!("jacobi_warm", "", "jacobi_warm.wgsl");
const SMALL32: Shader = jacobi_shader!(
    "jacobi_small32",
    "const NMAX: u32 = 32u;\n",
    "jacobi_small.wgsl"
);
const SMALL64: Shader = jacobi_shader!(
    "jacobi_small64",
    "const NMAX: u32 = 64u;\n",
    "jacobi_small.wgsl"
);
const ROTATE: Shader = jacobi_shader!("jacobi_rotate", "", "jacobi_rotate.wgsl");
const APPLY: Shader = jacobi_shader!("jacobi_apply", "", "jacobi_apply.wgsl");
const CHECK: Shader = jacobi_shader!("jacobi_check", "", "jacobi_check.wgsl");
const RANK: Shader = jacobi_shader!("jacobi_rank", "", "jacobi_rank.wgsl");
const ORTHO: Shader = jacobi_shader!("jacobi_ortho", "", "jacobi_ortho.wgsl");
const GATHER: Shader = jacobi_shader!("jacobi_gather", "", "jacobi_gather.wgsl");

/// Workgroup sizes of the kernels, as declared in their WGSL.
const WG_ROTATE: u32 = 64;
const WG_APPLY: u32 = 256;
/// Blocks, or vec4s of a row of Vᵀ, per `apply` invocation (`GROUP` in jacobi_apply.wgsl).
const APPLY_GROUP: usize = 8;
const WG_FLAT: u32 = 64;
const WG_PER_PAIR: u32 = 64;
/// Size in bytes of one `Rot` record (c, s, i, j).
const ROT_BYTES: u64 = 16;
/// The most sweeps a plan may record (cuSOLVER's `syevj` default cap).
pub const MAX_SWEEPS: u32 = 100;
/// The largest order solved. The multi-dispatch path records 2(n − 1) dispatches per sweep,
/// and its per-matrix kernels loop over n²/256 entries per invocation, which must stay well
/// below the 65,535 loop iterations llvmpipe allows one invocation.
pub const MAX_ORDER: usize = 2048;

/// Status bit: the input matrix holds NaN or Inf.
pub const STATUS_NONFINITE_INPUT: u32 = 1;
/// Status bit: the warm start V0 holds NaN or Inf.
pub const STATUS_NONFINITE_WARM_START: u32 = 2;
/// Status bit: `max_sweeps` sweeps ran out before the convergence test passed (the result is
/// still usable, only less accurate).
pub const STATUS_NOT_CONVERGED: u32 = 4;
/// Status bit: the solve of this matrix has ended (set for every matrix after a run).
pub const STATUS_FINISHED: u32 = 8;

/// Options of [`eigh`].
#[derive(Clone, Debug)]
pub struct EighOptions {
    /// Relative tolerance of the convergence test: a_pq counts as zero once
    /// |a_pq| ≤ tolerance·√|a_pp·a_qq|, so that off(A) ≤ tolerance·√n·‖A‖_F at convergence.
    /// Default 10·ε_f32 ≈ 1.2e-6.
    pub tolerance: f32,
    /// Sweeps after which the solver stops even if not converged (default 15; at most
    /// [`MAX_SWEEPS`]).
    pub max_sweeps: u32,
    /// Orthogonal starting eigenvectors V0, shaped like the input (`[batch, n, n]` or
    /// `[n, n]`), e.g. the previous step's `vectors`.
    pub warm_start: Option<Tensor>,
}

impl Default for EighOptions {
    fn default() -> Self {
        EighOptions {
            tolerance: 10.0 * f32::EPSILON,
            max_sweeps: 15,
            warm_start: None,
        }
    }
}

/// The result of [`eigh`]: eigenvalues, eigenvectors and per-matrix solver statistics.
#[derive(Debug)]
pub struct Eigh {
    /// Eigenvalues in ascending order, `[batch, n]` (`[n]` for a single `[n, n]` input).
    pub values: Tensor,
    /// Eigenvectors, `[batch, n, n]` (`[n, n]` for a single input): column j of each matrix
    /// belongs to `values[j]`.
    pub vectors: Tensor,
    /// Whether each matrix met the tolerance within `max_sweeps`.
    pub converged: Vec<bool>,
    sweeps: Arc<wgpu::Buffer>,
}

impl Eigh {
    /// The number of sweeps each matrix needed (0 for an input that is already diagonal),
    /// read back from the device on request.
    pub fn sweeps(&self) -> Result<Vec<u32>> {
        read_words(self.values.device(), &self.sweeps, self.converged.len())
    }
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

/// Uniform parameters shared by every Jacobi kernel (`Params` in jacobi_common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    n: u32,
    chunks: u32,
    m: u32,
    pairs: u32,
    round: u32,
    max_sweeps: u32,
    items: u32,
    groups_rotate: u32,
    groups_apply: u32,
    tol: f32,
}

/// How a plan runs the sweeps.
enum Solver {
    /// One workgroup per matrix and sweep: `sweeps + 1` dispatches (the last one only tests).
    Small { sweep: Dispatch, sweeps: u32 },
    /// Two indirect dispatches per round, a reset and a check between sweeps.
    Multi {
        reset: Dispatch,
        check: Dispatch,
        rounds: Vec<(Dispatch, Dispatch)>,
        args: wgpu::Buffer,
        sweeps: u32,
    },
}

/// Workgroup memory the one-workgroup solver needs for matrices of order up to `nmax`.
fn small_bytes(nmax: u64) -> u64 {
    4 * (nmax * (nmax + 1) / 2 + nmax * nmax) + ROT_BYTES * (nmax / 2) + 16
}

/// A prepared eigendecomposition of `batch` matrices of order `n`: buffers, pipelines and bind
/// groups built once, recorded every step without allocating.
///
/// Buffers it owns: `input` (A, `[batch, n, n]`, written by the caller before each run), the
/// optional `warm_start` (V0, same shape, read only by the prologue), `values` (`[batch, n]`),
/// `vectors` (`[batch, n, n]`; scratch during a run, the result after it), and two `u32`
/// buffers of `batch` words: `sweeps` and `status` (`STATUS_*` bits). The outputs stay valid
/// until the next run. A layer that warm-starts every step builds the plan with a warm start
/// and calls [`EighPlan::record_feedback`] after [`EighPlan::record`].
pub struct EighPlan {
    batch: usize,
    n: usize,
    input: Tensor,
    warm_start: Option<Tensor>,
    values: Tensor,
    vectors: Tensor,
    status: Arc<wgpu::Buffer>,
    sweeps: Arc<wgpu::Buffer>,
    prologue: Vec<Dispatch>,
    solver: Solver,
    epilogue: Vec<Dispatch>,
}

impl std::fmt::Debug for EighPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.solver {
            Solver::Small { .. } => "one workgroup per matrix",
            Solver::Multi { .. } => "multi-dispatch",
        };
        write!(
            f,
            "EighPlan({} × {}×{}, {kind})",
            self.batch, self.n, self.n
        )
    }
}

/// A device buffer of `words` 32-bit words, checked against the limits.
fn words_buffer(
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

impl EighPlan {
    /// Builds the plan: `tolerance` and `max_sweeps` as in [`EighOptions`]; `with_warm_start`
    /// gives the plan a V0 buffer that every run starts from.
    ///
    /// Errors: `Empty` for a zero batch or order, `InvalidArgument` for a negative or
    /// non-finite tolerance or more than [`MAX_SWEEPS`] sweeps, `TooLarge` when the batch
    /// exceeds the workgroups of one dispatch dimension or a buffer the device's limits.
    pub fn new(
        device: &Device,
        batch: usize,
        n: usize,
        tolerance: f32,
        max_sweeps: u32,
        with_warm_start: bool,
    ) -> Result<EighPlan> {
        let _gl = device.gl_guard();
        if batch == 0 || n == 0 {
            return Err(Error::Empty {
                op: "eigh".into(),
                shape: vec![batch, n, n],
            });
        }
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "eigh: tolerance must be finite and non-negative, got {tolerance}"
            )));
        }
        if max_sweeps > MAX_SWEEPS {
            return Err(Error::InvalidArgument(format!(
                "eigh: max_sweeps {max_sweeps} is over the cap of {MAX_SWEEPS}"
            )));
        }
        if n > MAX_ORDER {
            return Err(Error::TooLarge {
                what: format!("eigh: matrices of order {n}"),
                requested: n as u64,
                limit_name: "eigengrad::kernels::jacobi::MAX_ORDER",
                limit: MAX_ORDER as u64,
            });
        }
        let limits = device.info().limits.clone();
        let max_groups = limits.max_compute_workgroups_per_dimension;
        if batch > max_groups as usize {
            return Err(Error::TooLarge {
                what: format!("eigh: batch of {batch} matrices (one workgroup each)"),
                requested: batch as u64,
                limit_name: "max_compute_workgroups_per_dimension",
                limit: max_groups as u64,
            });
        }
        // Vᵀ rows are padded to whole vec4s; every index the kernels form stays below 2³².
        let chunks = n.div_ceil(4);
        let elems = batch * n * n;
        let v_elems = batch * n * 4 * chunks;
        to_u32(&format!("eigh: {batch} matrices of order {n}"), v_elems)?;

        let input = Tensor::zeros(device, &[batch, n, n])?;
        let warm_start = match with_warm_start {
            true => Some(Tensor::zeros(device, &[batch, n, n])?),
            false => None,
        };
        let values = Tensor::zeros(device, &[batch, n])?;
        let vectors = Tensor::zeros(device, &[batch, n, n])?;
        let storage = wgpu::BufferUsages::STORAGE;
        let readable = storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let work_a = words_buffer(device, "eigh working matrix", elems, storage)?;
        let work_v = words_buffer(device, "eigh working vectors", v_elems, storage)?;
        let floors = words_buffer(device, "eigh floors", batch, storage)?;
        let status = Arc::new(words_buffer(device, "eigh status", batch, readable)?);
        let sweeps = Arc::new(words_buffer(device, "eigh sweeps", batch, readable)?);

        let m = n + n % 2;
        let pairs = m / 2;
        let items = to_u32(
            "eigh: rotation work items",
            pairs * ((pairs / 2).div_ceil(APPLY_GROUP) + chunks.div_ceil(APPLY_GROUP)),
        )?;
        let mut params = Params {
            batch: batch as u32,
            n: n as u32,
            chunks: chunks as u32,
            m: m as u32,
            pairs: pairs as u32,
            round: 0,
            max_sweeps,
            items,
            groups_rotate: (pairs as u32).div_ceil(WG_ROTATE),
            groups_apply: items.div_ceil(WG_APPLY),
            tol: tolerance,
        };
        let per_matrix = [batch as u32, 1, 1];
        // 4×4 output tiles of the batched products.
        let tiles = (batch * chunks * chunks) as u64;

        let mut prologue = vec![Dispatch::new(
            device,
            &PREP,
            "init",
            &params,
            &[input.buffer(), &work_a, &work_v, &floors, &status, &sweeps],
            per_matrix,
        )?];
        if let Some(v0) = &warm_start {
            let grid = grid_1d(device, "eigh warm start", tiles, WG_FLAT)?;
            // T = A·V0 goes to `vectors`, which only the epilogue writes for real.
            prologue.push(Dispatch::new(
                device,
                &WARM,
                "warm_product",
                &params,
                &[&work_a, v0.buffer(), vectors.buffer()],
                grid,
            )?);
            prologue.push(Dispatch::new(
                device,
                &WARM,
                "warm_congruence",
                &params,
                &[&work_a, v0.buffer(), vectors.buffer(), &work_v, &status],
                grid,
            )?);
        }

        let wg_memory = limits.max_compute_workgroup_storage_size as u64;
        let small = if n <= 32 {
            Some(&SMALL32)
        } else if n <= 64 && wg_memory >= small_bytes(64) {
            Some(&SMALL64)
        } else {
            None
        };
        let solver = match small {
            Some(shader) => Solver::Small {
                sweep: Dispatch::new(
                    device,
                    shader,
                    "sweep_small",
                    &params,
                    &[&work_a, &work_v, &floors, &status, &sweeps],
                    per_matrix,
                )?,
                sweeps: max_sweeps,
            },
            None => {
                let rots_bytes = (batch * pairs) as u64 * ROT_BYTES;
                let rots =
                    words_buffer(device, "eigh rotations", (rots_bytes / 4) as usize, storage)?;
                let active = words_buffer(device, "eigh active list", batch, storage)?;
                let args = words_buffer(
                    device,
                    "eigh indirect arguments",
                    6,
                    storage | wgpu::BufferUsages::INDIRECT,
                )?;
                let reset = Dispatch::new(device, &CHECK, "reset", &params, &[&args], [1, 1, 1])?;
                let check = Dispatch::new(
                    device,
                    &CHECK,
                    "check",
                    &params,
                    &[&args, &work_a, &active, &floors, &status, &sweeps],
                    per_matrix,
                )?;
                let mut rounds = Vec::with_capacity(m - 1);
                for round in 0..m as u32 - 1 {
                    params.round = round;
                    let rotate = Dispatch::new(
                        device,
                        &ROTATE,
                        "rotate",
                        &params,
                        &[&work_a, &active, &rots, &floors],
                        [params.groups_rotate, batch as u32, 1],
                    )?;
                    let apply = Dispatch::new(
                        device,
                        &APPLY,
                        "apply",
                        &params,
                        &[&work_a, &active, &rots, &work_v],
                        [params.groups_apply, batch as u32, 1],
                    )?;
                    rounds.push((rotate, apply));
                }
                Solver::Multi {
                    reset,
                    check,
                    rounds,
                    args,
                    sweeps: max_sweeps,
                }
            }
        };
        let order = words_buffer(device, "eigh order", batch * n, storage)?;
        let per_pair = [(n as u32).div_ceil(WG_PER_PAIR), batch as u32, 1];
        let flat = grid_1d(device, "eigh epilogue", elems as u64, WG_FLAT)?;
        let tiled = grid_1d(device, "eigh epilogue", tiles, WG_FLAT)?;
        // After `rank` has read the diagonal, the working matrix holds the corrected vectors
        // and the output-vectors buffer holds E, until `gather` writes the output over it.
        let epilogue = vec![
            Dispatch::new(
                device,
                &RANK,
                "rank",
                &params,
                &[&work_a, &status, values.buffer(), &order],
                per_pair,
            )?,
            Dispatch::new(
                device,
                &ORTHO,
                "gram",
                &params,
                &[&work_v, vectors.buffer()],
                tiled,
            )?,
            Dispatch::new(
                device,
                &ORTHO,
                "correct",
                &params,
                &[&work_v, vectors.buffer(), &work_a],
                tiled,
            )?,
            Dispatch::new(device, &GATHER, "sign", &params, &[&work_a], per_pair)?,
            Dispatch::new(
                device,
                &GATHER,
                "gather",
                &params,
                &[&work_a, &order, &status, vectors.buffer()],
                flat,
            )?,
        ];
        Ok(EighPlan {
            batch,
            n,
            input,
            warm_start,
            values,
            vectors,
            status,
            sweeps,
            prologue,
            solver,
            epilogue,
        })
    }

    /// Records one complete solve into an open compute pass: prologue, every sweep, epilogue.
    /// Reads `input` (and `warm_start`), writes `values`, `vectors`, `sweeps` and `status`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.prologue {
            d.record(pass);
        }
        match &self.solver {
            Solver::Small { sweep, sweeps } => {
                for _ in 0..=*sweeps {
                    sweep.record(pass);
                }
            }
            Solver::Multi {
                reset,
                check,
                rounds,
                args,
                sweeps,
            } => {
                reset.record(pass);
                check.record(pass);
                for _ in 0..*sweeps {
                    for (rotate, apply) in rounds {
                        rotate.record_indirect(pass, args, 0);
                        apply.record_indirect(pass, args, 12);
                    }
                    reset.record(pass);
                    check.record(pass);
                }
            }
        }
        for d in &self.epilogue {
            d.record(pass);
        }
    }

    /// Records, into an encoder outside any pass, the copy of this run's `vectors` into the
    /// `warm_start` buffer, so that the next run starts from them (no-op without a warm start).
    pub fn record_feedback(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(v0) = &self.warm_start {
            let bytes = (self.vectors.len() * 4) as u64;
            encoder.copy_buffer_to_buffer(self.vectors.buffer(), 0, v0.buffer(), 0, bytes);
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

    /// Where the caller puts V0, `[batch, n, n]`, when the plan was built with a warm start.
    pub fn warm_start(&self) -> Option<&Tensor> {
        self.warm_start.as_ref()
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

/// Eigendecomposition of the symmetric part of every matrix in `a` (`[batch, n, n]` or
/// `[n, n]`): one run of a fresh [`EighPlan`], the input copied into it on the device.
///
/// Errors: `Shape` unless `a` is square of rank 2 or 3 (or the warm start is not shaped like
/// `a`), `NonFinite { what: "eigh input", index }` with the first batch index whose matrix
/// holds NaN or Inf (detected on the device; likewise `"eigh warm start"` for V0), and the
/// errors of [`EighPlan::new`].
pub fn eigh(a: &Tensor, options: &EighOptions) -> Result<Eigh> {
    let (batch, n) = eigh_shape(a.shape())?;
    let device = a.device().clone();
    let _gl = device.gl_guard();
    if let Some(v0) = &options.warm_start {
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
    }
    let plan = EighPlan::new(
        &device,
        batch,
        n,
        options.tolerance,
        options.max_sweeps,
        options.warm_start.is_some(),
    )?;
    let bytes = (a.len() * 4) as u64;
    let mut encoder =
        device
            .wgpu_device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eigh"),
            });
    encoder.copy_buffer_to_buffer(a.buffer(), 0, plan.input().buffer(), 0, bytes);
    if let (Some(v0), Some(dst)) = (&options.warm_start, plan.warm_start()) {
        encoder.copy_buffer_to_buffer(v0.buffer(), 0, dst.buffer(), 0, bytes);
    }
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("eigh"),
            timestamp_writes: None,
        });
        plan.record(&mut pass);
    }
    device.queue().submit([encoder.finish()]);
    let status = read_words(&device, plan.status(), batch)?;
    for (bit, what) in [
        (STATUS_NONFINITE_INPUT, "eigh input"),
        (STATUS_NONFINITE_WARM_START, "eigh warm start"),
    ] {
        if let Some(index) = status.iter().position(|s| s & bit != 0) {
            return Err(Error::NonFinite {
                what: what.into(),
                index: index as u64,
            });
        }
    }
    let converged: Vec<bool> = status
        .iter()
        .map(|s| s & STATUS_NOT_CONVERGED == 0)
        .collect();
    if let Some(b) = converged.iter().position(|c| !c) {
        log::warn!(
            "eigh: matrix {b} (of {batch}, n = {n}) not converged after {} sweeps",
            options.max_sweeps
        );
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
        sweeps: plan.sweeps.clone(),
    })
}

impl EighPlan {
    /// Kernel launches one run records: prologue, every sweep allowed (converged matrices make
    /// them cheap, not absent), epilogue.
    pub fn dispatches_per_run(&self) -> usize {
        let solver = match &self.solver {
            Solver::Small { sweeps, .. } => *sweeps as usize + 1,
            Solver::Multi { rounds, sweeps, .. } => 2 + *sweeps as usize * (2 * rounds.len() + 2),
        };
        self.prologue.len() + solver + self.epilogue.len()
    }
}
