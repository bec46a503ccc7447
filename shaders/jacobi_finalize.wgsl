// Epilogue, one workgroup per matrix: sorts the eigenvalues (the diagonal of the converged
// working matrix) ascending by rank — rank(i) = #{j : d_j < d_i, or d_j = d_i and j < i} —
// and writes each eigenvector to the column of its rank, with the sign that makes its
// largest-magnitude component positive (the first such component on ties). Matrices whose
// input was not finite get NaN everywhere.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> values: array<f32>;
@group(0) @binding(5) var<storage, read_write> vectors: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let n = p.n;
    let base = b * n * n;
    let failed = (status[b] & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u;
    let nan = bitcast<f32>(0x7fc00000u);
    for (var i = lid; i < n; i += WG) {
        let d = a[base + i * n + i];
        var rank = 0u;
        for (var j = 0u; j < n; j++) {
            let dj = a[base + j * n + j];
            if (dj < d || (dj == d && j < i)) {
                rank += 1u;
            }
        }
        var biggest = 0.0;
        var sign = 1.0;
        for (var r = 0u; r < n; r++) {
            let x = v[base + r * n + i];
            if (abs(x) > biggest) {
                biggest = abs(x);
                sign = select(-1.0, 1.0, x > 0.0);
            }
        }
        if (failed) {
            // NaN ranks are meaningless: keep the index, and poison the outputs.
            rank = i;
            sign = nan;
        }
        values[b * n + rank] = select(d, nan, failed);
        for (var r = 0u; r < n; r++) {
            vectors[base + r * n + rank] = sign * v[base + r * n + i];
        }
    }
}
