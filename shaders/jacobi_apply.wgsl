// Multi-dispatch path, second half of a round: applies this round's rotations to every
// off-diagonal 2×2 block (k, l) of A (upper-triangle storage, so each entry has one owner)
// and to every pair of rows of Vᵀ, a vec4 at a time; each invocation takes GROUP blocks or
// GROUP vec4s, which halves llvmpipe's per-invocation overhead. Blocks whose rotations are
// both identities are skipped.

@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> live: array<u32>;
@group(0) @binding(3) var<storage, read> rots: array<Rot>;
@group(0) @binding(4) var<storage, read_write> v: array<vec4<f32>>;

const WG: u32 = 256u;
// Blocks, and vec4s of a row of Vᵀ, per invocation (the host's APPLY_GROUP).
const GROUP: u32 = 8u;

// Invocations per block row: the longest row reaches m/4 blocks ahead.
fn block_groups(np: u32) -> u32 {
    return (np / 2u + GROUP - 1u) / GROUP;
}

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
    let rot0 = b * np;
    let block_items = np * block_groups(np);
    if (e < block_items) {
        // Blocks (k, k + d mod m/2) for GROUP consecutive offsets d of block row k.
        let k = e % np;
        let d0 = (e / np) * GROUP + 1u;
        let reach = select((np - 1u) / 2u, np / 2u, k < np / 2u);
        let rk = rots[rot0 + k];
        var l = k + d0;
        if (l >= np) {
            l -= np;
        }
        for (var d = d0; d <= min(reach, d0 + GROUP - 1u); d++) {
            let rl = rots[rot0 + l];
            if (rk.s != 0.0 || rl.s != 0.0) {
                let x = vec4<f32>(sym_get(base, rk.i, rl.i), sym_get(base, rk.i, rl.j), sym_get(base, rk.j, rl.i), sym_get(base, rk.j, rl.j));
                let y = rotate_block(x, rk, rl);
                sym_set(base, rk.i, rl.i, y.x);
                sym_set(base, rk.i, rl.j, y.y);
                sym_set(base, rk.j, rl.i, y.z);
                sym_set(base, rk.j, rl.j, y.w);
            }
            l += 1u;
            if (l == np) {
                l = 0u;
            }
        }
    } else {
        // Rows (i, j) of Vᵀ for pair l, GROUP vec4s from chunk c0 on.
        let f = e - block_items;
        let chunks = p.chunks;
        let groups = (chunks + GROUP - 1u) / GROUP;
        let rl = rots[rot0 + f / groups];
        if (rl.s != 0.0) {
            let c0 = (f % groups) * GROUP;
            let vi = (b * n + rl.i) * chunks;
            let vj = (b * n + rl.j) * chunks;
            for (var c = c0; c < min(chunks, c0 + GROUP); c++) {
                let x = v[vi + c];
                let y = v[vj + c];
                v[vi + c] = rl.c * x - rl.s * y;
                v[vj + c] = rl.s * x + rl.c * y;
            }
        }
    }
}
