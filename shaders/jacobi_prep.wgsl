// Prologue of every solve, one workgroup per matrix: detects NaN/Inf in the input, writes the
// working copy (A + Aᵀ)/2 (upper triangle only) and Vᵀ = I (padding included), and records
// the negligibility floor 1e-30·‖A‖_F, the status and a zero sweep count.

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> floor_of: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<u32>;
@group(0) @binding(6) var<storage, read_write> sweeps: array<u32>;

const WG: u32 = 256u;
var<workgroup> any_bad: atomic<u32>;
var<workgroup> max_bits: atomic<u32>;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(256)
fn init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let n = p.n;
    let base = b * n * n;
    let width = 4u * p.chunks;
    var bad = false;
    var biggest = 0.0;
    for (var i = 0u; i < n; i++) {
        for (var j = lid; j < width; j += WG) {
            v[(b * n + i) * width + j] = select(0.0, 1.0, i == j);
            if (j < n) {
                let x = input[base + i * n + j];
                bad = bad || non_finite(x);
                if (i <= j) {
                    let s = 0.5 * x + 0.5 * input[base + j * n + i];
                    a[base + i * n + j] = s;
                    biggest = max(biggest, abs(s));
                }
            }
        }
    }
    if (bad) {
        atomicOr(&any_bad, 1u);
    }
    // Non-negative floats order like their bit patterns.
    atomicMax(&max_bits, bitcast<u32>(biggest));
    workgroupBarrier();
    let scale = bitcast<f32>(atomicLoad(&max_bits));
    // ‖A‖_F² / scale², accumulated without overflow; every thread rereads what it wrote.
    var acc = 0.0;
    if (scale > 0.0) {
        for (var i = 0u; i < n; i++) {
            for (var j = i + lid; j < n; j += WG) {
                let s = a[base + i * n + j] / scale;
                acc += select(2.0, 1.0, i == j) * s * s;
            }
        }
    }
    partial[lid] = acc;
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
    }
    if (lid == 0u) {
        floor_of[b] = max(scale * 1e-30 * sqrt(partial[0]), 1.1754944e-38);
        status[b] = select(0u, NONFINITE_INPUT, atomicLoad(&any_bad) != 0u);
        sweeps[b] = 0u;
    }
}
