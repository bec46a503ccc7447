// Epilogue, one invocation per eigenvalue (grid ⌈n/64⌉ × batch): sorts the eigenvalues (the
// Rayleigh quotients of jacobi_rayleigh.wgsl) ascending by rank —
// rank(i) = #{j : d_j < d_i, or d_j = d_i and j < i} — writes them to `values` divided by the
// prologue's 2^e, and records order[rank(i)] = i for the gather. Matrices whose input was not
// finite get NaN values; an eigenvalue past the f32 range once unscaled sets VALUES_OVERFLOW.

@group(0) @binding(1) var<storage, read> rq: array<f32>;
@group(0) @binding(2) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;
@group(0) @binding(4) var<storage, read_write> order: array<u32>;
@group(0) @binding(5) var<storage, read> scale_exp: array<i32>;

@compute @workgroup_size(64)
fn rank(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let b = gid.y;
    let n = p.n;
    if (i >= n) {
        return;
    }
    let d = rq[b * n + i];
    var rank = 0u;
    for (var j = 0u; j < n; j++) {
        let dj = rq[b * n + j];
        if (dj < d || (dj == d && j < i)) {
            rank += 1u;
        }
    }
    var value = times_pow2(d, -scale_exp[b]);
    if ((atomicLoad(&status[b]) & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u) {
        rank = i;
        value = bitcast<f32>(0x7fc00000u);
    } else if (non_finite(value)) {
        atomicOr(&status[b], VALUES_OVERFLOW);
    }
    values[b * n + rank] = value;
    order[b * n + rank] = i;
}
