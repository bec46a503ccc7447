// Epilogue 1 of 4, one invocation per eigenvalue (grid ⌈n/64⌉ × batch): sorts the eigenvalues
// (the diagonal of the converged working matrix) ascending by rank —
// rank(i) = #{j : d_j < d_i, or d_j = d_i and j < i} — writes them to `values`, and records
// order[rank(i)] = i for the gather. Matrices whose input was not finite get NaN values.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> status: array<u32>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;
@group(0) @binding(4) var<storage, read_write> order: array<u32>;

@compute @workgroup_size(64)
fn rank(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let b = gid.y;
    let n = p.n;
    if (i >= n) {
        return;
    }
    let base = b * n * n;
    let d = a[base + i * n + i];
    var rank = 0u;
    for (var j = 0u; j < n; j++) {
        let dj = a[base + j * n + j];
        if (dj < d || (dj == d && j < i)) {
            rank += 1u;
        }
    }
    var value = d;
    if ((status[b] & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u) {
        rank = i;
        value = bitcast<f32>(0x7fc00000u);
    }
    values[b * n + rank] = value;
    order[b * n + rank] = i;
}
