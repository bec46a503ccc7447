// Reductions of a rows×cols row-major matrix: along each row (→ rows values) or down each
// column (→ cols values). Ops: sum, sum of squares, max, chosen by the override constant OP
// (one pipeline per op); mean is sum with `scale` = 1/count.
//
// Both axes are one scheme over *segments*: segment s holds the `len` values
// x[s * seg_stride + k * elem_stride], k < len (a row: stride 1; a column: stride cols).
// A workgroup of WG = 256 invocations reduces SB = WG / L segments with L = 2^lanes_log2 lanes
// each; lane l takes k = l, l + L, l + 2L, ... The host picks L so that lanes have work
// (about 8 values or more each) and, down columns, so that neighbouring invocations read
// neighbouring columns (`seg_fast`: lid → segment fastest) while along rows neighbouring
// invocations read neighbouring elements of one row (lid → lane fastest): loads coalesce.
//
// Sums are pairwise: a lane loads its values in chunks of 8 summed as a balanced tree, feeds
// the chunk sums to a binary counter (level k holds the sum of 2^k chunks, merged like
// carries), and the lanes' partials meet in a tree in workgroup memory. A value passes through
// at most about log2(len) + 3 roundings. Max is exact in any order.
//
// With L = 1 the `reduce_serial` entry point runs one invocation per segment in workgroups of
// SERIAL_WG = 64, without workgroup memory or barriers: many short rows on any adapter, and on
// CPU adapters (llvmpipe) every segment the loop budget allows, since barriers are slow there.
//
// Loop budget: Mesa's llvmpipe (lavapipe and its GL driver, Mesa 22.x) silently stops every
// loop of an invocation once the invocation has run 65535 loop iterations in total. Chunks of
// 8 keep a lane under 3 iterations per 8 values, and on CPU adapters the host keeps a lane's
// values at or below 2^16 (~25k iterations); at most 2^17 are accepted (~49k).

struct Params {
    nseg: u32,
    len: u32,
    seg_stride: u32,
    elem_stride: u32,
    lanes_log2: u32,
    // 1: lid → segment fastest (columns); 0: lid → lane fastest (rows).
    seg_fast: u32,
    // Multiplies every result: 1/count for mean, 1 otherwise.
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
const SERIAL_WG: u32 = 64u;
const OP_SUM: u32 = 0u;
const OP_SUMSQ: u32 = 1u;
const OP_MAX: u32 = 2u;
// The reduction this pipeline computes: OP_SUM, OP_SUMSQ or OP_MAX (set by the host).
override OP: u32;

var<workgroup> part: array<f32, WG>;

// Pairwise accumulator: levels[k] holds a partial over 2^k chunks while bit k of `count` is set.
struct Acc {
    levels: array<f32, 32>,
    count: u32,
}

fn combine(a: f32, b: f32) -> f32 {
    if (OP == OP_MAX) {
        return max(a, b);
    }
    return a + b;
}

// Value k of the segment at `base` (mapped: squared for sum of squares), or `fill` past the end.
fn value(base: u32, k: u32, fill: f32) -> f32 {
    if (k >= p.len) {
        return fill;
    }
    let v = x[base + k * p.elem_stride];
    if (OP == OP_SUMSQ) {
        return v * v;
    }
    return v;
}

// Values k0, k0 + L, ..., k0 + 7L (those below len; k0 itself always is) as a balanced tree.
// Missing values are 0 for sums and a repeat of the first value for max: both exact.
fn chunk(base: u32, k0: u32, lanes: u32) -> f32 {
    let v0 = value(base, k0, 0.0);
    let fill = select(0.0, v0, OP == OP_MAX);
    let v1 = value(base, k0 + lanes, fill);
    let v2 = value(base, k0 + 2u * lanes, fill);
    let v3 = value(base, k0 + 3u * lanes, fill);
    let v4 = value(base, k0 + 4u * lanes, fill);
    let v5 = value(base, k0 + 5u * lanes, fill);
    let v6 = value(base, k0 + 6u * lanes, fill);
    let v7 = value(base, k0 + 7u * lanes, fill);
    let a = combine(combine(v0, v1), combine(v2, v3));
    let b = combine(combine(v4, v5), combine(v6, v7));
    return combine(a, b);
}

fn push(acc: ptr<function, Acc>, value: f32) {
    if (OP == OP_MAX) {
        // Max is exact in any order: a running maximum in level 0 suffices.
        let m = (*acc).levels[0];
        (*acc).levels[0] = select(max(m, value), value, (*acc).count == 0u);
        (*acc).count += 1u;
        return;
    }
    var v = value;
    var c = (*acc).count;
    var k = 0u;
    loop {
        if ((c & 1u) == 0u) {
            break;
        }
        v = (*acc).levels[k] + v;
        c = c >> 1u;
        k += 1u;
    }
    (*acc).levels[k] = v;
    (*acc).count += 1u;
}

// Combines the occupied levels, smallest first. Only called with count ≥ 1.
fn total(acc: ptr<function, Acc>) -> f32 {
    if (OP == OP_MAX) {
        return (*acc).levels[0];
    }
    var c = (*acc).count;
    var k = 0u;
    var s = 0.0;
    var have = false;
    loop {
        if (c == 0u) {
            break;
        }
        if ((c & 1u) == 1u) {
            s = select((*acc).levels[k], (*acc).levels[k] + s, have);
            have = true;
        }
        c = c >> 1u;
        k += 1u;
    }
    return s;
}

// The reduced value of a lane's share of the segment at `base`: k = lane, lane + lanes, ...
// Only called when the lane has at least one value (lane < len).
fn lane_total(base: u32, lane: u32, lanes: u32) -> f32 {
    var acc: Acc;
    acc.count = 0u;
    for (var k0 = lane; k0 < p.len; k0 += 8u * lanes) {
        push(&acc, chunk(base, k0, lanes));
    }
    return total(&acc);
}

fn reduce_segments(lid: u32, group: u32) {
    let lanes = 1u << p.lanes_log2;
    let per_group = WG >> p.lanes_log2;
    var local_seg: u32;
    var lane: u32;
    if (p.seg_fast == 1u) {
        local_seg = lid % per_group;
        lane = lid / per_group;
    } else {
        local_seg = lid / lanes;
        lane = lid % lanes;
    }
    let seg = group * per_group + local_seg;
    // Lanes below `filled` have at least one value (k = lane < len) in a real segment.
    let filled = min(p.len, lanes);
    let slot = local_seg * lanes;
    if (seg < p.nseg && lane < filled) {
        part[slot + lane] = lane_total(seg * p.seg_stride, lane, lanes);
    }
    workgroupBarrier();
    for (var h = lanes / 2u; h > 0u; h = h >> 1u) {
        // Lanes [0, min(filled, 2h)) of each segment are valid before this step.
        if (lane < h && lane + h < min(filled, 2u * h)) {
            part[slot + lane] = combine(part[slot + lane], part[slot + lane + h]);
        }
        workgroupBarrier();
    }
    if (seg < p.nseg && lane == 0u) {
        out[seg] = part[slot] * p.scale;
    }
}

// One lane per segment: no workgroup memory, no barriers (which llvmpipe runs slowly).
fn reduce_segment_serial(seg: u32) {
    if (seg < p.nseg) {
        out[seg] = lane_total(seg * p.seg_stride, 0u, 1u) * p.scale;
    }
}

@compute @workgroup_size(WG)
fn reduce(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    reduce_segments(lid, wid.x + wid.y * nwg.x);
}

@compute @workgroup_size(SERIAL_WG)
fn reduce_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    reduce_segment_serial(gid.x + gid.y * nwg.x * SERIAL_WG);
}
