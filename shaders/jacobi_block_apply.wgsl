// Blocked path, second half of a round: applies the round's block rotations Q_P (from
// `block_solve`) to the rest of A and to Vᵀ, as batched 2b×2b matrix products, one output
// tile per workgroup (grid: tiles × matrices still iterating). Tiles 0 … k(k−1)/2 − 1 are the
// off-diagonal tiles A[P, R] ← Q_Pᵀ·A[P, R]·Q_R of the block pairs P < R of the round (k
// pairs; the diagonal tiles A[P, P] were written by `block_solve`); the rest are the tiles
// Vᵀ[P, C] ← Q_Pᵀ·Vᵀ[P, C] of 2b columns C of the rows of pair P. Tiles are disjoint, so each
// is updated in place. A tile whose rotations are all identities is skipped.
//
// The products are formed as updates, X·Q = X + X·D with D = Q − I (what `block_solve`
// stores): as the sweeps converge D shrinks, and so does the rounding of the 2b-term sums,
// which would otherwise be ~ε·|X| per term in every round.
//
// TILE (the largest 2b: 32 or 64) is an override constant, and with it the workgroup size
// WG = (TILE/4)². The tile sits in workgroup memory
// as rows of TILE/4 vec4, the Q being applied beside it; each invocation owns a 4×4 block of
// the product. The upper-triangle storage of A holds a sub-block (X, Y) of a tile, X ≠ Y, at
// rows X and columns Y when X < Y and transposed otherwise: loads and stores walk the stored
// layout, so consecutive invocations touch consecutive addresses either way.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> live: array<u32>;
@group(0) @binding(3) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> rotated: array<u32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

override TILE: u32;
override TQ: u32 = TILE / 4u;
override WG: u32 = TQ * TQ;
// The tile (also Y = X·Q_R, then the result), and D_R then D_P; element (i, j) of each at
// [i * TQ + j / 4][j % 4]. 32 KiB together when TILE = 64, nothing else: the skip flag is
// passed through x[0].
var<workgroup> x: array<vec4<f32>, TILE * TQ>;
var<workgroup> qs: array<vec4<f32>, TILE * TQ>;

// D = Q − I of block pair `slot` into rows 0 … 4·qv − 1 and vec4 columns 0 … qv − 1 of qs
// (the part the products read): zero where the pair rotated nothing (its D was not stored)
// and in the padding rows past mm.
fn load_d(slot: u32, mm: u32, qv: u32, lid: u32) {
    let identity = rotated[slot] == 0u;
    for (var e = lid; e < 4u * qv * qv; e += WG) {
        let r = e / qv;
        let c = e % qv;
        var y = vec4<f32>();
        if (r < mm && !identity) {
            y = q[(slot * mm + r) * qv + c];
        }
        qs[r * TQ + c] = y;
    }
}

// Zero over the part of the tile the products read, padding included.
fn clear_tile(qv: u32, lid: u32) {
    for (var e = lid; e < 4u * qv * qv; e += WG) {
        x[(e / qv) * TQ + e % qv] = vec4<f32>();
    }
}

// Where element `e` of sub-block `sub` = (sr, sc) of the A tile of pairs `bp` (rows) and `br`
// (columns) is stored, walking the stored layout: (global row, global column, tile row, tile
// column), the global row < the global column.
fn a_entry(bp: vec2<u32>, br: vec2<u32>, bs: u32, e: u32) -> vec4<u32> {
    let sub = e / (bs * bs);
    let rc = e % (bs * bs);
    let sr = sub / 2u;
    let sc = sub % 2u;
    let row_block = select(bp.y, bp.x, sr == 0u);
    let col_block = select(br.y, br.x, sc == 0u);
    let r = rc / bs;
    let c = rc % bs;
    let lo = min(row_block, col_block);
    let hi = max(row_block, col_block);
    if (row_block < col_block) {
        return vec4<u32>(lo * bs + r, hi * bs + c, sr * bs + r, sc * bs + c);
    }
    return vec4<u32>(lo * bs + r, hi * bs + c, sr * bs + c, sc * bs + r);
}

@compute @workgroup_size(WG)
fn block_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = live[wid.y];
    let n = p.n;
    let k = p.pairs;
    let bs = block_size();
    let mm = 2u * bs;
    let qv = q_stride(bs) / 4u;
    let a_tiles = k * (k - 1u) / 2u;
    let v_cols = (n + mm - 1u) / mm;
    let t = wid.x;
    // (P, R) for an A tile, (P, C) for a V tile.
    var pp = 0u;
    var rr = 0u;
    if (t < a_tiles) {
        var rest = t;
        while (rest >= k - 1u - pp) {
            rest -= k - 1u - pp;
            pp += 1u;
        }
        rr = pp + 1u + rest;
    } else {
        pp = (t - a_tiles) / v_cols;
        rr = (t - a_tiles) % v_cols;
    }
    let is_a = t < a_tiles;
    if (lid == 0u) {
        var go = rotated[b * k + pp];
        if (is_a) {
            go |= rotated[b * k + rr];
        }
        x[0] = vec4<f32>(f32(go));
    }
    if (workgroupUniformLoad(&x[0]).x == 0.0) {
        return;
    }
    workgroupBarrier();
    clear_tile(qv, lid);
    workgroupBarrier();
    let bp = pair_of(pp, p.round);
    var br = vec2<u32>();
    if (is_a) {
        br = pair_of(rr, p.round);
    }
    let base = b * n * n;
    let width = 4u * p.chunks;
    let c0 = rr * mm;
    if (is_a) {
        for (var e = lid; e < mm * mm; e += WG) {
            let at = a_entry(bp, br, bs, e);
            if (at.y < n) {
                x[at.z * TQ + at.w / 4u][at.w % 4u] = a[base + at.x * n + at.y];
            }
        }
    } else {
        for (var e = lid; e < mm * mm; e += WG) {
            let i = e / mm;
            let j = e % mm;
            let gi = global_index(bp, i, bs);
            if (gi < n && c0 + j < n) {
                x[i * TQ + j / 4u][j % 4u] = v[(b * n + gi) * width + c0 + j];
            }
        }
    }
    let ti = lid / TQ;
    let tj = lid % TQ;
    let owns_block = ti < qv && tj < qv;
    if (is_a) {
        // Y = X + X·D_R, in place: each invocation reads its own rows, writes its own block.
        load_d(b * k + rr, mm, qv, lid);
        workgroupBarrier();
        var y0 = vec4<f32>();
        var y1 = vec4<f32>();
        var y2 = vec4<f32>();
        var y3 = vec4<f32>();
        if (owns_block) {
            for (var k4 = 0u; k4 < qv; k4++) {
                let q0 = qs[(4u * k4) * TQ + tj];
                let q1 = qs[(4u * k4 + 1u) * TQ + tj];
                let q2 = qs[(4u * k4 + 2u) * TQ + tj];
                let q3 = qs[(4u * k4 + 3u) * TQ + tj];
                let x0 = x[(4u * ti) * TQ + k4];
                let x1 = x[(4u * ti + 1u) * TQ + k4];
                let x2 = x[(4u * ti + 2u) * TQ + k4];
                let x3 = x[(4u * ti + 3u) * TQ + k4];
                y0 += x0.x * q0 + x0.y * q1 + x0.z * q2 + x0.w * q3;
                y1 += x1.x * q0 + x1.y * q1 + x1.z * q2 + x1.w * q3;
                y2 += x2.x * q0 + x2.y * q1 + x2.z * q2 + x2.w * q3;
                y3 += x3.x * q0 + x3.y * q1 + x3.z * q2 + x3.w * q3;
            }
        }
        workgroupBarrier();
        if (owns_block) {
            x[(4u * ti) * TQ + tj] += y0;
            x[(4u * ti + 1u) * TQ + tj] += y1;
            x[(4u * ti + 2u) * TQ + tj] += y2;
            x[(4u * ti + 3u) * TQ + tj] += y3;
        }
    }
    // Z = Y + D_Pᵀ·Y (Y = X for a V tile).
    load_d(b * k + pp, mm, qv, lid);
    workgroupBarrier();
    var z0 = vec4<f32>();
    var z1 = vec4<f32>();
    var z2 = vec4<f32>();
    var z3 = vec4<f32>();
    if (owns_block) {
        for (var kk = 0u; kk < mm; kk++) {
            let qp = qs[kk * TQ + ti];
            let yr = x[kk * TQ + tj];
            z0 += qp.x * yr;
            z1 += qp.y * yr;
            z2 += qp.z * yr;
            z3 += qp.w * yr;
        }
    }
    workgroupBarrier();
    if (owns_block) {
        x[(4u * ti) * TQ + tj] += z0;
        x[(4u * ti + 1u) * TQ + tj] += z1;
        x[(4u * ti + 2u) * TQ + tj] += z2;
        x[(4u * ti + 3u) * TQ + tj] += z3;
    }
    workgroupBarrier();
    if (is_a) {
        for (var e = lid; e < mm * mm; e += WG) {
            let at = a_entry(bp, br, bs, e);
            if (at.y < n) {
                a[base + at.x * n + at.y] = x[at.z * TQ + at.w / 4u][at.w % 4u];
            }
        }
    } else {
        for (var e = lid; e < mm * mm; e += WG) {
            let i = e / mm;
            let j = e % mm;
            let gi = global_index(bp, i, bs);
            if (gi < n && c0 + j < n) {
                v[(b * n + gi) * width + c0 + j] = x[i * TQ + j / 4u][j % 4u];
            }
        }
    }
}
