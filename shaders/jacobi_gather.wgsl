// Epilogue, last. `sign`, one invocation per eigenvector (grid ⌈n/64⌉ × batch): flips row i
// of Wᵀ so that its largest-magnitude component is positive (the first such on ties).
// `gather`, one invocation per output entry: vectors[b][k][j] = Wᵀ[order[j]][k], so column j
// belongs to values[j]; NaN for matrices whose input was not finite.

@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> vectors: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn sign(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let n = p.n;
    if (i >= n) {
        return;
    }
    let row = (gid.y * n + i) * n;
    var biggest = 0.0;
    var negative = false;
    for (var k = 0u; k < n; k++) {
        let x = w[row + k];
        if (abs(x) > biggest) {
            biggest = abs(x);
            negative = x < 0.0;
        }
    }
    if (negative) {
        for (var k = 0u; k < n; k++) {
            w[row + k] = -w[row + k];
        }
    }
}

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let n = p.n;
    let nn = n * n;
    if (idx >= p.batch * nn) {
        return;
    }
    let b = idx / nn;
    let k = (idx % nn) / n;
    let j = idx % n;
    var x = w[b * nn + order[b * n + j] * n + k];
    if ((status[b] & (NONFINITE_INPUT | NONFINITE_WARM_START)) != 0u) {
        x = bitcast<f32>(0x7fc00000u);
    }
    vectors[idx] = x;
}
