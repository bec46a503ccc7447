// Warm start: the solver works on V0ᵀ·A·V0 and accumulates its rotations onto V0, so the
// eigenvectors it returns are V0·J₁·J₂·…  Two batched products, each invocation computing a
// 4×4 tile of the result (8 loads per 16 multiply-adds): T = A·V0 (T lives in the
// output-vectors buffer, unused until the end), then the upper triangle of V0ᵀ·T together
// with the copy Vᵀ ← V0ᵀ and a NaN/Inf check of V0.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> v0: array<f32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// (batch index, first row, first column) of tile `idx`, or batch = p.batch past the end.
fn tile_of(idx: u32) -> vec3<u32> {
    let tiles = (p.n + 3u) / 4u;
    let per = tiles * tiles;
    let r = idx % per;
    return vec3<u32>(idx / per, (r / tiles) * 4u, (r % tiles) * 4u);
}

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

@compute @workgroup_size(64)
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

@compute @workgroup_size(64)
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
    // The product, on the tiles that reach the upper triangle.
    if (i > j + 3u) {
        return;
    }
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var k = 0u; k < n; k++) {
        let y = vec4<f32>(t_at(base, k, j), t_at(base, k, j + 1u), t_at(base, k, j + 2u), t_at(base, k, j + 3u));
        r0 += v0_at(base, k, i) * y;
        r1 += v0_at(base, k, i + 1u) * y;
        r2 += v0_at(base, k, i + 2u) * y;
        r3 += v0_at(base, k, i + 3u) * y;
    }
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            if (i + di <= j + dj && j + dj < n) {
                a[base + (i + di) * n + j + dj] = rows[di][dj];
            }
        }
    }
}
