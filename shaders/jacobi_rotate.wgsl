// Multi-dispatch path, first half of a round: for every matrix still iterating (listed in
// `live`, one per workgroup row) and every pair of this round, the rotation that zeroes
// a_pq, with Rutishauser's update of the 2×2 diagonal block applied at once.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> live: array<u32>;
@group(0) @binding(3) var<storage, read_write> rots: array<Rot>;
@group(0) @binding(4) var<storage, read> floor_of: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn rotate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.x * WG + lid;
    if (k >= p.pairs) {
        return;
    }
    let b = live[wid.y];
    let n = p.n;
    let base = b * n * n;
    let ij = pair_of(k, p.round);
    var rot = Rot(1.0, 0.0, ij.x, ij.y);
    if (ij.y < n) {
        let pp = base + ij.x * n + ij.x;
        let qq = base + ij.y * n + ij.y;
        let pq = base + ij.x * n + ij.y;
        let apq = a[pq];
        let app = a[pp];
        let aqq = a[qq];
        if (!negligible(apq, app, aqq, floor_of[b])) {
            let cst = rotation(app, aqq, apq);
            a[pp] = app - cst.z * apq;
            a[qq] = aqq + cst.z * apq;
            a[pq] = 0.0;
            rot.c = cst.x;
            rot.s = cst.y;
        }
    }
    rots[b * p.pairs + k] = rot;
}
