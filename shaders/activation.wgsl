// Activations and their backward rules, shared by the elementwise kernels and the matmul
// epilogue: the Rust side prepends this file to those shaders, so a fused kernel computes
// exactly what the separate kernels would.

// tanh saturates to ±1 in f32 beyond |u| = 9; clamping keeps exp-based tanh implementations
// from computing inf/inf = NaN for large inputs.
const TANH_CLAMP: f32 = 15.0;
const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

fn safe_tanh(u: f32) -> f32 {
    return tanh(clamp(u, -TANH_CLAMP, TANH_CLAMP));
}

fn relu_of(x: f32) -> f32 {
    return max(x, 0.0);
}

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
fn gelu_of(x: f32) -> f32 {
    return 0.5 * x * (1.0 + safe_tanh(GELU_C * (x + GELU_A * x * x * x)));
}

// dx of ReLU from its input x and the upstream gradient dy.
fn relu_backward_of(x: f32, dy: f32) -> f32 {
    return select(0.0, dy, x > 0.0);
}

// dx of tanh from its output y = tanh(x) and dy: (1 - y^2) dy.
fn tanh_backward_of(y: f32, dy: f32) -> f32 {
    return (1.0 - y * y) * dy;
}

// dx of the GELU approximation from its input x and dy.
fn gelu_backward_of(x: f32, dy: f32) -> f32 {
    let t = safe_tanh(GELU_C * (x + GELU_A * x * x * x));
    let d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
    return d * dy;
}
