//! Blocked Jacobi: the sweeps of [`EighPlan`](super::jacobi::EighPlan) for orders the
//! one-workgroup solver does not take (n > 64, or n > 32 on devices without its workgroup
//! memory), in O(n/b) dispatches per sweep.
//!
//! # Algorithm
//! The order n is split into an even number 2k of blocks of b ≤ 32 indices (b ≤ 16 where the
//! device has less than 32 KiB of workgroup memory): 2k = 2⌈n / 2b_max⌉ and b = ⌈n / 2k⌉, so the
//! padding is below 2k indices and the cost grows smoothly with n (n = 65 runs four blocks of
//! 17, not four of 32). The padding indices are dummies: their rows and columns of A are zero
//! and never rotated. A sweep is 2k − 1 rounds of the round-robin schedule over the blocks; a
//! round pairs them into k disjoint block pairs (I, J) and
//! 1. `block_solve` (one workgroup per block pair and matrix): loads the 2b×2b problem
//!    S = A[I∪J, I∪J] into workgroup memory and, unless it already passes the relative test,
//!    sweeps it once with the one-workgroup method — the same round-robin order, Rutishauser's
//!    update and Demmel–Veselić test against the whole matrix's floor — then stores S and
//!    D_P = Q_P − I, Q_P the product of its rotations. The first and last rounds of a sweep
//!    visit every pair of S, the rounds between only the pairs across its two blocks (b inner
//!    rounds instead of 2b − 1): every pair of indices is visited in every sweep, and about
//!    half the rotations of sweeping all of S each round are saved, which left 2.5× the
//!    residual at n = 512 for no fewer sweeps;
//! 2. `block_apply` (one workgroup per output tile and matrix): A[P, R] ← Q_Pᵀ·A[P, R]·Q_R for
//!    every pair of block pairs P < R, and Vᵀ[P, C] ← Q_Pᵀ·Vᵀ[P, C] for every 2b-wide column
//!    tile C, as 2b×2b matrix products in workgroup memory, formed as updates X + X·D so that
//!    their rounding shrinks with the rotations. Tiles of block pairs that rotated nothing
//!    are skipped.
//!
//! Measured sweeps on lavapipe: random matrices 5–6 at n = 65, 6–7 at 128, 8 at 256, 9 at
//! 512, 2 from a warm start; a rank-deficient Gram matrix, whose roundoff-level null space the
//! relative test resolves too, 15 at 256 and 16 at 512 (the scalar ordering this replaced: 14
//! and 15).
//!
//! Before the first sweep and after every sweep, `check` (one workgroup per matrix) runs the
//! relative test on every off-diagonal entry: a converged matrix, or one out of sweeps, is
//! finished; the others are listed, and the next sweep's dispatches are *indirect*, sized on
//! the device to that list, so the sweeps of converged matrices cost empty dispatches.
//!
//! # Dispatches
//! Per sweep 2(2k − 1) + 2 (`block_solve` and `block_apply` per round, `reset` and `check`):
//! with b = 32, 8 at n ≤ 128, 16 at n = 256, 32 at n = 512 — against 2(n − 1) + 2 for a
//! scalar round-robin ordering that dispatches each round. A cold solve of 15 recorded sweeps
//! makes 128, 248 and 488 dispatches at n = 128, 256, 512 with the prologue and epilogue. A
//! warm run records only the plan's warm budget ([`EighOptions::warm_sweeps`], default 3):
//! its `check` flags a matrix still iterating after that budget finished but not converged,
//! and the next run, fed back from its orthonormal vectors, continues.
//!
//! [`EighOptions::warm_sweeps`]: super::jacobi::EighOptions::warm_sweeps
//!
//! # How the work spreads
//! A round of a batch of B matrices runs B·k `block_solve` workgroups and
//! B·(k(k − 1)/2 + k·⌈n / 2b⌉) `block_apply` workgroups (256 invocations each for b = 32):
//! for one 512×512 matrix (b = 32, k = 8) 8 solves and 92 tiles per round, for a batch of 8
//! of them 64 and 736 — a few matrices keep a GPU's multiprocessors busy, and the products,
//! which carry most of the arithmetic, are matmul-shaped (each invocation a 4×4 block of a
//! 64×64 tile). Every invocation loops a few thousand times at most (`block_solve` on a 64×64
//! problem ≈ 1,400 iterations, `check` n²/512), far below llvmpipe's 65,535.

use super::jacobi::{jacobi_shader, words_buffer, Params};
use super::{Dispatch, Kernel, Shader};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pipeline::{KernelSpec, Override};

const SOLVE: Shader = jacobi_shader!(
    "jacobi_block_solve",
    "jacobi_block_common.wgsl",
    "jacobi_block_solve.wgsl"
);
const APPLY: Shader = jacobi_shader!(
    "jacobi_block_apply",
    "jacobi_block_common.wgsl",
    "jacobi_block_apply.wgsl"
);
const CHECK: Shader = jacobi_shader!("jacobi_check", "jacobi_check.wgsl");

/// `WG` of jacobi_block_solve.wgsl.
const WG_SOLVE: u32 = 64;
/// `WG` of jacobi_check.wgsl's `check`.
const WG_CHECK: u32 = 256;

/// `block_solve` for block pairs of up to 32 and 64 indices (the `MMAX` override, the largest
/// 2b, sizes its workgroup arrays).
const SOLVE32: Kernel<Params> = Kernel::new(&SOLVE, "block_solve", [WG_SOLVE, 1, 1])
    .with_overrides(&[Override::u32("MMAX", 32)]);
const SOLVE64: Kernel<Params> = Kernel::new(&SOLVE, "block_solve", [WG_SOLVE, 1, 1])
    .with_overrides(&[Override::u32("MMAX", 64)]);
/// `block_apply` on tiles of `TILE` = 2b_max: (TILE/4)² invocations, each a 4×4 block.
const APPLY32: Kernel<Params> = Kernel::new(&APPLY, "block_apply", [(32 / 4) * (32 / 4), 1, 1])
    .with_overrides(&[Override::u32("TILE", 32)]);
const APPLY64: Kernel<Params> = Kernel::new(&APPLY, "block_apply", [(64 / 4) * (64 / 4), 1, 1])
    .with_overrides(&[Override::u32("TILE", 64)]);
const RESET: Kernel<Params> = Kernel::new(&CHECK, "reset", [1, 1, 1]);
const CHECK_CONVERGENCE: Kernel<Params> = Kernel::new(&CHECK, "check", [WG_CHECK, 1, 1]);

/// Every kernel of the blocked path (checked by the contract test).
pub(super) const KERNELS: [KernelSpec; 6] = [
    SOLVE32.spec(),
    SOLVE64.spec(),
    APPLY32.spec(),
    APPLY64.spec(),
    RESET.spec(),
    CHECK_CONVERGENCE.spec(),
];

/// The largest block a device can get: 32, or 16 on devices with little workgroup memory.
const BLOCK_LARGE: usize = 32;
const BLOCK_SMALL: usize = 16;

/// Workgroup memory and invocations the kernels need for tiles of `tile` = 2·b_max indices:
/// `block_solve` holds S (packed) and Qᵀ, `block_apply` a tile and a Q.
fn needs(tile: u64) -> (u64, u32) {
    let solve = 4 * (tile * (tile + 1) / 2 + tile * tile) + 16 * (tile / 2) + 8;
    let apply = 2 * 4 * tile * tile;
    (solve.max(apply), (tile as u32 / 4).pow(2))
}

/// The largest block size the device's limits allow.
pub(super) fn largest_block(device: &Device) -> Result<usize> {
    let limits = &device.info().limits;
    let fits = |block: usize| {
        let (bytes, invocations) = needs(2 * block as u64);
        bytes <= limits.max_compute_workgroup_storage_size as u64
            && invocations <= limits.max_compute_invocations_per_workgroup
    };
    match [BLOCK_LARGE, BLOCK_SMALL].into_iter().find(|&b| fits(b)) {
        Some(b) => Ok(b),
        None => Err(Error::TooLarge {
            what: "eigh: the blocked solver's workgroup memory".into(),
            requested: needs(2 * BLOCK_SMALL as u64).0,
            limit_name: "max_compute_workgroup_storage_size",
            limit: limits.max_compute_workgroup_storage_size as u64,
        }),
    }
}

/// How the order is split: `blocks` (even) blocks of `block` indices, the last ones padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockLayout {
    /// The number of blocks, 2k.
    pub blocks: usize,
    /// Indices per block, b.
    pub block: usize,
}

impl BlockLayout {
    /// The fewest blocks (an even number) of at most `max_block` indices covering order `n`,
    /// all of one size.
    pub fn new(n: usize, max_block: usize) -> BlockLayout {
        let blocks = 2 * n.div_ceil(2 * max_block);
        BlockLayout {
            blocks,
            block: n.div_ceil(blocks),
        }
    }

    /// Block pairs per round, k.
    pub fn pairs(&self) -> usize {
        self.blocks / 2
    }

    /// Output tiles of `block_apply` per matrix and round: k(k − 1)/2 of A, k·⌈n / 2b⌉ of Vᵀ.
    pub fn tiles(&self, n: usize) -> usize {
        let k = self.pairs();
        k * (k - 1) / 2 + k * n.div_ceil(2 * self.block)
    }
}

/// The working buffers of a plan that the sweeps read and write.
pub(super) struct Working<'a> {
    /// A, `[batch, n, n]`, upper triangle.
    pub a: &'a wgpu::Buffer,
    /// Vᵀ, rows padded to whole vec4s.
    pub v: &'a wgpu::Buffer,
    /// Per matrix: the negligibility floor, the status bits, the sweep count.
    pub floors: &'a wgpu::Buffer,
    pub status: &'a wgpu::Buffer,
    pub sweeps: &'a wgpu::Buffer,
}

/// The recorded sweeps of the blocked solver: a reset and a check, then per sweep the rounds'
/// indirect `block_solve` and `block_apply`, and again a reset and a check.
///
/// The check flags a matrix still iterating after the run's budget as finished but not
/// converged, so it carries that budget: one check for cold runs (`max_sweeps`), one for warm
/// runs (the warm budget).
pub(super) struct BlockedSweeps {
    layout: BlockLayout,
    reset: Dispatch,
    check_cold: Dispatch,
    check_warm: Dispatch,
    rounds: Vec<(Dispatch, Dispatch)>,
    args: wgpu::Buffer,
}

impl BlockedSweeps {
    /// Builds the dispatches for `batch` matrices of order `n` in blocks of at most
    /// `max_block` indices (at most [`largest_block`]). `params` are the plan's (their
    /// `max_sweeps` is the cold budget); the blocked kernels get their own copy with the block
    /// geometry. Warm runs stop after `warm_budget` sweeps.
    pub fn new(
        device: &Device,
        params: &Params,
        max_block: usize,
        work: &Working<'_>,
        warm_budget: u32,
    ) -> Result<BlockedSweeps> {
        let (batch, n) = (params.batch as usize, params.n as usize);
        let layout = BlockLayout::new(n, max_block);
        let k = layout.pairs();
        let tiles = layout.tiles(n);
        let mut params = Params {
            m: layout.blocks as u32,
            pairs: k as u32,
            items: tiles as u32,
            groups_rotate: k as u32,
            groups_apply: tiles as u32,
            ..*params
        };
        let storage = wgpu::BufferUsages::STORAGE;
        let q_row = (2 * layout.block).next_multiple_of(4);
        let q = words_buffer(
            device,
            "eigh block rotations",
            batch * k * 2 * layout.block * q_row,
            storage,
        )?;
        let rotated = words_buffer(device, "eigh block rotation flags", batch * k, storage)?;
        let live = words_buffer(device, "eigh active list", batch, storage)?;
        let args = words_buffer(
            device,
            "eigh indirect arguments",
            6,
            storage | wgpu::BufferUsages::INDIRECT,
        )?;
        let reset = RESET.dispatch(device, &params, &[&args], [1, 1, 1])?;
        let check = |max_sweeps: u32| {
            CHECK_CONVERGENCE.dispatch(
                device,
                &Params {
                    max_sweeps,
                    ..params
                },
                &[&args, work.a, &live, work.floors, work.status, work.sweeps],
                [batch as u32, 1, 1],
            )
        };
        let check_cold = check(params.max_sweeps)?;
        let check_warm = check(warm_budget)?;
        let (solve, apply) = match max_block <= BLOCK_SMALL {
            true => (SOLVE32, APPLY32),
            false => (SOLVE64, APPLY64),
        };
        let mut rounds = Vec::with_capacity(layout.blocks - 1);
        for round in 0..layout.blocks as u32 - 1 {
            params.round = round;
            rounds.push((
                solve.dispatch(
                    device,
                    &params,
                    &[work.a, &live, &q, &rotated, work.floors],
                    [k as u32, batch as u32, 1],
                )?,
                apply.dispatch(
                    device,
                    &params,
                    &[work.a, &live, &q, &rotated, work.v],
                    [tiles as u32, batch as u32, 1],
                )?,
            ));
        }
        Ok(BlockedSweeps {
            layout,
            reset,
            check_cold,
            check_warm,
            rounds,
            args,
        })
    }

    /// Records the first check and `sweeps` sweeps (the run's budget), each followed by a
    /// check that stops matrices at that budget.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, sweeps: u32, cold: bool) {
        let check = if cold {
            &self.check_cold
        } else {
            &self.check_warm
        };
        self.reset.record(pass);
        check.record(pass);
        for _ in 0..sweeps {
            for (solve, apply) in &self.rounds {
                solve.record_indirect(pass, &self.args, 0);
                apply.record_indirect(pass, &self.args, 12);
            }
            self.reset.record(pass);
            check.record(pass);
        }
    }

    /// Dispatches [`BlockedSweeps::record`] makes for `sweeps` sweeps.
    pub fn dispatches(&self, sweeps: u32) -> usize {
        2 + sweeps as usize * (2 * self.rounds.len() + 2)
    }

    /// How the order is split.
    pub fn layout(&self) -> BlockLayout {
        self.layout
    }
}
