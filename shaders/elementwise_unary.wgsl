// Unary elementwise maps y = f(x), one invocation per element (appended to activation.wgsl).
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

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = p.alpha * x[i]; }
}

@compute @workgroup_size(64)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = relu_fwd(x[i]); }
}

@compute @workgroup_size(64)
fn tanh_fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = safe_tanh(x[i]); }
}

@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = gelu_fwd(x[i]); }
}

// Broadcast: y[i] = alpha * x[(i / inner) % len] — a row vector repeated down the rows
// (inner = 1) or a column vector repeated across the columns (inner = cols).
@compute @workgroup_size(64)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { y[i] = p.alpha * x[(i / p.inner) % p.len]; }
}
