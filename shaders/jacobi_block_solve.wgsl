// Blocked path, first half of a round: one workgroup per block pair (I, J) of the round and
// matrix still iterating (listed in `live`, one per workgroup row). It loads the 2b×2b problem
// S = A[I∪J, I∪J] (packed upper triangle) into workgroup memory and, unless every entry it
// would visit passes the relative test, sweeps it once by the same parallel-ordered Jacobi
// method as the one-workgroup solver (Rutishauser's update, the relative test against the
// matrix's floor), then stores S back with D = Q − I, Q the product of its rotations
// (S ← QᵀSQ), row-major with `q_stride` floats a row. `rotated` records whether Q differs
// from I, so that `block_apply` skips the tiles of pairs that did nothing (and reads D = 0 for
// the others). MMAX (the largest 2b: 32 or 64) is an override constant.
//
// Which pairs: in the first and the last round of an outer sweep every pair of S (2b − 1
// inner rounds), in the rounds between only the b² pairs across the two blocks (b inner
// rounds). Every pair of indices is then visited in every outer sweep, those within a block
// twice. Measured on lavapipe (random and rank-deficient matrices, n = 256 and 512): sweeping
// every pair in every round needs the same outer sweeps but leaves 2.5× the residual (its
// extra rotations), and sweeping S to convergence saves about one outer sweep in eight for
// two to three times the work; visiting the pairs within a block in the first round only
// costs one or two more outer sweeps.
//
// Iterations of one invocation: ~18 per inner round, ~1,400 for a 64×64 problem with its
// loads and stores, far below llvmpipe's 65,535.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> live: array<u32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> rotated: array<u32>;
@group(0) @binding(5) var<storage, read> floor_of: array<f32>;

override MMAX: u32;
const WG: u32 = 64u;
var<workgroup> wa: array<f32, MMAX * (MMAX + 1u) / 2u>;
var<workgroup> wq: array<vec4<f32>, MMAX * MMAX / 4u>;
var<workgroup> wrot: array<Rot, MMAX / 2u>;
var<workgroup> count: atomic<u32>;
var<workgroup> flag: u32;

// Offset of (i, j), i ≤ j, in the packed upper triangle of order mm.
fn packed(mm: u32, i: u32, j: u32) -> u32 {
    return i * mm - (i * (i + 1u)) / 2u + j;
}

fn sym_get(mm: u32, i: u32, j: u32) -> f32 {
    return wa[packed(mm, min(i, j), max(i, j))];
}

fn sym_set(mm: u32, i: u32, j: u32, x: f32) {
    wa[packed(mm, min(i, j), max(i, j))] = x;
}

// Pair t of inner round r: in the first round of a sweep the round-robin schedule over all
// 2b indices (2b − 1 rounds), in the others the pairs (t, b + (t + r) mod b) between the two
// blocks (b rounds) — the pairs within a block were visited in the first round.
fn inner_pair(t: u32, r: u32, bs: u32, cross: bool) -> vec2<u32> {
    if (cross) {
        return vec2<u32>(t, bs + (t + r) % bs);
    }
    return round_robin(t, r, 2u * bs);
}

// Entries of S that fail the relative test among the pairs a sweep visits, counted by the
// whole workgroup.
fn unconverged(bs: u32, cross: bool, floor: f32, lid: u32) -> u32 {
    let mm = 2u * bs;
    if (lid == 0u) {
        atomicStore(&count, 0u);
    }
    workgroupBarrier();
    var bad = 0u;
    for (var i = 0u; i < select(mm, bs, cross); i++) {
        let aii = wa[packed(mm, i, i)];
        for (var j = select(i + 1u, bs, cross) + lid; j < mm; j += WG) {
            if (!negligible(wa[packed(mm, i, j)], aii, wa[packed(mm, j, j)], floor)) {
                bad += 1u;
            }
        }
    }
    if (bad != 0u) {
        atomicAdd(&count, bad);
    }
    workgroupBarrier();
    if (lid == 0u) {
        flag = atomicLoad(&count);
    }
    return workgroupUniformLoad(&flag);
}

// One sweep of S (order mm = 2b) over the pairs `inner_pair` makes, rotations accumulated
// into the rows of Qᵀ (qc vec4 each).
fn sweep(bs: u32, cross: bool, qc: u32, floor: f32, lid: u32) {
    let mm = 2u * bs;
    let np = bs;
    // Thread t rotates vec4 column `chunk` of the rows of Qᵀ for pairs l ≡ t / qc.
    let chunk = lid % qc;
    let stride = WG / qc;
    let first = select(np, lid / qc, lid < stride * qc);
    // Block rows reach (np − 1)/2 blocks ahead, the first half of them one more when np is
    // even: every unordered pair of pairs once. Work item (k, d) is block (k, k + d mod np),
    // d ≤ ⌈np/2⌉, spread over the whole workgroup.
    let half = (np - 1u) / 2u;
    let items = np * ((np + 1u) / 2u);
    for (var r = 0u; r < select(mm - 1u, bs, cross); r++) {
        if (lid < np) {
            let ij = inner_pair(lid, r, bs, cross);
            var rot = Rot(1.0, 0.0, ij.x, ij.y);
            let pp = packed(mm, ij.x, ij.x);
            let qq = packed(mm, ij.y, ij.y);
            let pq = packed(mm, ij.x, ij.y);
            let apq = wa[pq];
            let app = wa[pp];
            let aqq = wa[qq];
            if (!negligible(apq, app, aqq, floor)) {
                let cst = rotation(app, aqq, apq);
                wa[pp] = app - cst.z * apq;
                wa[qq] = aqq + cst.z * apq;
                wa[pq] = 0.0;
                rot.c = cst.x;
                rot.s = cst.y;
            }
            wrot[lid] = rot;
        }
        workgroupBarrier();
        for (var l = first; l < np; l += stride) {
            let rl = wrot[l];
            if (rl.s != 0.0) {
                let x = wq[rl.i * qc + chunk];
                let y = wq[rl.j * qc + chunk];
                wq[rl.i * qc + chunk] = rl.c * x - rl.s * y;
                wq[rl.j * qc + chunk] = rl.s * x + rl.c * y;
            }
        }
        for (var item = lid; item < items; item += WG) {
            let k = item % np;
            let d = item / np + 1u;
            var l = k + d;
            if (l >= np) {
                l -= np;
            }
            let rk = wrot[k];
            let rl = wrot[l];
            if (d <= select(half, np / 2u, k < np / 2u) && (rk.s != 0.0 || rl.s != 0.0)) {
                let x = vec4<f32>(sym_get(mm, rk.i, rl.i), sym_get(mm, rk.i, rl.j), sym_get(mm, rk.j, rl.i), sym_get(mm, rk.j, rl.j));
                let y = rotate_block(x, rk, rl);
                sym_set(mm, rk.i, rl.i, y.x);
                sym_set(mm, rk.i, rl.j, y.y);
                sym_set(mm, rk.j, rl.i, y.z);
                sym_set(mm, rk.j, rl.j, y.w);
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn block_solve(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = live[wid.y];
    let n = p.n;
    let base = b * n * n;
    let blocks = pair_of(wid.x, p.round);
    let bs = block_size();
    let mm = 2u * bs;
    let qc = q_stride(bs) / 4u;
    let floor = floor_of[b];
    for (var i = 0u; i < mm; i++) {
        let gi = global_index(blocks, i, bs);
        for (var j = i + lid; j < mm; j += WG) {
            // gi < gj: a real column index makes a real row index.
            let gj = global_index(blocks, j, bs);
            var x = 0.0;
            if (gj < n) {
                x = a[base + gi * n + gj];
            }
            wa[packed(mm, i, j)] = x;
        }
    }
    for (var e = lid; e < mm * qc; e += WG) {
        let d = e / qc - 4u * (e % qc);
        wq[e] = select(vec4<f32>(), vec4<f32>(1.0), vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(d));
    }
    workgroupBarrier();
    let cross = p.round != 0u && p.round + 2u != p.m;
    let did = select(0u, 1u, unconverged(bs, cross, floor, lid) != 0u);
    if (did != 0u) {
        sweep(bs, cross, qc, floor, lid);
    }
    let slot = b * p.pairs + wid.x;
    if (lid == 0u) {
        rotated[slot] = did;
    }
    if (did == 0u) {
        return;
    }
    for (var i = 0u; i < mm; i++) {
        let gi = global_index(blocks, i, bs);
        for (var j = i + lid; j < mm; j += WG) {
            let gj = global_index(blocks, j, bs);
            if (gj < n) {
                a[base + gi * n + gj] = wa[packed(mm, i, j)];
            }
        }
    }
    // D = (Qᵀ)ᵀ − I, its padding columns zero.
    let stride = 4u * qc;
    let first = slot * mm * stride;
    for (var e = lid; e < mm * stride; e += WG) {
        let r = e / stride;
        let c = e % stride;
        var x = 0.0;
        if (c < mm) {
            x = wq[c * qc + r / 4u][r % 4u] - select(0.0, 1.0, r == c);
        }
        q[first + e] = x;
    }
}
