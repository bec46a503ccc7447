// The caller's input A (binding 1) as the solver sees it: scaled by the power of two 2^e of
// the prologue and symmetrised (shared by jacobi_prep.wgsl and jacobi_rayleigh.wgsl).

@group(0) @binding(1) var<storage, read> input: array<f32>;

// Entry (i, j) of 2^e·(A + Aᵀ)/2, scaled before the halving so that no bit is lost.
fn scaled_symmetric(base: u32, i: u32, j: u32, e: i32) -> f32 {
    let n = p.n;
    return 0.5 * times_pow2(input[base + i * n + j], e) + 0.5 * times_pow2(input[base + j * n + i], e);
}
