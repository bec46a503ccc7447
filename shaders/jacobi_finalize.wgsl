// Epilogue, one invocation per eigenpair (grid: ⌈n/64⌉ × batch): sorts the eigenvalues (the
// diagonal of the converged working matrix) ascending by rank —
// rank(i) = #{j : d_j < d_i, or d_j = d_i and j < i} — and writes eigenvector i (row i of Vᵀ)
// to the column of its rank, with the sign that makes its largest-magnitude component
// positive (the first such component on ties). Matrices whose input was not finite get NaN.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> values: array<f32>;
@group(0) @binding(5) var<storage, read_write> vectors: array<f32>;


@compute @workgroup_size(64)
fn finalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let b = gid.y;
    let n = p.n;
    if (i >= n) {
        return;
    }
    let base = b * n * n;
    let row = (b * n + i) * 4u * p.chunks;
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
        let x = v[row + r];
        if (abs(x) > biggest) {
            biggest = abs(x);
            sign = select(-1.0, 1.0, x > 0.0);
        }
    }
    var value = d;
    if ((status[b] & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u) {
        // NaN ranks are meaningless: keep the index, and poison the outputs.
        rank = i;
        sign = bitcast<f32>(0x7fc00000u);
        value = sign;
    }
    values[b * n + rank] = value;
    for (var r = 0u; r < n; r++) {
        vectors[base + r * n + rank] = sign * v[row + r];
    }
}
