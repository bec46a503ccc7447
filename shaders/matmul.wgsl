// The matmul variants that run on every adapter: RowBlock, Tiled, Large and Skinny (see
// src/kernels/matmul.rs). The Rust side puts activation.wgsl and matmul_common.wgsl (the
// parameters, bindings, operand loads and epilogue) before this file.

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
    if (has_epilogue()) {
        finish_block(c_base, row0, RB_ROWS, 1u, j0, 4u, 64u);
    }
    store_column_sums(t, t.x * RB_COLS, RB_COLS, lane, 64u);
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
            let x = tid + q * TL_THREADS;
            // op(A) panel, TL_TILE rows × TL_BK k, walked along whichever is contiguous.
            let ar = select(x % TL_TILE, x / TL_BK, a_k_fast);
            let ak = select(x / TL_TILE, x % TL_BK, a_k_fast);
            a_tile[ak * TL_VEC + ar / 4u][ar % 4u] = a_at(a_base, row0 + ar, k0 + ak);
            // op(B) panel, TL_BK k × TL_TILE columns.
            let bc = select(x / TL_BK, x % TL_TILE, b_n_fast);
            let bk = select(x % TL_BK, x / TL_TILE, b_n_fast);
            b_tile[bk * TL_VEC + bc / 4u][bc % 4u] = b_at(b_base, k0 + bk, col0 + bc);
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
    if (has_epilogue()) {
        finish_block(c_base, row0 + lid.y * 4u, 4u, 1u, j0, 4u, 1u);
    }
    store_column_sums(t, col0, TL_TILE, tid, TL_THREADS);
}

// ---------------------------------------------------------------------------------------------
// Large: register-tiled for big products on real GPUs. A workgroup of 16×16 threads owns a
// 128×128 tile of C; each thread accumulates 8×8 outputs — rows 4·ty .. 4·ty+3 and
// 64 + 4·ty .. 64 + 4·ty+3, the same split for columns, so that its vec4 reads of workgroup
// memory by neighbouring threads are adjacent. Per step of LG_BK = 8 along k the workgroup
// stages a 128×8 panel of op(A) and an 8×128 panel of op(B), one vec4 of each per thread
// (an aligned vec4 load where the contiguous dimension is a multiple of 4). The panels are
// double-buffered: the next step's loads are issued before this step's arithmetic and stored
// into the other buffer after it, so one barrier per step suffices and the load latency hides
// behind 512 fused multiply-adds per thread. 2 buffers × 2 panels × 4 KiB = 16 KiB of workgroup
// memory, the limit every adapter has.

const LG_TILE: u32 = 128u;
const LG_BK: u32 = 8u;
const LG_VEC: u32 = 32u; // LG_TILE / 4: vec4s per panel row
const LG_BUFFER: u32 = 256u; // LG_BK · LG_VEC: vec4s per panel buffer

// lg_a[buf + kk·32 + r4] holds op(A) rows 4·r4 .. 4·r4+3 at k = k0 + kk (buf = 0 or 256); lg_b
// likewise holds op(B) columns.
var<workgroup> lg_a: array<vec4<f32>, 512>;
var<workgroup> lg_b: array<vec4<f32>, 512>;

// The 4 values of the op(A) panel at k0 that thread `tid` stages: 4 consecutive k of one row
// when A is contiguous along k, else 4 consecutive rows at one k.
fn lg_load_a(base: u32, row0: u32, k0: u32, tid: u32) -> vec4<f32> {
    if (p.a_k_fast != 0u) {
        let row = row0 + tid / 2u;
        let kk = k0 + (tid % 2u) * 4u;
        if (p.a_vec != 0u) {
            if (row < p.m && kk < p.k) {
                return a4[(base + row * p.a_rs + kk) / 4u];
            }
            return vec4<f32>(0.0);
        }
        return vec4<f32>(
            a_at(base, row, kk),
            a_at(base, row, kk + 1u),
            a_at(base, row, kk + 2u),
            a_at(base, row, kk + 3u),
        );
    }
    let kk = k0 + tid / LG_VEC;
    let row = row0 + (tid % LG_VEC) * 4u;
    if (p.a_vec != 0u) {
        if (row < p.m && kk < p.k) {
            return a4[(base + kk * p.a_cs + row) / 4u];
        }
        return vec4<f32>(0.0);
    }
    return vec4<f32>(
        a_at(base, row, kk),
        a_at(base, row + 1u, kk),
        a_at(base, row + 2u, kk),
        a_at(base, row + 3u, kk),
    );
}

// The 4 values of the op(B) panel at k0 that thread `tid` stages: 4 consecutive columns at one
// k when B is contiguous along n, else 4 consecutive k of one column.
fn lg_load_b(base: u32, col0: u32, k0: u32, tid: u32) -> vec4<f32> {
    if (p.b_n_fast != 0u) {
        let kk = k0 + tid / LG_VEC;
        let col = col0 + (tid % LG_VEC) * 4u;
        if (p.b_vec != 0u) {
            if (col < p.n && kk < p.k) {
                return b4[(base + kk * p.b_rs + col) / 4u];
            }
            return vec4<f32>(0.0);
        }
        return vec4<f32>(
            b_at(base, kk, col),
            b_at(base, kk, col + 1u),
            b_at(base, kk, col + 2u),
            b_at(base, kk, col + 3u),
        );
    }
    let col = col0 + tid / 2u;
    let kk = k0 + (tid % 2u) * 4u;
    if (p.b_vec != 0u) {
        if (col < p.n && kk < p.k) {
            return b4[(base + col * p.b_cs + kk) / 4u];
        }
        return vec4<f32>(0.0);
    }
    return vec4<f32>(
        b_at(base, kk, col),
        b_at(base, kk + 1u, col),
        b_at(base, kk + 2u, col),
        b_at(base, kk + 3u, col),
    );
}

// Stores what `tid` loaded (see lg_load_a and lg_load_b) into panel buffer `buf`.
fn lg_stage(buf: u32, tid: u32, av: vec4<f32>, bv: vec4<f32>) {
    if (p.a_k_fast != 0u) {
        let row = tid / 2u;
        let kq = (tid % 2u) * 4u;
        for (var q = 0u; q < 4u; q++) {
            lg_a[buf + (kq + q) * LG_VEC + row / 4u][row % 4u] = av[q];
        }
    } else {
        lg_a[buf + tid] = av;
    }
    if (p.b_n_fast != 0u) {
        lg_b[buf + tid] = bv;
    } else {
        let col = tid / 2u;
        let kq = (tid % 2u) * 4u;
        for (var q = 0u; q < 4u; q++) {
            lg_b[buf + (kq + q) * LG_VEC + col / 4u][col % 4u] = bv[q];
        }
    }
}

@compute @workgroup_size(16, 16)
fn matmul_large(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let t = tile_of(wid, nwg);
    if (t.w == 0u) {
        return;
    }
    let tid = lid.y * 16u + lid.x;
    let row0 = t.y * LG_TILE;
    let col0 = t.x * LG_TILE;
    let a_base = t.z * p.a_bs;
    let b_base = t.z * p.b_bs;
    let steps = (p.k + LG_BK - 1u) / LG_BK;

    var a_next = lg_load_a(a_base, row0, 0u, tid);
    var b_next = lg_load_b(b_base, col0, 0u, tid);
    lg_stage(0u, tid, a_next, b_next);
    workgroupBarrier();
    // acc[2r + h]: row r of the thread's 8 (r < 4: 4·ty + r; else 64 + 4·ty + r − 4), columns
    // 64·h + 4·tx .. 64·h + 4·tx + 3.
    var acc: array<vec4<f32>, 16>;
    for (var s = 0u; s < steps; s++) {
        let cur = (s % 2u) * LG_BUFFER;
        let more = s + 1u < steps;
        if (more) {
            a_next = lg_load_a(a_base, row0, (s + 1u) * LG_BK, tid);
            b_next = lg_load_b(b_base, col0, (s + 1u) * LG_BK, tid);
        }
        for (var kk = 0u; kk < LG_BK; kk++) {
            let at = cur + kk * LG_VEC;
            let a0 = lg_a[at + lid.y];
            let a1 = lg_a[at + 16u + lid.y];
            let b0 = lg_b[at + lid.x];
            let b1 = lg_b[at + 16u + lid.x];
            acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
            acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
            acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
            acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
            acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
            acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
            acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
            acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
            acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
            acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
            acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
            acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
            acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
            acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
            acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
            acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
        }
        if (more) {
            lg_stage(LG_BUFFER - cur, tid, a_next, b_next);
        }
        workgroupBarrier();
    }

    let c_base = t.z * p.m * p.n;
    for (var r = 0u; r < 8u; r++) {
        let i = row0 + (r / 4u) * 64u + lid.y * 4u + r % 4u;
        if (i < p.m) {
            let row = c_base + i * p.n;
            for (var h = 0u; h < 2u; h++) {
                let j0 = col0 + h * 64u + lid.x * 4u;
                let v = acc[2u * r + h];
                for (var q = 0u; q < 4u; q++) {
                    if (j0 + q < p.n) {
                        c[row + j0 + q] = v[q];
                    }
                }
            }
        }
    }
    if (has_epilogue()) {
        for (var part = 0u; part < 2u; part++) {
            for (var h = 0u; h < 2u; h++) {
                let i0 = row0 + part * 64u + lid.y * 4u;
                finish_block(c_base, i0, 4u, 1u, col0 + h * 64u + lid.x * 4u, 4u, 1u);
            }
        }
    }
    store_column_sums(t, col0, LG_TILE, tid, 256u);
}

// ---------------------------------------------------------------------------------------------
// Skinny: for the small products of a training step (batch × width, e.g. 128×64 · 64×64 or
// 256×512 · 512×10), where 64×64 tiles would leave most of a GPU idle. A workgroup of 256
// threads owns a 32×32 tile of C — four times as many workgroups as Tiled — and splits k four
// ways: slice s = tid / 64 accumulates k = k0 + 8s .. k0 + 8s + 7 of every SK_BK = 32 step,
// each thread a 4×4 block, and the slices' sums are added through workgroup memory at the end.
// 2 panels × 4 KiB of workgroup memory, reused for the final sums.

const SK_TILE: u32 = 32u;
const SK_BK: u32 = 32u;
const SK_VEC: u32 = 8u; // SK_TILE / 4
const SK_THREADS: u32 = 256u;
const SK_SLICE_K: u32 = 8u; // SK_BK / 4 slices

// sk_a[kk·8 + r4] holds op(A) rows 4·r4 .. 4·r4+3 at k = k0 + kk; sk_b likewise op(B) columns.
var<workgroup> sk_a: array<vec4<f32>, 256>;
var<workgroup> sk_b: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn matmul_skinny(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let t = tile_of(wid, nwg);
    if (t.w == 0u) {
        return;
    }
    let slice = tid / 64u;
    let lane = tid % 64u;
    let tx = lane % 8u;
    let ty = lane / 8u;
    let row0 = t.y * SK_TILE;
    let col0 = t.x * SK_TILE;
    let a_base = t.z * p.a_bs;
    let b_base = t.z * p.b_bs;
    let a_k_fast = p.a_k_fast != 0u;
    let b_n_fast = p.b_n_fast != 0u;

    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += SK_BK) {
        for (var q = 0u; q < 4u; q++) {
            let x = tid + q * SK_THREADS;
            let ar = select(x % SK_TILE, x / SK_BK, a_k_fast);
            let ak = select(x / SK_TILE, x % SK_BK, a_k_fast);
            sk_a[ak * SK_VEC + ar / 4u][ar % 4u] = a_at(a_base, row0 + ar, k0 + ak);
            let bc = select(x / SK_BK, x % SK_TILE, b_n_fast);
            let bk = select(x % SK_BK, x / SK_TILE, b_n_fast);
            sk_b[bk * SK_VEC + bc / 4u][bc % 4u] = b_at(b_base, k0 + bk, col0 + bc);
        }
        workgroupBarrier();
        for (var kk = slice * SK_SLICE_K; kk < (slice + 1u) * SK_SLICE_K; kk++) {
            let av = sk_a[kk * SK_VEC + ty];
            let bv = sk_b[kk * SK_VEC + tx];
            acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
        }
        workgroupBarrier();
    }

    // Sum the slices: 3 and 2 hand their blocks to 1 and 0, then 1 to 0.
    let at = lane * 4u;
    if (slice == 2u) {
        for (var r = 0u; r < 4u; r++) { sk_a[at + r] = acc[r]; }
    } else if (slice == 3u) {
        for (var r = 0u; r < 4u; r++) { sk_b[at + r] = acc[r]; }
    }
    workgroupBarrier();
    if (slice == 0u) {
        for (var r = 0u; r < 4u; r++) { acc[r] += sk_a[at + r]; }
    } else if (slice == 1u) {
        for (var r = 0u; r < 4u; r++) { acc[r] += sk_b[at + r]; }
    }
    workgroupBarrier();
    if (slice == 1u) {
        for (var r = 0u; r < 4u; r++) { sk_a[at + r] = acc[r]; }
    }
    workgroupBarrier();
    if (slice == 0u) {
        let c_base = t.z * p.m * p.n;
        let j0 = col0 + tx * 4u;
        for (var r = 0u; r < 4u; r++) {
            let i = row0 + ty * 4u + r;
            let v = acc[r] + sk_a[at + r];
            if (i < p.m) {
                let row = c_base + i * p.n;
                for (var q = 0u; q < 4u; q++) {
                    if (j0 + q < p.n) {
                        c[row + j0 + q] = v[q];
                    }
                }
            }
        }
        if (has_epilogue()) {
            finish_block(c_base, row0 + ty * 4u, 4u, 1u, j0, 4u, 1u);
        }
    }
    store_column_sums(t, col0, SK_TILE, tid, SK_THREADS);
}
