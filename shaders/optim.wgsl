// Optimizer updates, in place on resident parameters and state, and global-norm clipping.
//
// `hyper` is written by the host once per step (no round trip): [lr, step t, clip scale, -].
// The clip kernels overwrite the clip scale on the device before the updates read it.
//
// `status` is the step's status (layout in finite.wgsl): the updates and the running average
// do nothing once its HALT word is set, and an element whose new values would be NaN or Inf
// keeps its old ones and is recorded: by the running average in its slot `p.slot`, by an
// update in the slot of the tensor the element belongs to. An update may cover several tensors
// laid out alike in arenas (one launch for every parameter of a rule): `parts` lists, for each
// of its p.count tensors in order, the element where it starts and its slot.

struct Params {
    n: u32,
    slot: u32,    // sumsq_slot: its word of s1; ema: its slot in `status`
    beta1: f32,   // SGD: momentum
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,
    count: u32,   // clip_scale: number of slots to sum; updates: number of tensors in `parts`
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hyper: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> s1: array<f32>;
@group(0) @binding(5) var<storage, read_write> s2: array<f32>;
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read> parts: array<u32>; // (first element, slot) per tensor

const WG: u32 = 64u;
// Mirrors of finite.wgsl's flag layout and header word.
const FLAG_WORDS: u32 = 2u;
const HALT: u32 = 0u;
const EXPONENT: u32 = 0x7f800000u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Whether the step's status says to skip every update.
fn halted() -> bool {
    return atomicLoad(&status[HALT]) != 0u;
}

// Whether x is neither NaN nor ±Inf (from the bits: compilers may fold x != x).
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & EXPONENT) != EXPONENT;
}

// Records in `slot` that element i of its tensor came out non-finite (and was kept).
fn report(slot: u32, i: u32) {
    atomicAdd(&status[FLAG_WORDS * slot], 1u);
    atomicMax(&status[FLAG_WORDS * slot + 1u], 0xffffffffu - i);
}

// Records that element i of an update launch came out non-finite, in the slot of the tensor
// that holds it (the last one starting at or before i), at its index there. Runs only on a
// finding, so the scan costs nothing in a healthy step.
fn report_update(i: u32) {
    var k = 0u;
    for (var j = 1u; j < p.count; j++) {
        if (parts[2u * j] <= i) { k = j; }
    }
    report(parts[2u * k + 1u], i - parts[2u * k]);
}

// SGD with momentum (PyTorch's form): v = beta1 v + g + wd p; p -= lr v.
@compute @workgroup_size(64)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || halted()) { return; }
    let g = grad[i] * hyper[2] + p.weight_decay * param[i];
    let v = p.beta1 * s1[i] + g;
    let w = param[i] - hyper[0] * v;
    if (!(finite(v) && finite(w))) { report_update(i); return; }
    s1[i] = v;
    param[i] = w;
}

// Adam with decoupled weight decay (AdamW) and bias correction at step t = hyper[1] >= 1.
@compute @workgroup_size(64)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || halted()) { return; }
    let t = hyper[1];
    let g = grad[i] * hyper[2];
    let m = p.beta1 * s1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * g * g;
    let m_hat = m / (1.0 - pow(p.beta1, t));
    let v_hat = v / (1.0 - pow(p.beta2, t));
    let w = param[i] - hyper[0] * (m_hat / (sqrt(v_hat) + p.eps) + p.weight_decay * param[i]);
    if (!(finite(m) && finite(v) && finite(w))) { report_update(i); return; }
    s1[i] = m;
    s2[i] = v;
    param[i] = w;
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
// bound where a gradient would be); skipped and checked like an update, and skipped as a whole
// when its slot already records a finding (the check of the new value launched before it).
@compute @workgroup_size(64)
fn ema(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n || halted() || atomicLoad(&status[FLAG_WORDS * p.slot]) != 0u) { return; }
    let x = (1.0 - p.beta1) * param[i] + p.beta1 * grad[i];
    if (!finite(x)) { report(p.slot, i); return; }
    param[i] = x;
}
