// Layer normalisation of a rows × cols matrix, row by row: y = (x − mean) · rstd with
// rstd = 1/√(var + eps), mean and (biased) variance over the row; and its gradient
// dx = rstd · (dy − mean(dy) − y · mean(dy ∘ y)), the row statistics recomputed from x.
//
// Geometry: a workgroup of WG = 64 invocations takes WG / L rows with L = 2^lanes_log2 lanes
// per row; lane l reads columns l, l + L, ... The lanes' partial sums meet in a tree in
// workgroup memory (`row_sum`), which every invocation reaches, rows past the end included,
// so the barriers stay in uniform control flow. The mean sums x − x[0] and the variance is a
// second pass over the row (Σ (x − mean)²), not E[x²] − mean²: neither cancels for rows with a
// large mean.
//
// Loop budget: llvmpipe ends every loop of an invocation after 65535 iterations in total; a
// lane runs at most 4 passes over its columns, and the host keeps a lane's columns at or
// below 8192.

struct Params {
    rows: u32,
    cols: u32,
    lanes_log2: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// y in `forward`, dx in `backward`.
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;

const WG: u32 = 64u;

var<workgroup> part: array<vec2<f32>, WG>;

// Where an invocation works: its row, its lane, the row's first element, and the end of its
// column loop (0 for a row past the end, which only joins the barriers).
struct Lane {
    lane: u32,
    base: u32,
    end: u32,
}

fn lane_of(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> Lane {
    let group = wid.x + wid.y * nwg.x;
    let row = group * (WG >> p.lanes_log2) + (lid >> p.lanes_log2);
    let lane = lid & ((1u << p.lanes_log2) - 1u);
    return Lane(lane, row * p.cols, select(0u, p.cols, row < p.rows));
}

// The sum of `v` over the lanes of the invocation's row, returned to each of them. Every
// invocation of the workgroup calls it at the same point.
fn row_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
    let lane = lid & ((1u << p.lanes_log2) - 1u);
    part[lid] = v;
    workgroupBarrier();
    for (var stride = (1u << p.lanes_log2) >> 1u; stride > 0u; stride = stride >> 1u) {
        if (lane < stride) {
            part[lid] += part[lid + stride];
        }
        workgroupBarrier();
    }
    let total = part[lid - lane];
    workgroupBarrier();
    return total;
}

// (mean, rstd) of the invocation's row. The sum is taken of x − x[0], so that a row far from
// zero (a large mean, a small spread) loses no more than its own spread to rounding.
fn row_stats(l: Lane, lid: u32) -> vec2<f32> {
    let lanes = 1u << p.lanes_log2;
    let n = f32(p.cols);
    var shift = 0.0;
    if (l.end > 0u) {
        shift = x[l.base];
    }
    var s = 0.0;
    for (var j = l.lane; j < l.end; j += lanes) {
        s += x[l.base + j] - shift;
    }
    let mean = shift + row_sum(vec2<f32>(s, 0.0), lid).x / n;
    var q = 0.0;
    for (var j = l.lane; j < l.end; j += lanes) {
        let d = x[l.base + j] - mean;
        q += d * d;
    }
    let variance = row_sum(vec2<f32>(q, 0.0), lid).x / n;
    return vec2<f32>(mean, inverseSqrt(variance + p.eps));
}

@compute @workgroup_size(64)
fn forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let l = lane_of(lid, wid, nwg);
    let stats = row_stats(l, lid);
    for (var j = l.lane; j < l.end; j += 1u << p.lanes_log2) {
        out[l.base + j] = (x[l.base + j] - stats.x) * stats.y;
    }
}

@compute @workgroup_size(64)
fn backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let l = lane_of(lid, wid, nwg);
    let lanes = 1u << p.lanes_log2;
    let stats = row_stats(l, lid);
    var a = vec2<f32>(0.0);
    for (var j = l.lane; j < l.end; j += lanes) {
        let g = dy[l.base + j];
        a += vec2<f32>(g, g * (x[l.base + j] - stats.x) * stats.y);
    }
    let m = row_sum(a, lid) / f32(p.cols);
    for (var j = l.lane; j < l.end; j += lanes) {
        let y = (x[l.base + j] - stats.x) * stats.y;
        out[l.base + j] = stats.y * (dy[l.base + j] - m.x - y * m.y);
    }
}
