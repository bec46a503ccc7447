// Epilogue, after the Newton–Schulz step: the eigenvalues as Rayleigh quotients of the
// (scaled, symmetrised) input A itself, and a first-order correction of the eigenvectors.
// W holds the orthonormalised eigenvectors as rows (working-matrix buffer).
//
// The rotations round every column of V about (n − 1)·sweeps times, a random walk of
// ~ε·√(n·sweeps) away from the eigenvectors; the diagonal they leave carries the same. Both
// are measured against A afresh here:
// `rq_product`: T = A·Wᵀ (into the working-vectors buffer, free after the Newton–Schulz step).
// `rq_values`: d_j = w_jᵀ·A·w_j, one invocation per eigenvalue, in the solver's scale (the rank
//   kernel divides by 2^e). Exact up to the rounding of the two products and, to second order,
//   the error of w_j.
// `coupling`: X_kj = c_kj/(d_j − d_k), c_kj the symmetric part of w_kᵀ·A·w_j, where that is
//   below COUPLED (well separated pairs), else 0: the first-order rotation that decouples w_k
//   from w_j (into the output-vectors buffer, free until the gather), exactly skew-symmetric.
// `refine`: w_j ← w_j + Σ_k X_kj·w_k (into the working-vectors buffer, as Vᵀ). The update is
//   small, so its own rounding is negligible; X is skew-symmetric, so W departs from
//   orthonormality only by XᵀX, which the Newton–Schulz step run again afterwards removes
//   (within clusters, where X is largest, at no cost to the residual). Pairs closer than
//   their coupling are left as they are: within a cluster the residual is no larger than the
//   coupling itself.
// The input A is binding 1 (jacobi_input.wgsl).

@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
@group(0) @binding(4) var<storage, read> scale_exp: array<i32>;
@group(0) @binding(5) var<storage, read_write> rq: array<f32>;
@group(0) @binding(6) var<storage, read_write> x: array<f32>;

// Largest first-order rotation applied, 2^-12: its second-order error (~2^-24) stays at ε.
const COUPLED: f32 = 0.000244140625;

// Entry (i, j) of an n×n matrix at `base` in W, 0 for i past n.
fn w_at(base: u32, i: u32, j: u32) -> f32 {
    let n = p.n;
    return select(0.0, w[base + min(i, n - 1u) * n + j], i < n);
}

@compute @workgroup_size(TILE_WG)
fn rq_product(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    if (tile.x >= p.batch) {
        return;
    }
    let n = p.n;
    let base = tile.x * n * n;
    let e = scale_exp[tile.x];
    let i = tile.y;
    let j = tile.z;
    // Rows past n read row n − 1, harmlessly: their results are not stored.
    let i0 = min(i, n - 1u);
    let i1 = min(i + 1u, n - 1u);
    let i2 = min(i + 2u, n - 1u);
    let i3 = min(i + 3u, n - 1u);
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var k = 0u; k < n; k++) {
        let y = vec4<f32>(w_at(base, j, k), w_at(base, j + 1u, k), w_at(base, j + 2u, k), w_at(base, j + 3u, k));
        r0 += scaled_symmetric(base, i0, k, e) * y;
        r1 += scaled_symmetric(base, i1, k, e) * y;
        r2 += scaled_symmetric(base, i2, k, e) * y;
        r3 += scaled_symmetric(base, i3, k, e) * y;
    }
    store_tile(base, i, j, array<vec4<f32>, 4>(r0, r1, r2, r3));
}

// Writes a 4×4 tile at (i, j) of T, the parts inside n×n.
fn store_tile(base: u32, i: u32, j: u32, rows: array<vec4<f32>, 4>) {
    let n = p.n;
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            if (i + di < n && j + dj < n) {
                t[base + (i + di) * n + j + dj] = rows[di][dj];
            }
        }
    }
}

@compute @workgroup_size(64)
fn rq_values(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let b = gid.y;
    let n = p.n;
    if (j >= n) {
        return;
    }
    let base = b * n * n;
    var s = 0.0;
    for (var i = 0u; i < n; i++) {
        s += w[base + j * n + i] * t[base + i * n + j];
    }
    rq[b * n + j] = s;
}

@compute @workgroup_size(TILE_WG)
fn coupling(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    let k = tile.y;
    let j = tile.z;
    // Tiles on or above the diagonal, each with its mirror image.
    if (tile.x >= p.batch || k > j) {
        return;
    }
    let n = p.n;
    let base = tile.x * n * n;
    // C = W·T, rows k… against columns j… (c) and rows j… against columns k… (m).
    var c0 = vec4<f32>();
    var c1 = vec4<f32>();
    var c2 = vec4<f32>();
    var c3 = vec4<f32>();
    var m0 = vec4<f32>();
    var m1 = vec4<f32>();
    var m2 = vec4<f32>();
    var m3 = vec4<f32>();
    for (var i = 0u; i < n; i++) {
        let ti = base + i * n;
        let y = vec4<f32>(t[ti + min(j, n - 1u)], t[ti + min(j + 1u, n - 1u)], t[ti + min(j + 2u, n - 1u)], t[ti + min(j + 3u, n - 1u)]);
        let z = vec4<f32>(t[ti + min(k, n - 1u)], t[ti + min(k + 1u, n - 1u)], t[ti + min(k + 2u, n - 1u)], t[ti + min(k + 3u, n - 1u)]);
        c0 += w_at(base, k, i) * y;
        c1 += w_at(base, k + 1u, i) * y;
        c2 += w_at(base, k + 2u, i) * y;
        c3 += w_at(base, k + 3u, i) * y;
        m0 += w_at(base, j, i) * z;
        m1 += w_at(base, j + 1u, i) * z;
        m2 += w_at(base, j + 2u, i) * z;
        m3 += w_at(base, j + 3u, i) * z;
    }
    let cs = array<vec4<f32>, 4>(c0, c1, c2, c3);
    let ms = array<vec4<f32>, 4>(m0, m1, m2, m3);
    let d0 = tile.x * n;
    for (var dk = 0u; dk < 4u; dk++) {
        for (var dj = 0u; dj < 4u; dj++) {
            let r = k + dk;
            let c = j + dj;
            if (r < n && c < n) {
                // The symmetric part, so that X is exactly skew-symmetric.
                let coupled = 0.5 * (cs[dk][dj] + ms[dj][dk]);
                let gap = rq[d0 + c] - rq[d0 + r];
                var rotation = 0.0;
                if (abs(coupled) < COUPLED * abs(gap)) {
                    rotation = coupled / gap;
                }
                x[base + r * n + c] = rotation;
                x[base + c * n + r] = -rotation;
            }
        }
    }
}

@compute @workgroup_size(TILE_WG)
fn refine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    if (tile.x >= p.batch) {
        return;
    }
    let n = p.n;
    let base = tile.x * n * n;
    let j = tile.y;
    let c = tile.z;
    // Rows j… of the update Xᵀ·W, columns c…: Σ_k X_kj·w_k.
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var k = 0u; k < n; k++) {
        let xk = base + k * n;
        let y = vec4<f32>(w_at(base, k, min(c, n - 1u)), w_at(base, k, min(c + 1u, n - 1u)), w_at(base, k, min(c + 2u, n - 1u)), w_at(base, k, min(c + 3u, n - 1u)));
        r0 += x[xk + min(j, n - 1u)] * y;
        r1 += x[xk + min(j + 1u, n - 1u)] * y;
        r2 += x[xk + min(j + 2u, n - 1u)] * y;
        r3 += x[xk + min(j + 3u, n - 1u)] * y;
    }
    // Into Vᵀ's layout (rows of `chunks` vec4, zero padding), for the second Newton–Schulz step.
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    let width = 4u * p.chunks;
    for (var dj = 0u; dj < 4u; dj++) {
        if (j + dj < n) {
            for (var dc = 0u; dc < 4u; dc++) {
                let col = c + dc;
                let value = rows[dj][dc] + w_at(base, j + dj, min(col, n - 1u));
                t[(tile.x * n + j + dj) * width + col] = select(0.0, value, col < n);
            }
        }
    }
}
