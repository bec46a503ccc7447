// The whole solve of one matrix of order n ≤ NMAX in one workgroup: A (packed upper triangle)
// and V live in workgroup memory, every round of every sweep runs between two barriers, and
// the convergence test runs at the top of each sweep. NMAX is prepended by the host.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> floor_of: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<u32>;
@group(0) @binding(5) var<storage, read_write> sweeps: array<u32>;

const WG: u32 = 64u;
var<workgroup> wa: array<f32, NMAX * (NMAX + 1u) / 2u>;
var<workgroup> wv: array<f32, NMAX * NMAX>;
var<workgroup> wrot: array<Rot, NMAX / 2u>;
var<workgroup> counts: array<atomic<u32>, 2>;
var<workgroup> flag: u32;

// Offset of (i, j), i ≤ j, in the packed upper triangle of order n.
fn packed(i: u32, j: u32) -> u32 {
    return i * p.n - (i * (i + 1u)) / 2u + j;
}

// a_ij of the symmetric matrix; 0 for the dummy index n of odd orders.
fn sym_get(i: u32, j: u32) -> f32 {
    if (max(i, j) >= p.n) {
        return 0.0;
    }
    return wa[packed(min(i, j), max(i, j))];
}

fn sym_set(i: u32, j: u32, x: f32) {
    if (max(i, j) < p.n) {
        wa[packed(min(i, j), max(i, j))] = x;
    }
}

@compute @workgroup_size(64)
fn solve_small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let n = p.n;
    let nn = n * n;
    let base = b * nn;
    if (lid == 0u) {
        flag = status[b];
        atomicStore(&counts[0], 0u);
        atomicStore(&counts[1], 0u);
    }
    if (workgroupUniformLoad(&flag) != 0u) {
        return;
    }
    for (var e = lid; e < nn; e += WG) {
        if (e / n <= e % n) {
            wa[packed(e / n, e % n)] = a[base + e];
        }
        wv[e] = v[base + e];
    }
    let floor = floor_of[b];
    let np = p.pairs;
    let blocks = np * (np - 1u) / 2u;
    let items = blocks + n * np;
    var sweep = 0u;
    var left = 0u;
    loop {
        workgroupBarrier();
        // Count the off-diagonal entries that are not yet negligible.
        var bad = 0u;
        for (var e = lid; e < nn; e += WG) {
            let i = e / n;
            let j = e % n;
            if (i < j && !negligible(wa[packed(i, j)], wa[packed(i, i)], wa[packed(j, j)], floor)) {
                bad += 1u;
            }
        }
        if (bad != 0u) {
            atomicAdd(&counts[sweep & 1u], bad);
        }
        if (lid == 0u) {
            atomicStore(&counts[(sweep + 1u) & 1u], 0u);
        }
        workgroupBarrier();
        if (lid == 0u) {
            flag = atomicLoad(&counts[sweep & 1u]);
        }
        let now = workgroupUniformLoad(&flag);
        left = now;
        if (now == 0u || sweep == p.max_sweeps) {
            break;
        }
        for (var r = 0u; r + 1u < p.m; r++) {
            // Phase 1: one rotation per pair, with Rutishauser's update of the 2×2 diagonal block.
            if (lid < np) {
                let ij = pair_of(lid, r);
                var rot = Rot(1.0, 0.0, ij.x, ij.y);
                if (ij.y < n) {
                    let pp = packed(ij.x, ij.x);
                    let qq = packed(ij.y, ij.y);
                    let pq = packed(ij.x, ij.y);
                    let apq = wa[pq];
                    let app = wa[pp];
                    let aqq = wa[qq];
                    if (!negligible(apq, app, aqq, floor)) {
                        let cst = rotation(app, aqq, apq);
                        wa[pp] = app - cst.z * apq;
                        wa[qq] = aqq + cst.z * apq;
                        wa[pq] = 0.0;
                        rot.c = cst.x;
                        rot.s = cst.y;
                    }
                }
                wrot[lid] = rot;
            }
            workgroupBarrier();
            // Phase 2: the off-diagonal blocks of A and the rows of V, all disjoint.
            for (var e = lid; e < items; e += WG) {
                if (e < blocks) {
                    let kl = block_of(e);
                    let rk = wrot[kl.x];
                    let rl = wrot[kl.y];
                    if (rk.s != 0.0 || rl.s != 0.0) {
                        let x = vec4<f32>(sym_get(rk.i, rl.i), sym_get(rk.i, rl.j), sym_get(rk.j, rl.i), sym_get(rk.j, rl.j));
                        let y = rotate_block(x, rk, rl);
                        sym_set(rk.i, rl.i, y.x);
                        sym_set(rk.i, rl.j, y.y);
                        sym_set(rk.j, rl.i, y.z);
                        sym_set(rk.j, rl.j, y.w);
                    }
                } else {
                    let f = e - blocks;
                    let row = (f / np) * n;
                    let rl = wrot[f % np];
                    if (rl.s != 0.0) {
                        let y = rotate_pair(vec2<f32>(wv[row + rl.i], wv[row + rl.j]), rl);
                        wv[row + rl.i] = y.x;
                        wv[row + rl.j] = y.y;
                    }
                }
            }
            workgroupBarrier();
        }
        sweep += 1u;
    }
    for (var e = lid; e < nn; e += WG) {
        if (e / n <= e % n) {
            a[base + e] = wa[packed(e / n, e % n)];
        }
        v[base + e] = wv[e];
    }
    if (lid == 0u) {
        sweeps[b] = sweep;
        status[b] = FINISHED | select(0u, NOT_CONVERGED, left != 0u);
    }
}
