// Inverted dropout, one invocation per element: y = x / (1 − rate) where the element is kept,
// 0 where it is dropped. The mask is a hash of (seed, step, element index), so it is the same
// on every executor (`reference::dropout` computes the same hash), fresh at every step and
// identical within one step — the backward pass applies this kernel to dy and drops the same
// elements. The step count is the fourth word of the step's hyperparameter buffer, written by
// the host before each submission.
// Dispatch geometry: 1-D, folded into y past the per-dimension limit (see kernels::grid_1d).

struct Params {
    n: u32,
    // An element is dropped when its hash is below this (rate · 2^32).
    threshold: u32,
    seed: u32,
    // 1 / (1 − rate).
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> hyper: array<u32>;

const WG: u32 = 64u;
// The word of the hyperparameter buffer that holds the step count (as u32 bits).
const STEP_WORD: u32 = 3u;

// PCG hash (Jarzynski & Olano, "Hash functions for GPU rendering", 2020): a bijection of u32.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(64)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        let key = pcg(p.seed ^ pcg(hyper[STEP_WORD]));
        let keep = pcg(key ^ pcg(i)) >= p.threshold;
        y[i] = select(0.0, x[i] * p.scale, keep);
    }
}
