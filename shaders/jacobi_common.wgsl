// Helpers shared by every Jacobi kernel (prepended to each jacobi_*.wgsl file by
// src/kernels/jacobi.rs and src/kernels/jacobi_block.rs). Notation: the batch holds `batch`
// symmetric n×n matrices, stored row-major; the solver keeps only the upper triangle (i ≤ j) of
// its working copy A up to date, and holds the eigenvectors transposed, Vᵀ, each row padded to
// `chunks` vec4, so that rotating two columns of V is rotating two contiguous rows of Vᵀ.
//
// llvmpipe ends any invocation after 65,535 loop iterations in total (silently), so every
// kernel bounds the iterations of each invocation well below that.
//
// Parallel ordering: the round-robin ("chess tournament", Brent–Luk) schedule over
// m = n rounded up to even indices (on the blocked path: over the blocks, and within a block
// pair over its 2b indices). Round r (0 ≤ r < m−1) pairs index m−1 with r and
// (r+k) with (r−k) mod (m−1) for k = 1 … m/2−1, so the m/2 pairs of a round are disjoint and
// the m−1 rounds of a sweep meet every pair once. When n is odd, index m−1 = n is a dummy and
// its pair is skipped.

struct Params {
    batch: u32,
    n: u32,
    // vec4s per row of the working Vᵀ: ⌈n / 4⌉.
    chunks: u32,
    // The indices the round-robin schedule pairs — n rounded up to even, or on the blocked
    // path the number of blocks — and m / 2, the disjoint pairs per round.
    m: u32,
    pairs: u32,
    // The round this dispatch performs (blocked path only).
    round: u32,
    max_sweeps: u32,
    // Blocked path: output tiles of `block_apply` per matrix and round.
    items: u32,
    // Blocked path: workgroups per matrix of `block_solve` and `block_apply` (written by
    // `reset` into the indirect arguments).
    groups_rotate: u32,
    groups_apply: u32,
    // Relative tolerance of the negligibility test.
    tol: f32,
    // Sweeps one dispatch of the one-workgroup solver may run (1: one dispatch per sweep).
    sweeps_per_dispatch: u32,
    // Largest |(V0ᵀV0 − I)_ij| a warm start may have; beyond it the matrix starts cold.
    orth_tol: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Status bits, per matrix (mirrored in src/kernels/jacobi.rs).
const NONFINITE_INPUT: u32 = 1u;
const NONFINITE_WARM_START: u32 = 2u;
const NOT_CONVERGED: u32 = 4u;
const FINISHED: u32 = 8u;
const WARM_START_REJECTED: u32 = 16u;
const VALUES_OVERFLOW: u32 = 32u;
// A matrix with any of these bits set is not (or no longer) iterated.
const STOP: u32 = NONFINITE_INPUT | NONFINITE_WARM_START | FINISHED;

// One rotation of a round: J = [[c, s], [−s, c]] acting on indices (i, j), i < j.
// s == 0 means "no rotation" (negligible coupling or a dummy index).
struct Rot {
    c: f32,
    s: f32,
    i: u32,
    j: u32,
}

// True for NaN and ±Inf (WGSL has no isnan/isinf): the exponent bits are all ones.
fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// 2^e, exactly, for -126 ≤ e ≤ 127.
fn pow2(e: i32) -> f32 {
    return bitcast<f32>(u32(e + 127) << 23u);
}

// x·2^e for e ≤ 150, exact while the result is normal, rounded once otherwise. At most
// one floating-point multiplication, by a normal power of two: a compiler may fold two
// multiplications by powers of two into one by their product, which over- or underflows
// once |e| > 126 (llvmpipe did, inside loops). Beyond that range the exponent moves by integer
// arithmetic. Scaling up that far only meets subnormal x (the prologue's scale brings the
// largest entry to [2, 4)), scaling down that far only eigenvalues of such matrices.
fn times_pow2(x: f32, e: i32) -> f32 {
    if (e >= -126 && e <= 127) {
        return x * pow2(e);
    }
    if (e > 127) {
        // 2^24·x is normal (or zero) for a subnormal x; then add e − 24 to its exponent.
        let y = x * 16777216.0;
        return select(bitcast<f32>(bitcast<u32>(y) + (u32(e - 24) << 23u)), y, y == 0.0);
    }
    // e < -126: x·2^(e + 126) by moving the exponent while it stays normal, then one rounding
    // multiplication by 2^-126; an x too small for that ends at ±0 either way.
    let shift = -126 - e;
    let bits = bitcast<u32>(x);
    if (i32((bits >> 23u) & 0xffu) <= shift) {
        return x * 0.0;
    }
    return bitcast<f32>(bits - (u32(shift) << 23u)) * pow2(-126);
}

// Workgroup size of the kernels that compute 4×4 tiles of batched n×n products.
const TILE_WG: u32 = 64u;

// Flat invocation index of a tiled kernel's grid (folded into y past the dimension limit).
fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * TILE_WG;
}

// (batch index, first row, first column) of 4×4 tile `idx` of an n×n product, or
// batch = p.batch past the end.
fn tile_of(idx: u32) -> vec3<u32> {
    let tiles = p.chunks;
    let per = tiles * tiles;
    let r = idx % per;
    return vec3<u32>(idx / per, (r / tiles) * 4u, (r % tiles) * 4u);
}

// Pair k of round r of the round-robin schedule over m (even) indices: (lo, hi), lo < hi.
fn round_robin(k: u32, r: u32, m: u32) -> vec2<u32> {
    let mm = m - 1u;
    var x = mm;
    var y = r;
    if (k != 0u) {
        x = (r + k) % mm;
        y = (r + mm - k) % mm;
    }
    return vec2<u32>(min(x, y), max(x, y));
}

// Pair k of round r over the p.m indices of this solve (blocks, on the blocked path).
fn pair_of(k: u32, r: u32) -> vec2<u32> {
    return round_robin(k, r, p.m);
}

// The Demmel–Veselić test: a_pq is negligible when |a_pq| ≤ tol·√|a_pp|·√|a_qq| (this keeps
// the small eigenvalues of graded matrices to high relative accuracy), or when it is below
// `floor` (a tiny absolute level, 1e-30·‖A‖_F, that stops work on underflowing entries).
fn negligible(apq: f32, app: f32, aqq: f32, floor: f32) -> bool {
    return abs(apq) <= max(p.tol * sqrt(abs(app)) * sqrt(abs(aqq)), floor);
}

// Rutishauser's rotation for [[app, apq], [apq, aqq]], apq ≠ 0: returns (c, s, t) with
// t = tan φ the smaller root, so that app' = app − t·apq, aqq' = aqq + t·apq, apq' = 0.
fn rotation(app: f32, aqq: f32, apq: f32) -> vec3<f32> {
    // θ = (aqq − app) / (2·apq), scaled to avoid overflow of the difference.
    let theta = (0.5 * aqq - 0.5 * app) / apq;
    var t: f32;
    if (abs(theta) > 1e18) {
        t = 0.5 / theta;
    } else {
        t = select(-1.0, 1.0, theta >= 0.0) / (abs(theta) + sqrt(theta * theta + 1.0));
    }
    let c = inverseSqrt(1.0 + t * t);
    return vec3<f32>(c, t * c, t);
}

// The two-sided update of one off-diagonal 2×2 block: R_kᵀ · X · R_l, where X holds rows
// (i_k, j_k) and columns (i_l, j_l) as (x00, x01, x10, x11) and R = [[c, s], [−s, c]].
fn rotate_block(x: vec4<f32>, rk: Rot, rl: Rot) -> vec4<f32> {
    let y00 = rk.c * x.x - rk.s * x.z;
    let y01 = rk.c * x.y - rk.s * x.w;
    let y10 = rk.s * x.x + rk.c * x.z;
    let y11 = rk.s * x.y + rk.c * x.w;
    return vec4<f32>(
        rl.c * y00 - rl.s * y01,
        rl.s * y00 + rl.c * y01,
        rl.c * y10 - rl.s * y11,
        rl.s * y10 + rl.c * y11,
    );
}
