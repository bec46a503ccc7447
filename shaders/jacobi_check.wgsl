// Blocked path, between sweeps. `reset` clears the two indirect-dispatch argument triples
// (block_solve, block_apply); `check` then tests every matrix still iterating, one workgroup
// per matrix: converged, or out of sweeps, it is finished; otherwise its sweep count goes up
// and it is appended to the `live` list that the next sweep's indirect dispatches cover
// (args[1] counts the list; args[4] follows it by atomicMax).

@group(0) @binding(1) var<storage, read_write> args: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> live: array<u32>;
@group(0) @binding(4) var<storage, read> floor_of: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<u32>;
@group(0) @binding(6) var<storage, read_write> sweeps: array<u32>;

const WG: u32 = 256u;
var<workgroup> count: atomic<u32>;
var<workgroup> flag: u32;

@compute @workgroup_size(1)
fn reset() {
    atomicStore(&args[0], p.groups_rotate);
    atomicStore(&args[1], 0u);
    atomicStore(&args[2], 1u);
    atomicStore(&args[3], p.groups_apply);
    atomicStore(&args[4], 0u);
    atomicStore(&args[5], 1u);
}

@compute @workgroup_size(256)
fn check(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let n = p.n;
    let base = b * n * n;
    if (lid == 0u) {
        flag = status[b] & STOP;
        atomicStore(&count, 0u);
    }
    if (workgroupUniformLoad(&flag) != 0u) {
        return;
    }
    let floor = floor_of[b];
    var bad = 0u;
    for (var i = 0u; i < n; i++) {
        let aii = a[base + i * n + i];
        for (var j = i + 1u + lid; j < n; j += WG) {
            if (!negligible(a[base + i * n + j], aii, a[base + j * n + j], floor)) {
                bad += 1u;
            }
        }
    }
    if (bad != 0u) {
        atomicAdd(&count, bad);
    }
    workgroupBarrier();
    if (lid == 0u) {
        if (atomicLoad(&count) == 0u) {
            status[b] |= FINISHED;
        } else if (sweeps[b] >= p.max_sweeps) {
            status[b] |= FINISHED | NOT_CONVERGED;
        } else {
            sweeps[b] += 1u;
            let slot = atomicAdd(&args[1], 1u);
            live[slot] = b;
            atomicMax(&args[4], slot + 1u);
        }
    }
}
