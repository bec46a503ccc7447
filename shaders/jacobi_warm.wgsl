// Warm start: the solver works on V0ᵀ·A·V0 and accumulates its rotations onto V0, so the
// eigenvectors it returns are V0·J₁·J₂·…  Two batched products, each invocation computing a
// 4×4 tile of the result (8 loads per 16 multiply-adds): T = A·V0 (T lives in the
// output-vectors buffer, unused until the end), then the upper triangle of V0ᵀ·T together
// with the copy Vᵀ ← V0ᵀ, a NaN/Inf check of V0, and the largest |(V0ᵀV0 − I)_ij| (the same
// loop over k with V0's columns j… in place of T's: a non-orthogonal V0 would make the
// result wrong, so `warm_fallback` replaces it by a cold start).

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> v0: array<f32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> departure: array<atomic<u32>>;

// Entry (i, j) of a row-major n×n matrix at `base` in v0 / t, 0 outside.
fn v0_at(base: u32, i: u32, j: u32) -> f32 {
    let n = p.n;
    return select(0.0, v0[base + min(i, n - 1u) * n + min(j, n - 1u)], i < n && j < n);
}

fn t_at(base: u32, i: u32, j: u32) -> f32 {
    let n = p.n;
    return select(0.0, t[base + min(i, n - 1u) * n + min(j, n - 1u)], i < n && j < n);
}

// a_ij of the symmetric working matrix (upper triangle stored), 0 outside.
fn a_at(base: u32, i: u32, j: u32) -> f32 {
    let n = p.n;
    let lo = min(min(i, j), n - 1u);
    let hi = min(max(i, j), n - 1u);
    return select(0.0, a[base + lo * n + hi], i < n && j < n);
}

@compute @workgroup_size(TILE_WG)
fn warm_product(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    if (tile.x >= p.batch) {
        return;
    }
    let n = p.n;
    let base = tile.x * n * n;
    let i = tile.y;
    let j = tile.z;
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var k = 0u; k < n; k++) {
        let y = vec4<f32>(v0_at(base, k, j), v0_at(base, k, j + 1u), v0_at(base, k, j + 2u), v0_at(base, k, j + 3u));
        r0 += a_at(base, i, k) * y;
        r1 += a_at(base, i + 1u, k) * y;
        r2 += a_at(base, i + 2u, k) * y;
        r3 += a_at(base, i + 3u, k) * y;
    }
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            if (i + di < n && j + dj < n) {
                t[base + (i + di) * n + j + dj] = rows[di][dj];
            }
        }
    }
}

@compute @workgroup_size(TILE_WG)
fn warm_congruence(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    if (tile.x >= p.batch) {
        return;
    }
    let n = p.n;
    let base = tile.x * n * n;
    let i = tile.y;
    let j = tile.z;
    // Vᵀ ← V0ᵀ for this tile, checking V0.
    let width = 4u * p.chunks;
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            if (i + di < n && j + dj < n) {
                let x = v0[base + (i + di) * n + j + dj];
                v[(tile.x * n + j + dj) * width + i + di] = x;
                if (non_finite(x)) {
                    atomicOr(&status[tile.x], NONFINITE_WARM_START);
                }
            }
        }
    }
    // The products, on the tiles that reach the upper triangle.
    if (i > j + 3u) {
        return;
    }
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    var g0 = vec4<f32>();
    var g1 = vec4<f32>();
    var g2 = vec4<f32>();
    var g3 = vec4<f32>();
    for (var k = 0u; k < n; k++) {
        let y = vec4<f32>(t_at(base, k, j), t_at(base, k, j + 1u), t_at(base, k, j + 2u), t_at(base, k, j + 3u));
        let z = vec4<f32>(v0_at(base, k, j), v0_at(base, k, j + 1u), v0_at(base, k, j + 2u), v0_at(base, k, j + 3u));
        let x0 = v0_at(base, k, i);
        let x1 = v0_at(base, k, i + 1u);
        let x2 = v0_at(base, k, i + 2u);
        let x3 = v0_at(base, k, i + 3u);
        r0 += x0 * y;
        r1 += x1 * y;
        r2 += x2 * y;
        r3 += x3 * y;
        g0 += x0 * z;
        g1 += x1 * z;
        g2 += x2 * z;
        g3 += x3 * z;
    }
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    let grams = array<vec4<f32>, 4>(g0, g1, g2, g3);
    var worst = 0.0;
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            if (i + di <= j + dj && j + dj < n) {
                a[base + (i + di) * n + j + dj] = rows[di][dj];
                worst = max(worst, abs(grams[di][dj] - select(0.0, 1.0, i + di == j + dj)));
            }
        }
    }
    // Non-negative floats order like their bit patterns.
    atomicMax(&departure[tile.x], bitcast<u32>(worst));
}
