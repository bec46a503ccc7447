// What every matmul variant shares (see src/kernels/matmul.rs): the parameters and bindings,
// the tile numbering, the clamped operand loads and the elementwise epilogue (bias, activation
// or an activation's backward rule; see `finish`). The Rust side composes two shaders from it:
// activation.wgsl + this file + matmul.wgsl (RowBlock, Tiled, Large, Skinny), and
// activation.wgsl + this file + matmul_subgroup.wgsl (the variant that needs subgroup
// operations, compiled only on devices that have them).
//
// The host passes strides for op(A) (m×k) and op(B) (k×n): op(A)[i][p] = a[a_bs·b + i·a_rs +
// p·a_cs], op(B)[p][j] = b[b_bs·b + p·b_rs + j·b_cs], so a transpose is only a choice of
// strides and the inner loops have no branch. A batch stride of 0 shares an operand across
// the batch. C is row-major m×n per batch item, contiguous.
//
// Workgroups are numbered linearly (wid.x + wid.y·nwg.x, folded by the host past the
// per-dimension limit); workgroup L computes row tile t % tiles_m and column tile t / tiles_m,
// t = L % (tiles_m·tiles_n), of batch item L / (tiles_m·tiles_n). Row tiles vary fastest so
// that consecutive workgroups share one panel of op(B), the bigger operand stream, while it is
// in cache. Workgroups past `total` exit.
//
// Edges: loads clamp their row/column index into the matrix (a valid address whose value only
// reaches outputs that are never stored) and stores are masked, so any m, n, k ≥ 1 works.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles_m: u32,
    total: u32,
    a_rs: u32,
    a_cs: u32,
    a_bs: u32,
    b_rs: u32,
    b_cs: u32,
    b_bs: u32,
    // Tiled, Large and Skinny: 1 when consecutive k of op(A) are adjacent in memory
    // (a_cs == 1), so panel loads walk k fastest; 0 walks rows fastest. Likewise for op(B)
    // along n.
    a_k_fast: u32,
    b_n_fast: u32,
    // Large only: 1 when the contiguous dimension of A (of B) is a multiple of 4, so its panels
    // load as aligned vec4 through `a4` (`b4`).
    a_vec: u32,
    b_vec: u32,
    // The epilogue: EPI_* flags and the MAP_* applied last.
    epi_flags: u32,
    epi_map: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// The epilogue's operand: the bias (read at the column) or the forward value an activation's
// backward rule reads (at the element). Bound to A when the epilogue reads nothing.
@group(0) @binding(4) var<storage, read> e: array<f32>;
// The value before the activation, for a backward pass that reads it, or the column sums of
// op(B) (EPI_COLSUMS). Bound to C when unused.
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;
// A and B again, read as vec4 (Large's aligned panel loads).
@group(0) @binding(6) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> b4: array<vec4<f32>>;

const EPI_BIAS: u32 = 1u; // add e[column]
const EPI_PRE: u32 = 2u; // store the value after the bias, before the map, into `pre`
const EPI_COLSUMS: u32 = 4u; // store the column sums of op(B) into `pre` (see store_column_sums)
const MAP_NONE: u32 = 0u;
const MAP_RELU: u32 = 1u;
const MAP_TANH: u32 = 2u;
const MAP_GELU: u32 = 3u;
const MAP_RELU_BACKWARD: u32 = 4u; // e = the ReLU's input
const MAP_TANH_BACKWARD: u32 = 5u; // e = the tanh's output
const MAP_GELU_BACKWARD: u32 = 6u; // e = the GELU's input

// Whether the launch has an epilogue (the flags are uniform).
fn has_epilogue() -> bool {
    return (p.epi_flags & (EPI_BIAS | EPI_PRE)) != 0u || p.epi_map != MAP_NONE;
}

// With EPI_COLSUMS, the workgroups of the first row tile (of batch item 0, the only one)
// also store the column sums of op(B), Σ over k, for their columns col0 .. col0 + cols − 1
// into `pre`: a dense layer's bias gradient (Σ over the batch of dZ) computed beside its weight
// gradient Xᵀ·dZ in the same launch. Thread `lane` of `lanes` sums every lanes-th column. It
// reads op(B) from memory in a second pass: k·n loads once per column tile, nothing beside
// the product's own k·n per row tile.
fn store_column_sums(t: vec4<u32>, col0: u32, cols: u32, lane: u32, lanes: u32) {
    if ((p.epi_flags & EPI_COLSUMS) == 0u || t.y != 0u || t.z != 0u) {
        return;
    }
    for (var q = lane; q < cols; q += lanes) {
        let j = col0 + q;
        if (j < p.n) {
            var sum = 0.0;
            for (var kk = 0u; kk < p.k; kk++) {
                sum += b[kk * p.b_rs + j * p.b_cs];
            }
            pre[j] = sum;
        }
    }
}

// Applies the epilogue to element `idx` (column j) of C, which holds the product: the kernels
// first store their accumulators as they are, then — only with an epilogue — run this over
// the same elements. Keeping the epilogue away from the accumulators lets the compiler keep
// them in registers (an epilogue inlined into the store loop measured 1.7× slower on
// llvmpipe: the accumulator array went to memory). The unfused kernels compute the same
// values with the same functions.
fn finish(idx: u32, j: u32) {
    var v = c[idx];
    if ((p.epi_flags & EPI_BIAS) != 0u) {
        v = v + e[j];
    }
    if ((p.epi_flags & EPI_PRE) != 0u) {
        pre[idx] = v;
    }
    switch p.epi_map {
        case MAP_RELU: { v = relu_fwd(v); }
        case MAP_TANH: { v = safe_tanh(v); }
        case MAP_GELU: { v = gelu_fwd(v); }
        case MAP_RELU_BACKWARD: { v = relu_grad(e[idx], v); }
        case MAP_TANH_BACKWARD: { v = tanh_grad(e[idx], v); }
        case MAP_GELU_BACKWARD: { v = gelu_grad(e[idx], v); }
        default: {}
    }
    c[idx] = v;
}

// Runs `finish` over the rows × columns block of C at (i0, j0) with the given strides that a
// thread stored, masked at the matrix edges.
fn finish_block(c_base: u32, i0: u32, rows: u32, row_step: u32, j0: u32, cols: u32, col_step: u32) {
    for (var r = 0u; r < rows; r++) {
        let i = i0 + r * row_step;
        if (i < p.m) {
            for (var q = 0u; q < cols; q++) {
                let j = j0 + q * col_step;
                if (j < p.n) {
                    finish(c_base + i * p.n + j, j);
                }
            }
        }
    }
}

// (column tile, row tile, batch item, 1 if this workgroup has work else 0).
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec4<u32> {
    let l = wid.x + wid.y * nwg.x;
    let per_batch = p.tiles_n * p.tiles_m;
    let t = l % per_batch;
    return vec4<u32>(t / p.tiles_m, t % p.tiles_m, l / per_batch, select(0u, 1u, l < p.total));
}

// op(A)[row][kk] of the batch item at `base`, 0 past k (rows clamped, see the header).
fn a_at(base: u32, row: u32, kk: u32) -> f32 {
    let v = a[base + min(row, p.m - 1u) * p.a_rs + min(kk, p.k - 1u) * p.a_cs];
    return select(0.0, v, kk < p.k);
}

// op(B)[kk][col] of the batch item at `base`, 0 past k (columns clamped).
fn b_at(base: u32, kk: u32, col: u32) -> f32 {
    let v = b[base + min(kk, p.k - 1u) * p.b_rs + min(col, p.n - 1u) * p.b_cs];
    return select(0.0, v, kk < p.k);
}

