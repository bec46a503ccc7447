// Batched matrix product C[b] = op(A[b]) · op(B[b]) in two variants (see src/kernels/matmul.rs).
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
    // Tiled only: 1 when consecutive k of op(A) are adjacent in memory (a_cs == 1), so the
    // tile load walks k fastest; 0 walks rows fastest. Likewise for op(B) along n.
    a_k_fast: u32,
    b_n_fast: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// (column tile, row tile, batch item, 1 if this workgroup has work else 0).
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec4<u32> {
    let l = wid.x + wid.y * nwg.x;
    let per_batch = p.tiles_n * p.tiles_m;
    let t = l % per_batch;
    return vec4<u32>(t / p.tiles_m, t % p.tiles_m, l / per_batch, select(0u, 1u, l < p.total));
}

// ---------------------------------------------------------------------------------------------
// RowBlock: barrier-free, no workgroup memory (for CPU adapters such as llvmpipe, which run a
// workgroup on one thread, where barriers and shared memory cost more than they save).
// A workgroup of 64 lanes owns RB_ROWS rows × 256 columns; lane l owns columns l, l + 64,
// l + 128, l + 192 of the block (one vec4 accumulator per row) and per k step loads those 4
// values of op(B) and RB_ROWS workgroup-uniform scalars of op(A). Spacing a lane's columns 64
// apart, rather than 4 adjacent ones, makes each component's 8-lane gather on llvmpipe read
// 8 adjacent floats: measured 5–30 % faster at n = 512 and 1024. (The loops over rows are
// unrolled by the driver: writing them out by hand measured no faster.)

const RB_ROWS: u32 = 16u; // the host's tile is RB_ROWS × RB_COLS
const RB_COLS: u32 = 256u; // 64 lanes · 4 columns

// Stores a lane's 4 columns j0, j0 + 64, … of row i of C (masked at the matrix edges).
fn rb_store(c_base: u32, i: u32, j0: u32, v: vec4<f32>) {
    if (i < p.m) {
        let row = c_base + i * p.n;
        for (var q = 0u; q < 4u; q++) {
            if (j0 + q * 64u < p.n) {
                c[row + j0 + q * 64u] = v[q];
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmul_rowblock(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let t = tile_of(wid, nwg);
    if (t.w == 0u) {
        return;
    }
    let row0 = t.y * RB_ROWS;
    let j0 = t.x * RB_COLS + lane;
    let cols = min(vec4<u32>(j0, j0 + 64u, j0 + 128u, j0 + 192u), vec4<u32>(p.n - 1u));
    let b_col = vec4<u32>(t.z * p.b_bs) + cols * p.b_cs;
    let a_base = t.z * p.a_bs;
    var a_row: array<u32, RB_ROWS>;
    for (var r = 0u; r < RB_ROWS; r++) {
        a_row[r] = a_base + min(row0 + r, p.m - 1u) * p.a_rs;
    }
    var acc: array<vec4<f32>, RB_ROWS>;
    var ap = 0u;
    var bp = 0u;
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = vec4<f32>(b[bp + b_col.x], b[bp + b_col.y], b[bp + b_col.z], b[bp + b_col.w]);
        for (var r = 0u; r < RB_ROWS; r++) {
            acc[r] = fma(vec4<f32>(a[a_row[r] + ap]), bv, acc[r]);
        }
        ap += p.a_cs;
        bp += p.b_rs;
    }
    let c_base = t.z * p.m * p.n;
    for (var r = 0u; r < RB_ROWS; r++) {
        rb_store(c_base, row0 + r, j0, acc[r]);
    }
}

// ---------------------------------------------------------------------------------------------
// Tiled: the classic shared-memory kernel for real GPUs. A workgroup of 16×16 threads owns a
// 64×64 tile of C; per step of TL_BK along k it stages a 64×TL_BK panel of op(A) and a
// TL_BK×64 panel of op(B) in workgroup memory, then each thread accumulates a 4×4 register
// block from one vec4 of each panel per k. Loads past k read zero.

const TL_TILE: u32 = 64u;
const TL_BK: u32 = 16u;
const TL_THREADS: u32 = 256u;
const TL_VEC: u32 = 16u; // TL_TILE / 4: vec4s per panel row

// a_tile[kk·16 + r4] holds op(A) rows 4·r4 .. 4·r4+3 at k = k0 + kk; b_tile[kk·16 + c4] holds
// op(B) columns 4·c4 .. 4·c4+3 at k = k0 + kk.
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = tile_of(wid, nwg);
    if (t.w == 0u) {
        return;
    }
    let tid = lid.y * 16u + lid.x;
    let row0 = t.y * TL_TILE;
    let col0 = t.x * TL_TILE;
    let a_base = t.z * p.a_bs;
    let b_base = t.z * p.b_bs;
    let a_k_fast = p.a_k_fast != 0u;
    let b_n_fast = p.b_n_fast != 0u;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TL_BK) {
        for (var q = 0u; q < 4u; q++) {
            let e = tid + q * TL_THREADS;
            // op(A) panel, TL_TILE rows × TL_BK k, walked along whichever is contiguous.
            let ar = select(e % TL_TILE, e / TL_BK, a_k_fast);
            let ak = select(e / TL_TILE, e % TL_BK, a_k_fast);
            let agk = k0 + ak;
            let av = a[a_base + min(row0 + ar, p.m - 1u) * p.a_rs + min(agk, p.k - 1u) * p.a_cs];
            a_tile[ak * TL_VEC + ar / 4u][ar % 4u] = select(0.0, av, agk < p.k);
            // op(B) panel, TL_BK k × TL_TILE columns.
            let bc = select(e / TL_BK, e % TL_TILE, b_n_fast);
            let bk = select(e % TL_BK, e / TL_TILE, b_n_fast);
            let bgk = k0 + bk;
            let bv = b[b_base + min(bgk, p.k - 1u) * p.b_rs + min(col0 + bc, p.n - 1u) * p.b_cs];
            b_tile[bk * TL_VEC + bc / 4u][bc % 4u] = select(0.0, bv, bgk < p.k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TL_BK; kk++) {
            let av = a_tile[kk * TL_VEC + lid.y];
            let bv = b_tile[kk * TL_VEC + lid.x];
            acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }

    let c_base = t.z * p.m * p.n;
    let j0 = col0 + lid.x * 4u;
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        if (i < p.m) {
            let row = c_base + i * p.n;
            for (var q = 0u; q < 4u; q++) {
                if (j0 + q < p.n) {
                    c[row + j0 + q] = acc[r][q];
                }
            }
        }
    }
}
