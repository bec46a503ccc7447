// Optimizer updates, in place on resident parameters and state, and global-norm clipping.
//
// `hyper` is written by the host once per step (no round trip): [lr, step t, clip scale, -].
// The clip kernels overwrite the clip scale on the device before the updates read it.

struct Params {
    n: u32,
    slot: u32,
    beta1: f32,   // SGD: momentum
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,
    count: u32,   // clip_scale: number of slots to sum
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hyper: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
@group(0) @binding(5) var<storage, read_write> s2: array<f32>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// SGD with momentum (PyTorch's form): v = beta1 v + g + wd p; p -= lr v.
@compute @workgroup_size(64)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let g = grad[i] * hyper[2] + p.weight_decay * param[i];
    let v = p.beta1 * s1[i] + g;
    s1[i] = v;
    param[i] = param[i] - hyper[0] * v;
}

// Adam with decoupled weight decay (AdamW) and bias correction at step t = hyper[1] >= 1.
@compute @workgroup_size(64)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let t = hyper[1];
    let g = grad[i] * hyper[2];
    let m = p.beta1 * s1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * g * g;
    s1[i] = m;
    s2[i] = v;
    let m_hat = m / (1.0 - pow(p.beta1, t));
    let v_hat = v / (1.0 - pow(p.beta2, t));
    param[i] = param[i] - hyper[0] * (m_hat / (sqrt(v_hat) + p.eps) + p.weight_decay * param[i]);
}

var<workgroup> partial: array<f32, 256>;

// s1[slot + w] = sum of grad^2 over the elements workgroup w of the launch visits: lane l of
// workgroup w reads elements w·256 + l, then every 256·(workgroups)-th after it; a tree adds
// the lanes. (`param` and `s2` are bound but unused by this entry's math; they keep one
// layout.)
@compute @workgroup_size(256)
fn sumsq_slot(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    var acc = 0.0;
    let step = 256u * nwg.x;
    for (var i = wid.x * 256u + lid; i < p.n; i = i + step) {
        let g = grad[i];
        acc = acc + g * g;
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) { partial[lid] = partial[lid] + partial[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u) { s1[p.slot + wid.x] = partial[0]; }
}

// hyper[2] = min(1, max_norm / ||g||) with ||g||^2 = sum of s1[0..count].
@compute @workgroup_size(1)
fn clip_scale() {
    var total = 0.0;
    for (var i = 0u; i < p.count; i = i + 1u) { total = total + s1[i]; }
    let norm = sqrt(total);
    hyper[2] = select(1.0, p.max_norm / norm, norm > p.max_norm);
}

// Running average in place: param = (1 - m) param + m grad, with m = beta1 (the new value is
// bound where a gradient would be).
@compute @workgroup_size(64)
fn ema(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    param[i] = (1.0 - p.beta1) * param[i] + p.beta1 * grad[i];
}
