// Warm start: the solver works on V0ᵀ·A·V0 and accumulates its rotations onto V0, so the
// eigenvectors it returns are V0·J₁·J₂·…  Two naive batched products, one invocation per
// output element: T = A·V0 (T lives in the output-vectors buffer, unused until the end), then
// the upper triangle of V0ᵀ·T, with Vᵀ ← V0ᵀ and a NaN/Inf check of V0 on the side.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> v0: array<f32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(64)
fn warm_product(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let n = p.n;
    let nn = n * n;
    if (idx >= p.batch * nn) {
        return;
    }
    let base = idx - idx % nn;
    let i = (idx % nn) / n;
    let j = idx % n;
    var acc = 0.0;
    for (var k = 0u; k < n; k++) {
        acc += a[base + min(i, k) * n + max(i, k)] * v0[base + k * n + j];
    }
    t[idx] = acc;
}

@compute @workgroup_size(64)
fn warm_congruence(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let n = p.n;
    let nn = n * n;
    if (idx >= p.batch * nn) {
        return;
    }
    let base = idx - idx % nn;
    let i = (idx % nn) / n;
    let j = idx % n;
    if (i <= j) {
        var acc = 0.0;
        for (var k = 0u; k < n; k++) {
            acc += v0[base + k * n + i] * t[base + k * n + j];
        }
        a[idx] = acc;
    }
    let x = v0[idx];
    v[(idx / nn * n + j) * 4u * p.chunks + i] = x;
    if (non_finite(x)) {
        atomicOr(&status[idx / nn], NONFINITE_WARM_START);
    }
}
