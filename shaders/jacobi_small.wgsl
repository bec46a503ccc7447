// Sweeps of every matrix of order n ≤ NMAX (an override constant, 32 or 64), one workgroup
// per matrix: A (packed upper triangle) and Vᵀ (rows of `chunks` vec4) are loaded into
// workgroup memory, then tested for convergence and swept, up to `sweeps_per_dispatch` times
// and while the run's budget `max_sweeps` lasts, and stored back.
//
// Two ways to record it (src/kernels/jacobi.rs): the whole solve in one dispatch
// (`sweeps_per_dispatch` = the budget), which GPUs want; or one dispatch per sweep, for
// llvmpipe, which ends any invocation silently after 65,535 loop iterations in total — about
// 31 sweeps of n = 64 here (`small_loop_iterations` in jacobi.rs counts them). A finished
// matrix costs a dispatch one status read.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> floor_of: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<u32>;
@group(0) @binding(5) var<storage, read_write> sweeps: array<u32>;

override NMAX: u32;
const WG: u32 = 64u;
var<workgroup> wa: array<f32, NMAX * (NMAX + 1u) / 2u>;
var<workgroup> wv: array<vec4<f32>, NMAX * NMAX / 4u>;
var<workgroup> wrot: array<Rot, NMAX / 2u>;
var<workgroup> count: atomic<u32>;
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

@compute @workgroup_size(WG)
fn solve_small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let n = p.n;
    let base = b * n * n;
    let chunks = p.chunks;
    let vbase = b * n * chunks;
    if (lid == 0u) {
        flag = status[b] & STOP;
    }
    if (workgroupUniformLoad(&flag) != 0u) {
        return;
    }
    for (var i = 0u; i < n; i++) {
        for (var j = i + lid; j < n; j += WG) {
            wa[packed(i, j)] = a[base + i * n + j];
        }
    }
    for (var e = lid; e < n * chunks; e += WG) {
        wv[e] = v[vbase + e];
    }
    let floor = floor_of[b];
    var done = sweeps[b];
    var swept = 0u;
    let np = p.pairs;
    // Thread t rotates vec4 column `chunk` of the rows of Vᵀ for pairs l ≡ t / chunks.
    let chunk = lid % chunks;
    let stride = WG / chunks;
    let first = select(np, lid / chunks, lid < stride * chunks);
    // Block rows reach (m/2 − 1)/2 blocks ahead, the first half of them one more when m/2 is
    // even: every unordered pair of pairs once.
    let half = (np - 1u) / 2u;
    loop {
        // The test: count the entries that are not negligible.
        if (lid == 0u) {
            atomicStore(&count, 0u);
        }
        workgroupBarrier();
        var bad = 0u;
        for (var i = 0u; i < n; i++) {
            let aii = wa[packed(i, i)];
            for (var j = i + 1u + lid; j < n; j += WG) {
                if (!negligible(wa[packed(i, j)], aii, wa[packed(j, j)], floor)) {
                    bad += 1u;
                }
            }
        }
        if (bad != 0u) {
            atomicAdd(&count, bad);
        }
        workgroupBarrier();
        if (lid == 0u) {
            var go = 0u;
            if (atomicLoad(&count) == 0u) {
                status[b] |= FINISHED;
            } else if (done >= p.max_sweeps) {
                status[b] |= FINISHED | NOT_CONVERGED;
            } else if (swept < p.sweeps_per_dispatch) {
                go = 1u;
            }
            flag = go;
        }
        if (workgroupUniformLoad(&flag) == 0u) {
            break;
        }
        done += 1u;
        swept += 1u;
        for (var r = 0u; r + 1u < p.m; r++) {
            // Phase 1: one rotation per pair, with Rutishauser's update of the 2×2 diagonal
            // block.
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
            // Phase 2: rows (i, j) of Vᵀ four columns at a time, and the off-diagonal 2×2
            // blocks of A by block rows (k, k + d mod m/2): all disjoint, no divisions
            // (llvmpipe does those lane by lane).
            for (var l = first; l < np; l += stride) {
                let rl = wrot[l];
                if (rl.s != 0.0) {
                    let x = wv[rl.i * chunks + chunk];
                    let y = wv[rl.j * chunks + chunk];
                    wv[rl.i * chunks + chunk] = rl.c * x - rl.s * y;
                    wv[rl.j * chunks + chunk] = rl.s * x + rl.c * y;
                }
            }
            for (var k = lid; k < np; k += WG) {
                let rk = wrot[k];
                let reach = select(half, np / 2u, k < np / 2u);
                var l = k;
                for (var d = 1u; d <= reach; d++) {
                    l += 1u;
                    if (l == np) {
                        l = 0u;
                    }
                    let rl = wrot[l];
                    if (rk.s != 0.0 || rl.s != 0.0) {
                        let x = vec4<f32>(sym_get(rk.i, rl.i), sym_get(rk.i, rl.j), sym_get(rk.j, rl.i), sym_get(rk.j, rl.j));
                        let y = rotate_block(x, rk, rl);
                        sym_set(rk.i, rl.i, y.x);
                        sym_set(rk.i, rl.j, y.y);
                        sym_set(rk.j, rl.i, y.z);
                        sym_set(rk.j, rl.j, y.w);
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (swept == 0u) {
        return;
    }
    for (var i = 0u; i < n; i++) {
        for (var j = i + lid; j < n; j += WG) {
            a[base + i * n + j] = wa[packed(i, j)];
        }
    }
    for (var e = lid; e < n * chunks; e += WG) {
        v[vbase + e] = wv[e];
    }
    if (lid == 0u) {
        sweeps[b] = done;
    }
}
