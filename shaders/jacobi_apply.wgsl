// Multi-dispatch path, second half of a round: applies this round's rotations to every
// off-diagonal 2×2 block (k, l) of A (upper-triangle storage, so each entry has one owner)
// and to every pair of rows of Vᵀ, a vec4 at a time. Invocations whose rotations are all
// identities do nothing.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> live: array<u32>;
@group(0) @binding(3) var<storage, read> rots: array<Rot>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;

const WG: u32 = 256u;

fn sym_get(base: u32, i: u32, j: u32) -> f32 {
    if (max(i, j) >= p.n) {
        return 0.0;
    }
    return a[base + min(i, j) * p.n + max(i, j)];
}

fn sym_set(base: u32, i: u32, j: u32, x: f32) {
    if (max(i, j) < p.n) {
        a[base + min(i, j) * p.n + max(i, j)] = x;
    }
}

@compute @workgroup_size(256)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = wid.x * WG + lid;
    if (e >= p.items) {
        return;
    }
    let b = live[wid.y];
    let n = p.n;
    let base = b * n * n;
    let np = p.pairs;
    let blocks = np * (np - 1u) / 2u;
    if (e < blocks) {
        let kl = block_of(e);
        let rk = rots[b * np + kl.x];
        let rl = rots[b * np + kl.y];
        if (rk.s != 0.0 || rl.s != 0.0) {
            let x = vec4<f32>(sym_get(base, rk.i, rl.i), sym_get(base, rk.i, rl.j), sym_get(base, rk.j, rl.i), sym_get(base, rk.j, rl.j));
            let y = rotate_block(x, rk, rl);
            sym_set(base, rk.i, rl.i, y.x);
            sym_set(base, rk.i, rl.j, y.y);
            sym_set(base, rk.j, rl.i, y.z);
            sym_set(base, rk.j, rl.j, y.w);
        }
    } else {
        let f = e - blocks;
        let chunks = p.chunks;
        let rl = rots[b * np + f / chunks];
        if (rl.s != 0.0) {
            let vi = (b * n + rl.i) * chunks + f % chunks;
            let vj = (b * n + rl.j) * chunks + f % chunks;
            let x = v[vi];
            let y = v[vj];
            v[vi] = rl.c * x - rl.s * y;
            v[vj] = rl.s * x + rl.c * y;
        }
    }
}
