// Activations and their backward rules, shared by the elementwise kernels and the matmul
// epilogue: the Rust side puts this file before those shaders, so a fused kernel computes
// exactly what the separate kernels would. Written so that a NaN input gives a NaN output on
// every adapter: drivers may lower max/min/clamp so that they return the non-NaN operand
// (llvmpipe does), and may fold x != x to false, so NaN is detected from the bits and returned
// explicitly.

// tanh saturates to ±1 in f32 beyond |u| = 9; clamping keeps exp-based tanh implementations
// from computing inf/inf = NaN for large inputs.
const TANH_CLAMP: f32 = 15.0;
const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

// Exponent all ones and a non-zero mantissa.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// `r`, or `x` itself where `x` is NaN.
fn keep_nan(r: f32, x: f32) -> f32 {
    return select(r, x, is_nan(x));
}

fn safe_tanh(u: f32) -> f32 {
    return keep_nan(tanh(clamp(u, -TANH_CLAMP, TANH_CLAMP)), u);
}

fn relu_fwd(v: f32) -> f32 {
    return keep_nan(max(v, 0.0), v);
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
fn gelu_fwd(v: f32) -> f32 {
    return keep_nan(0.5 * v * (1.0 + safe_tanh(GELU_C * (v + GELU_A * v * v * v))), v);
}

// dx of ReLU: dy where x > 0, 0 where x <= 0, NaN where x or dy is NaN.
fn relu_grad(v: f32, dy: f32) -> f32 {
    return keep_nan(keep_nan(select(0.0, dy, v > 0.0), dy), v);
}

// dx of tanh from its output t = tanh(x): (1 - t^2) dy.
fn tanh_grad(t: f32, dy: f32) -> f32 {
    return keep_nan(keep_nan((1.0 - t * t) * dy, dy), t);
}

// dx of GELU (the derivative of the tanh approximation) times dy. Beyond |x| = TANH_CLAMP the
// tanh is ±1 in f32 and the derivative exactly 1 or 0, so it is evaluated at the clamped x,
// which also keeps x² from overflowing into inf·0 = NaN.
fn gelu_grad(v: f32, dy: f32) -> f32 {
    let c = clamp(v, -TANH_CLAMP, TANH_CLAMP);
    let t = safe_tanh(GELU_C * (c + GELU_A * c * c * c));
    let d = 0.5 * (1.0 + t) + 0.5 * c * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * c * c);
    return keep_nan(keep_nan(d * dy, dy), v);
}
