// Binary elementwise maps out = f(a, b), one invocation per element of a (appended to
// activation.wgsl, which holds the activations' backward rules).
// b is read at (i / b_inner) % b_len: b_inner = 1, b_len = n for equal shapes; b_inner = 1,
// b_len = cols for a bias added to every row of a rows×cols matrix; b_inner = cols,
// b_len = rows for one value per row (the gradient of a row reduction).

struct Params {
    n: u32,
    b_len: u32,
    b_inner: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn bi(i: u32) -> u32 {
    return (i / p.b_inner) % p.b_len;
}

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = a[i] + b[bi(i)]; }
}

@compute @workgroup_size(64)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = a[i] - b[bi(i)]; }
}

@compute @workgroup_size(64)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = a[i] * b[bi(i)]; }
}

// a = x (the ReLU input), b = upstream gradient dy.
@compute @workgroup_size(64)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = relu_grad(a[i], b[bi(i)]); }
}

// a = y = tanh(x) (the forward output), b = dy: dx = (1 - y^2) dy.
@compute @workgroup_size(64)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = tanh_grad(a[i], b[bi(i)]); }
}

// a = x (the GELU input), b = dy; derivative of the tanh approximation.
@compute @workgroup_size(64)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) { out[i] = gelu_grad(a[i], b[bi(i)]); }
}
