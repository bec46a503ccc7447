// Unary elementwise maps y = f(x), one invocation per element.
// Dispatch geometry: 1-D, folded into y past the per-dimension limit (see kernels::grid_1d).

struct Params {
    n: u32,
    alpha: f32,
    // `expand` reads x[(i / inner) % len]; the other maps ignore these.
    inner: u32,
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
// tanh saturates to ±1 in f32 beyond |u| = 9; clamping keeps exp-based tanh implementations
// from computing inf/inf = NaN for large inputs.
const TANH_CLAMP: f32 = 15.0;
const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn safe_tanh(u: f32) -> f32 {
    return tanh(clamp(u, -TANH_CLAMP, TANH_CLAMP));
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = p.alpha * x[i]; }
}

@compute @workgroup_size(64)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = max(x[i], 0.0); }
}

@compute @workgroup_size(64)
fn tanh_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = safe_tanh(x[i]); }
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) {
        let v = x[i];
        y[i] = 0.5 * v * (1.0 + safe_tanh(GELU_C * (v + GELU_A * v * v * v)));
    }
}

// Broadcast: y[i] = alpha * x[(i / inner) % len] — a row vector repeated down the rows
// (inner = 1) or a column vector repeated across the columns (inner = cols).
@compute @workgroup_size(64)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = p.alpha * x[(i / p.inner) % p.len]; }
}
