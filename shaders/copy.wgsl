// A contiguous range copy: y[dst_offset + i] = x[src_offset + i] for i < n, one invocation
// per element. It takes one slice out of a stack (src_offset) or writes one into it
// (dst_offset) where the slice cannot be bound as a region of its own (its byte offset is not
// a multiple of the binding alignment). Dispatch geometry: 1-D, folded into y past the
// per-dimension limit (see kernels::grid_1d).

struct Params {
    n: u32,
    src_offset: u32,
    dst_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn copy_range(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) { y[p.dst_offset + i] = x[p.src_offset + i]; }
}
