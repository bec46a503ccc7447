// Prologue of every solve, one workgroup per matrix.
//
// `init`: detects NaN/Inf in the input, picks the power of two 2^e that brings its largest
// entry into [2, 4), writes the working copy 2^e·(A + Aᵀ)/2 (upper triangle only) and Vᵀ = I
// (padding included), and records e, the negligibility floor 1e-30·‖2^e·A‖_F, the status, a
// zero sweep count and a zero warm-start departure. Scaling by a power of two is exact, so the
// solver works on the same matrix whatever its range — entries near 3e38, whose rotations
// would overflow, and subnormal ones, whose off-diagonal entries would pass for negligible —
// and the epilogue divides the eigenvalues by 2^e.
//
// `warm_fallback`, after the warm-start products: a matrix whose V0 is not orthogonal (the
// largest |(V0ᵀV0 − I)_ij| recorded by `warm_congruence` is over `orth_tol`) gets the cold
// start instead — working copy and Vᵀ = I written again — and the WARM_START_REJECTED bit.
//
// The input A is binding 1 (jacobi_input.wgsl).

@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> floor_of: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<u32>;
@group(0) @binding(6) var<storage, read_write> sweeps: array<u32>;
@group(0) @binding(7) var<storage, read_write> scale_exp: array<i32>;
@group(0) @binding(8) var<storage, read_write> departure: array<u32>;

const WG: u32 = 256u;
var<workgroup> any_bad: atomic<u32>;
var<workgroup> max_bits: atomic<u32>;
var<workgroup> partial: array<f32, WG>;

// e with 2^e·x in [2, 4) for a finite x > 0 (0 for x = 0): minus the exponent of x, read from
// its bits (subnormals included), plus one. The target [2, 4) rather than [1, 2) keeps
// e ≥ -126, so that scaling down is one multiplication by a normal power of two.
fn scale_exponent(x: f32) -> i32 {
    let bits = bitcast<u32>(x);
    if (bits == 0u) {
        return 0;
    }
    let biased = i32(bits >> 23u);
    if (biased > 0) {
        return 128 - biased;
    }
    return 150 - i32(firstLeadingBit(bits));
}

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
                biggest = max(biggest, abs(x));
            }
        }
    }
    if (bad) {
        atomicOr(&any_bad, 1u);
    }
    // Non-negative floats order like their bit patterns.
    atomicMax(&max_bits, bitcast<u32>(biggest));
    workgroupBarrier();
    let finite = atomicLoad(&any_bad) == 0u;
    var e = 0;
    if (finite) {
        e = scale_exponent(bitcast<f32>(atomicLoad(&max_bits)));
    }
    // ‖2^e·A‖_F², whose entries are below 4 in magnitude.
    var acc = 0.0;
    for (var i = 0u; i < n; i++) {
        for (var j = i + lid; j < n; j += WG) {
            let s = scaled_symmetric(base, i, j, e);
            a[base + i * n + j] = s;
            acc += select(2.0, 1.0, i == j) * s * s;
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
        floor_of[b] = max(1e-30 * sqrt(partial[0]), 1.1754944e-38);
        status[b] = select(NONFINITE_INPUT, 0u, finite);
        sweeps[b] = 0u;
        scale_exp[b] = e;
        departure[b] = 0u;
    }
}

@compute @workgroup_size(256)
fn warm_fallback(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let bad = (status[b] & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u;
    if (bad || bitcast<f32>(departure[b]) <= p.orth_tol) {
        return;
    }
    let n = p.n;
    let base = b * n * n;
    let width = 4u * p.chunks;
    let e = scale_exp[b];
    for (var i = 0u; i < n; i++) {
        for (var j = lid; j < width; j += WG) {
            v[(b * n + i) * width + j] = select(0.0, 1.0, i == j);
            if (i <= j && j < n) {
                a[base + i * n + j] = scaled_symmetric(base, i, j, e);
            }
        }
    }
    if (lid == 0u) {
        status[b] |= WARM_START_REJECTED;
    }
}
