// Epilogue: one Newton–Schulz step V ← V·(3I − VᵀV)/2 = V + V·E/2 with E = I − VᵀV, which
// takes the eigenvectors from the ~n^1.5·ε departure from orthogonality that f32 rotations
// accumulate to ~n·ε, without moving them off their eigenvalues, and keeps warm starts that
// feed the vectors back step after step from drifting. Run twice: after the sweeps, and after
// the first-order correction of jacobi_rayleigh.wgsl. Both products run in 4×4 tiles per
// invocation, over the vec4 rows of Vᵀ (working-vectors buffer).
// `gram`: E (n×n, in the output-vectors buffer as scratch), tiles on or above the diagonal,
// each written with its mirror image.
// `correct`: Wᵀ = Vᵀ + E·Vᵀ/2 into the working-matrix buffer (row i = eigenvector i, n×n),
// free once the sweeps are done.

@group(0) @binding(1) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> e: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;

// vec4 number c of row i of matrix b's Vᵀ; zero for rows past n (columns past n are zero).
fn v_at(b: u32, i: u32, c: u32) -> vec4<f32> {
    let n = p.n;
    return select(vec4<f32>(), v[(b * n + min(i, n - 1u)) * p.chunks + c], i < n);
}

@compute @workgroup_size(TILE_WG)
fn gram(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    let b = tile.x;
    let i = tile.y;
    let j = tile.z;
    if (b >= p.batch || i > j) {
        return;
    }
    let n = p.n;
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var c = 0u; c < p.chunks; c++) {
        let y0 = v_at(b, j, c);
        let y1 = v_at(b, j + 1u, c);
        let y2 = v_at(b, j + 2u, c);
        let y3 = v_at(b, j + 3u, c);
        let x0 = v_at(b, i, c);
        let x1 = v_at(b, i + 1u, c);
        let x2 = v_at(b, i + 2u, c);
        let x3 = v_at(b, i + 3u, c);
        r0 += vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
        r1 += vec4<f32>(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
        r2 += vec4<f32>(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
        r3 += vec4<f32>(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
    }
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    let base = b * n * n;
    for (var di = 0u; di < 4u; di++) {
        for (var dj = 0u; dj < 4u; dj++) {
            let r = i + di;
            let s = j + dj;
            if (r < n && s < n) {
                let x = select(0.0, 1.0, r == s) - rows[di][dj];
                e[base + r * n + s] = x;
                e[base + s * n + r] = x;
            }
        }
    }
}

@compute @workgroup_size(TILE_WG)
fn correct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = tile_of(flat(gid, nwg));
    let b = tile.x;
    if (b >= p.batch) {
        return;
    }
    let n = p.n;
    let base = b * n * n;
    let i = tile.y;
    let c = tile.z / 4u;
    // Rows past n read row n − 1 of E, harmlessly: their results are not stored.
    let ri = base + min(i, n - 1u) * n;
    let ri1 = base + min(i + 1u, n - 1u) * n;
    let ri2 = base + min(i + 2u, n - 1u) * n;
    let ri3 = base + min(i + 3u, n - 1u) * n;
    var r0 = vec4<f32>();
    var r1 = vec4<f32>();
    var r2 = vec4<f32>();
    var r3 = vec4<f32>();
    for (var j = 0u; j < n; j++) {
        let y = v_at(b, j, c);
        r0 += e[ri + j] * y;
        r1 += e[ri1 + j] * y;
        r2 += e[ri2 + j] * y;
        r3 += e[ri3 + j] * y;
    }
    let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
    for (var di = 0u; di < 4u; di++) {
        let x = v_at(b, i + di, c) + 0.5 * rows[di];
        for (var dk = 0u; dk < 4u; dk++) {
            if (i + di < n && 4u * c + dk < n) {
                w[base + (i + di) * n + 4u * c + dk] = x[dk];
            }
        }
    }
}
