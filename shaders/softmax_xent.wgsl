// Softmax cross-entropy with (soft) targets over a rows × classes matrix of logits z and
// targets t (one-hot rows for hard labels).
//
// Forward, with m = max_j z_j, s = Σ_j exp(z_j − m) and T = Σ_j t_j:
//   loss = T·logsumexp(z) − Σ_j t_j z_j = Σ_j t_j (m − z_j) + T·log(s).
// The second form never forms T·logsumexp(z) and Σ t z separately, whose difference cancels
// catastrophically for large logits; every exp argument is ≤ 0, so nothing overflows.
// Backward: dz_j = (exp(z_j − m) · T/s − t_j) · dloss.
//
// Geometry: a workgroup of WG = 256 invocations takes WG / L rows with L = 2^lanes_log2 lanes
// per row (up to 256 for many classes). Lane l reads classes l, l + L, ... (neighbouring
// invocations, neighbouring addresses); the lanes' maxima and sums meet in trees in workgroup
// memory. With L = 1 the `*_serial` entry points run one invocation per row in workgroups of
// SERIAL_WG = 64 without workgroup memory or barriers. A lane sums its terms in blocks of `block`
// (≈ √(terms per lane)), so a term passes through about 2√(classes / L) + log2 L additions.
//
// Binding 3 is the per-row vector: the loss (written) in `forward`, dloss (read) in `backward`.

struct Params {
    rows: u32,
    classes: u32,
    lanes_log2: u32,
    block: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> per_row: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;

const WG: u32 = 256u;
const SERIAL_WG: u32 = 64u;

var<workgroup> wmax: array<f32, WG>;
var<workgroup> wsum: array<vec3<f32>, WG>;

// One row's statistics as every lane of it sees them.
struct Row {
    row: u32,
    lane: u32,
    lanes: u32,
    // max_j z_j
    m: f32,
    // (Σ exp(z_j − m), Σ t_j, Σ t_j (m − z_j))
    sums: vec3<f32>,
}

// max of a lane's logits z_j, j = lane, lane + lanes, ... (lane < classes).
fn lane_max(base: u32, lane: u32, lanes: u32) -> f32 {
    var m = z[base + lane];
    for (var j = lane + lanes; j < p.classes; j += lanes) {
        m = max(m, z[base + j]);
    }
    return m;
}

// A lane's (Σ exp(z_j − m), Σ t_j, Σ t_j (m − z_j)), summed in blocks of `block` terms.
fn lane_sums(base: u32, lane: u32, lanes: u32, m: f32) -> vec3<f32> {
    var total = vec3<f32>(0.0);
    var j = lane;
    loop {
        if (j >= p.classes) {
            break;
        }
        var part = vec3<f32>(0.0);
        for (var b = 0u; b < p.block && j < p.classes; b += 1u) {
            let zj = z[base + j];
            let tj = t[base + j];
            part += vec3<f32>(exp(zj - m), tj, tj * (m - zj));
            j += lanes;
        }
        total += part;
    }
    return total;
}

fn loss_of(r: Row) -> f32 {
    return r.sums.z + r.sums.y * log(r.sums.x);
}

// Writes a lane's share of dz for row r.
fn lane_backward(r: Row) {
    let scale = r.sums.y / r.sums.x;
    let dl = per_row[r.row];
    let base = r.row * p.classes;
    for (var j = r.lane; j < p.classes; j += r.lanes) {
        dz[base + j] = (exp(z[base + j] - r.m) * scale - t[base + j]) * dl;
    }
}

// The statistics of the row this invocation's lane belongs to, its lanes meeting in trees in
// workgroup memory.
fn row_stats(lid: u32, group: u32) -> Row {
    let lanes = 1u << p.lanes_log2;
    let local_row = lid >> p.lanes_log2;
    let lane = lid & (lanes - 1u);
    let row = group * (WG >> p.lanes_log2) + local_row;
    // Lanes below `filled` hold at least one class of a real row.
    let filled = min(p.classes, lanes);
    let has = row < p.rows && lane < filled;
    let slot = local_row * lanes;
    let base = row * p.classes;

    if (has) {
        wmax[slot + lane] = lane_max(base, lane, lanes);
    }
    workgroupBarrier();
    for (var h = lanes / 2u; h > 0u; h = h >> 1u) {
        if (lane < h && lane + h < min(filled, 2u * h)) {
            wmax[slot + lane] = max(wmax[slot + lane], wmax[slot + lane + h]);
        }
        workgroupBarrier();
    }
    let m = wmax[slot];

    if (has) {
        wsum[slot + lane] = lane_sums(base, lane, lanes, m);
    }
    workgroupBarrier();
    for (var h = lanes / 2u; h > 0u; h = h >> 1u) {
        if (lane < h && lane + h < min(filled, 2u * h)) {
            wsum[slot + lane] = wsum[slot + lane] + wsum[slot + lane + h];
        }
        workgroupBarrier();
    }
    return Row(row, lane, lanes, m, wsum[slot]);
}

// The statistics of row `row` computed by one invocation alone.
fn row_stats_serial(row: u32) -> Row {
    let base = row * p.classes;
    let m = lane_max(base, 0u, 1u);
    return Row(row, 0u, 1u, m, lane_sums(base, 0u, 1u, m));
}

@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_stats(lid, wid.x + wid.y * nwg.x);
    if (r.row < p.rows && r.lane == 0u) {
        per_row[r.row] = loss_of(r);
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_stats(lid, wid.x + wid.y * nwg.x);
    if (r.row < p.rows) {
        lane_backward(r);
    }
}

@compute @workgroup_size(SERIAL_WG)
fn forward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * SERIAL_WG;
    if (row < p.rows) {
        per_row[row] = loss_of(row_stats_serial(row));
    }
}

@compute @workgroup_size(SERIAL_WG)
fn backward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * SERIAL_WG;
    if (row < p.rows) {
        lane_backward(row_stats_serial(row));
    }
}
