// Epilogue 2 and 3 of 4: one Newton–Schulz step V ← V·(3I − VᵀV)/2 = V + V·E/2 with
// E = I − VᵀV, which takes the eigenvectors from the ~n^1.5·ε departure from orthogonality
// that f32 rotations accumulate to ~n·ε, without moving them off their eigenvalues, and keeps
// warm starts that feed the vectors back step after step from drifting.
// `gram`: E (n×n, in the output-vectors buffer as scratch), one invocation per entry i ≤ j.
// `correct`: Wᵀ = Vᵀ + E·Vᵀ/2 into the working-matrix buffer (row i = eigenvector i),
// one invocation per entry. The working matrix is free by then: `rank` has read its diagonal.

@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> e: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(64)
fn gram(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let n = p.n;
    let nn = n * n;
    if (idx >= p.batch * nn) {
        return;
    }
    let b = idx / nn;
    let i = (idx % nn) / n;
    let j = idx % n;
    if (i > j) {
        return;
    }
    let width = 4u * p.chunks;
    let vi = (b * n + i) * width;
    let vj = (b * n + j) * width;
    // Two partial sums, so that the diagonal's sum of squares (≈ 1) rounds half as much.
    var s0 = 0.0;
    var s1 = 0.0;
    var k = 0u;
    for (; k + 1u < n; k += 2u) {
        s0 += v[vi + k] * v[vj + k];
        s1 += v[vi + k + 1u] * v[vj + k + 1u];
    }
    if (k < n) {
        s0 += v[vi + k] * v[vj + k];
    }
    let x = select(0.0, 1.0, i == j) - (s0 + s1);
    e[b * nn + i * n + j] = x;
    e[b * nn + j * n + i] = x;
}

@compute @workgroup_size(64)
fn correct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let n = p.n;
    let nn = n * n;
    if (idx >= p.batch * nn) {
        return;
    }
    let b = idx / nn;
    let i = (idx % nn) / n;
    let k = idx % n;
    let width = 4u * p.chunks;
    var acc = 0.0;
    for (var j = 0u; j < n; j++) {
        acc += e[b * nn + i * n + j] * v[(b * n + j) * width + k];
    }
    w[idx] = v[(b * n + i) * width + k] + 0.5 * acc;
}
