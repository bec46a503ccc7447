// The matmul variant that needs subgroup operations (see src/kernels/matmul.rs): compiled only
// on devices with wgpu's SUBGROUP feature, and offered only where no subgroup has more than 32
// invocations. The Rust side puts activation.wgsl and matmul_common.wgsl (the parameters,
// bindings, operand loads and epilogue) before this file.
//
// Subgroup: a workgroup of 256 threads, seen as 8 row groups of 32, owns a 64×256 tile of C.
// Thread x of row group y accumulates rows 8·y .. 8·y+7 of the tile at columns x + 32·q,
// q = 0..7 (so that 32 neighbouring threads store 32 adjacent columns). Per step of SG_BK = 16
// along k the workgroup stages a 16×256 panel of op(B) in workgroup memory (16 KiB), as in
// the other tiled variants; op(A) does not go through workgroup memory at all: each lane
// loads op(A) at its own k for its 8 rows into registers, and the lanes of a subgroup hand
// those values to each other with subgroupShuffle — one shuffle feeds 8 fused multiply-adds,
// and the panel of A costs neither workgroup memory nor its reads.
//
// The lanes a thread shuffles from must work on its rows: a subgroup must lie inside one row
// group. That holds when subgroups are consecutive runs of local_invocation_index aligned to
// their size (every driver forms them so for a one-dimensional workgroup) of a size dividing
// 32, which the host checks (DeviceInfo::subgroup_sizes at most 32).

const SG_ROWS: u32 = 64u; // rows of the tile: 8 row groups × 8 rows
const SG_COLS: u32 = 256u; // columns of the tile: 32 threads × 8 columns, 32 apart
const SG_BK: u32 = 16u; // k per staged panel
const SG_GROUP: u32 = 32u; // threads per row group

// sg_b[kk·64 + 32·h + x] holds op(B) columns x + 32·(4h + c), c = 0..3, at k = k0 + kk: the two
// vec4s thread x reads per k (h = 0, 1), each row of 32 threads reading adjacent vec4s.
var<workgroup> sg_b: array<vec4<f32>, 1024>;

@compute @workgroup_size(256)
fn matmul_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let t = tile_of(wid, nwg);
    if (t.w == 0u) {
        return;
    }
    let x = tid % SG_GROUP;
    let y = tid / SG_GROUP;
    let row0 = t.y * SG_ROWS + y * 8u;
    let col0 = t.x * SG_COLS;
    let a_base = t.z * p.a_bs;
    let b_base = t.z * p.b_bs;
    let b_n_fast = p.b_n_fast != 0u;
    // The k values one round of shuffles covers: the subgroup's width, at most the panel's.
    let span = min(width, SG_BK);
    let my_k = lane % span;

    // acc[2r + h]: row row0 + r, columns x + 32·(4h + c) for c = 0..3.
    var acc: array<vec4<f32>, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += SG_BK) {
        // The op(B) panel, SG_BK k × SG_COLS columns, 16 values per thread, walked along
        // whichever dimension is contiguous.
        for (var q = 0u; q < 16u; q++) {
            let e = tid + q * 256u;
            let bc = select(e / SG_BK, e % SG_COLS, b_n_fast);
            let bk = select(e % SG_BK, e / SG_COLS, b_n_fast);
            let group = bc / SG_GROUP; // 4h + c
            sg_b[bk * 64u + (group / 4u) * SG_GROUP + bc % SG_GROUP][group % 4u] =
                b_at(b_base, k0 + bk, col0 + bc);
        }
        workgroupBarrier();
        for (var off = 0u; off < SG_BK; off += span) {
            // This lane's op(A) values at k0 + off + my_k, one per row; lane j of the subgroup
            // holds k0 + off + j for j < span.
            var av: array<f32, 8>;
            for (var r = 0u; r < 8u; r++) {
                av[r] = a_at(a_base, row0 + r, k0 + off + my_k);
            }
            for (var j = 0u; j < span; j++) {
                let at = (off + j) * 64u + x;
                let b0 = sg_b[at];
                let b1 = sg_b[at + SG_GROUP];
                for (var r = 0u; r < 8u; r++) {
                    let aj = vec4<f32>(subgroupShuffle(av[r], j));
                    acc[2u * r] = fma(aj, b0, acc[2u * r]);
                    acc[2u * r + 1u] = fma(aj, b1, acc[2u * r + 1u]);
                }
            }
        }
        workgroupBarrier();
    }

    let c_base = t.z * p.m * p.n;
    for (var r = 0u; r < 8u; r++) {
        let i = row0 + r;
        if (i < p.m) {
            let row = c_base + i * p.n;
            for (var h = 0u; h < 2u; h++) {
                let v = acc[2u * r + h];
                for (var q = 0u; q < 4u; q++) {
                    let j = col0 + x + SG_GROUP * (4u * h + q);
                    if (j < p.n) {
                        c[row + j] = v[q];
                    }
                }
            }
        }
    }
    if (has_epilogue()) {
        finish_block(c_base, row0, 8u, 1u, col0 + x, 8u, SG_GROUP);
    }
    store_column_sums(t, col0, SG_COLS, tid, 256u);
}
