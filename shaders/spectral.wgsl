// Spectral functions of symmetric matrices, H = V g(Λ) Vᵀ, and their Loewner backward.
// One invocation per element of a batch of n×n matrices; `values` holds each item's
// eigenvalues in ascending order, so λ_max of item b is values[b*n + n-1].
//   scale_columns:   out[b,i,j] = mat[b,i,j] * g~(values[b,j])
//   loewner_product: out[b,i,j] = Lw_ij * (mat[b,i,j] + mat[b,j,i]) / 2, plus τ_b on the
//                    diagonal for Shrink and tr(mat[b])·∂g/∂λ_max at (n-1, n-1) for Normalize
// The math and its reasons are in src/kernels/spectral.rs: every function here mirrors the
// Rust function of the same name operation by operation, so that f32 results agree with the
// f32 reference up to the rounding of sqrt and division, and every branch decision (floor,
// Clamp region, rtol gap test) is made on the same correctly rounded f32 values.

struct Params {
    batch: u32,
    n: u32,
    mode: u32,
    k: u32,
    lo: f32,
    hi: f32,
    eps: f32,
    keep: f32,
    floor_rel: f32,
    rtol: f32,
    tiny: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read> mat: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
// SpectralFn::mode_id.
const CLAMP: u32 = 0u;
const ORTHOGONAL: u32 = 1u;
const INV_SQRT: u32 = 2u;
const TOP_K: u32 = 3u;
const SHRINK: u32 = 4u;
const NORMALIZE: u32 = 5u;

// SpectrumScale: λ̂_max = max(λ_max, tiny), the floor, Shrink's c = keep·max(μ, tiny) and dc/dμ.
struct Scale {
    top: f32,
    floor: f32,
    shrink_c: f32,
    dc_dmu: f32,
}

// SpectrumScale::of for the spectrum values[base .. base + n].
fn spectrum_scale(base: u32) -> Scale {
    let top = max(values[base + p.n - 1u], p.tiny);
    let floor = p.floor_rel * top;
    var c = 0.0;
    var dc = 0.0;
    if (p.mode == SHRINK) {
        var sum = 0.0;
        for (var k = 0u; k < p.n; k = k + 1u) {
            sum = sum + values[base + k];
        }
        let mu = sum / f32(p.n);
        dc = select(0.0, p.keep, mu > p.tiny);
        c = p.keep * max(mu, p.tiny);
    }
    return Scale(top, floor, c, dc);
}

// −1 below lo², +1 above hi², 0 between (decided on λ, not on √λ).
fn clamp_region(x: f32) -> i32 {
    if (x < p.lo * p.lo) {
        return -1;
    }
    if (x > p.hi * p.hi) {
        return 1;
    }
    return 0;
}

// (1/√a − 1/√b)/(a − b) without cancellation; −½a^(−3/2) at a = b.
fn inv_sqrt_dd(a: f32, b: f32) -> f32 {
    let s = sqrt(a);
    let t = sqrt(b);
    return -1.0 / (s * t * (s + t));
}

// Clamp's divided difference of two points in the same region r.
fn clamp_dd_same(a: f32, b: f32, r: i32) -> f32 {
    if (r < 0) {
        return p.lo * inv_sqrt_dd(a, b);
    }
    if (r > 0) {
        return p.hi * inv_sqrt_dd(a, b);
    }
    return 0.0;
}

// g at a floored eigenvalue (every mode but TopK).
fn g_floored(x: f32, sc: Scale) -> f32 {
    if (p.mode == CLAMP) {
        let r = clamp_region(x);
        if (r < 0) {
            return p.lo / sqrt(x);
        }
        if (r > 0) {
            return p.hi / sqrt(x);
        }
        return 1.0;
    }
    if (p.mode == ORTHOGONAL) {
        return 1.0 / sqrt(x);
    }
    if (p.mode == INV_SQRT) {
        return 1.0 / sqrt(x + p.eps);
    }
    if (p.mode == NORMALIZE) {
        return 1.0 / sqrt(sc.top);
    }
    return x / (x + sc.shrink_c);
}

// D(a, b) = (g(a) − g(b))/(a − b), D(a, a) = g′(a), at floored a, b (every mode but TopK).
fn dd_floored(a: f32, b: f32, sc: Scale) -> f32 {
    if (p.mode == CLAMP) {
        let ra = clamp_region(a);
        let rb = clamp_region(b);
        if (ra == rb) {
            return clamp_dd_same(a, b, ra);
        }
        if (abs(a - b) > p.rtol * max(a, b)) {
            return (g_floored(a, sc) - g_floored(b, sc)) / (a - b);
        }
        let m = (a + b) * 0.5;
        return clamp_dd_same(m, m, clamp_region(m));
    }
    if (p.mode == ORTHOGONAL) {
        return inv_sqrt_dd(a, b);
    }
    if (p.mode == INV_SQRT) {
        return inv_sqrt_dd(a + p.eps, b + p.eps);
    }
    if (p.mode == NORMALIZE) {
        return 0.0;
    }
    let c = sc.shrink_c;
    return c / ((a + c) * (b + c));
}

// g~ of the eigenvalue at position `index` of its spectrum.
fn value(lambda: f32, index: u32, sc: Scale) -> f32 {
    if (p.mode == TOP_K) {
        return select(0.0, 1.0, index + p.k >= p.n);
    }
    return g_floored(max(lambda, sc.floor), sc);
}

// The Loewner entry Lw_ij of the guarded function.
fn loewner(li: f32, lj: f32, i: u32, j: u32, sc: Scale) -> f32 {
    if (p.mode == TOP_K) {
        let gi = value(li, i, sc);
        let gj = value(lj, j, sc);
        let scale = max(max(abs(li), abs(lj)), sc.floor);
        if (gi != gj && abs(li - lj) > p.rtol * scale) {
            return (gi - gj) / (li - lj);
        }
        return 0.0;
    }
    let above_i = li > sc.floor;
    let above_j = lj > sc.floor;
    if (!above_i && !above_j) {
        return 0.0;
    }
    let a = max(li, sc.floor);
    let b = max(lj, sc.floor);
    let d = dd_floored(a, b, sc);
    if (above_i && above_j) {
        return d;
    }
    return d * ((a - b) / (li - lj));
}

// ∂g~/∂μ for Shrink.
fn mean_sensitivity(lambda: f32, sc: Scale) -> f32 {
    let x = max(lambda, sc.floor);
    let d = x + sc.shrink_c;
    return -(sc.dc_dmu * x) / (d * d);
}

// ∂g~/∂λ_max for Normalize: −½·λ̂_max^(−3/2) while λ_max > tiny, else 0.
fn top_sensitivity(sc: Scale) -> f32 {
    if (sc.top > p.tiny) {
        return inv_sqrt_dd(sc.top, sc.top);
    }
    return 0.0;
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(64)
fn scale_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let nn = p.n * p.n;
    if (idx >= p.batch * nn) {
        return;
    }
    let base = (idx / nn) * p.n;
    let j = idx % p.n;
    let sc = spectrum_scale(base);
    out[idx] = mat[idx] * value(values[base + j], j, sc);
}

@compute @workgroup_size(64)
fn loewner_product(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    let nn = p.n * p.n;
    if (idx >= p.batch * nn) {
        return;
    }
    let b = idx / nn;
    let i = (idx % nn) / p.n;
    let j = idx % p.n;
    let base = b * p.n;
    let m0 = b * nn;
    let sc = spectrum_scale(base);
    let sym = (mat[idx] + mat[m0 + j * p.n + i]) * 0.5;
    var r = loewner(values[base + i], values[base + j], i, j, sc) * sym;
    if (p.mode == SHRINK && i == j) {
        var tau = 0.0;
        for (var k = 0u; k < p.n; k = k + 1u) {
            tau = tau + mat[m0 + k * p.n + k] * mean_sensitivity(values[base + k], sc);
        }
        r = r + tau / f32(p.n);
    }
    if (p.mode == NORMALIZE && i == p.n - 1u && j == p.n - 1u) {
        var tr = 0.0;
        for (var k = 0u; k < p.n; k = k + 1u) {
            tr = tr + mat[m0 + k * p.n + k];
        }
        r = r + tr * top_sensitivity(sc);
    }
    out[idx] = r;
}
