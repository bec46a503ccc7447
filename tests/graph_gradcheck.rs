//! Every op's backward rule against central finite differences, in f64 on the reference
//! executor.
//!
//! For an op y = f(x) we take the scalar L = Σ R∘y with a fixed random R, let autodiff append
//! ∂L/∂x, and compare it with (L(x + h·e_i) − L(x − h·e_i)) / 2h for every element i. Every
//! evaluation is a forward run at step 0, so a dropout mask is the same in all of them.
//! With h = 1e-5 in f64 the truncation error is O(h²·|f'''|) ≈ 1e-10 and the rounding error
//! ≈ 1e-16·|L|/h ≈ 1e-11, so a relative error of 1e-6 (against the largest gradient entry)
//! leaves a wide margin while still catching any wrong rule (which is off by O(1)).

mod common;
use common::random;
use eigengrad::graph::reference::ReferencePlan;
use eigengrad::graph::{Graph, Init, Role, Value};
use eigengrad::kernels::elementwise::UnaryOp;
use eigengrad::kernels::reduce::{Axis, ReduceOp};
use eigengrad::kernels::spectral::SpectralFn;
use eigengrad::nn::{EigenLayer, EigenMode, Mode, Scope};

const H: f64 = 1e-5;
const REL_TOL: f64 = 1e-6;

/// Inputs bounded away from 0 (ReLU's kink) by 0.1.
fn data(seed: u64, n: usize) -> Vec<f32> {
    random(seed, n, 1.0)
        .into_iter()
        .map(|v| v + 0.1f32.copysign(v))
        .collect()
}

/// Builds L = Σ R∘f(params) and checks ∂L/∂p for every parameter by finite differences.
fn gradcheck(name: &str, shapes: &[&[usize]], f: impl Fn(&mut Graph, &[Value]) -> Value) {
    let params: Vec<(&[usize], Vec<f32>)> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| (*s, data(k as u64 + 1, s.iter().product())))
        .collect();
    gradcheck_at(name, &params, f)
}

/// [`gradcheck`] at given parameter values.
fn gradcheck_at(
    name: &str,
    initial: &[(&[usize], Vec<f32>)],
    f: impl Fn(&mut Graph, &[Value]) -> Value,
) {
    let mut g = Graph::new();
    let params: Vec<Value> = initial
        .iter()
        .enumerate()
        .map(|(k, (s, d))| g.param(&format!("p{k}"), s, Init::Data(d.clone())).unwrap())
        .collect();
    let y = f(&mut g, &params);
    check_gradients(name, g, y, &params, &[]);
}

/// Checks ∂L/∂p of L = Σ R∘y for every parameter `p` of `params` by central differences,
/// after setting the values `at` (the rest keep their initialisation).
fn check_gradients(name: &str, mut g: Graph, y: Value, params: &[Value], at: &[(Value, Vec<f64>)]) {
    let y_shape = g.try_shape(y).unwrap().to_vec();
    let ny: usize = y_shape.iter().product();
    let r = g
        .resident(
            "r",
            &y_shape,
            Init::Data(random(99, ny, 1.0)),
            Role::Constant,
        )
        .unwrap();
    let ry = g.mul(y, r).unwrap();
    let flat = g.reshape(ry, &[1, ny]).unwrap();
    let loss = g.reduce(ReduceOp::Sum, Axis::Rows, flat).unwrap();
    let grads = g.backward(loss).unwrap();
    // Forward runs (no step): the step count, and with it any dropout mask, stays fixed.
    let mut plan = ReferencePlan::<f64>::compile(&g, 0).unwrap();
    for (v, data) in at {
        plan.write(*v, data).unwrap();
    }
    let outputs: Vec<Value> = params
        .iter()
        .map(|&p| grads.get(p).expect("gradient"))
        .collect();
    plan.forward(&[], &outputs).unwrap();
    let analytic_all: Vec<Vec<f64>> = outputs
        .iter()
        .map(|&dp| plan.read(dp).unwrap().to_vec())
        .collect();
    for (&p, analytic) in params.iter().zip(analytic_all) {
        let x0 = plan.read(p).unwrap().to_vec();
        let scale = analytic.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for i in 0..x0.len() {
            let mut loss_at = |delta: f64| {
                let mut x = x0.clone();
                x[i] += delta;
                plan.write(p, &x).unwrap();
                plan.forward(&[], &[loss]).unwrap();
                plan.read(loss).unwrap()[0]
            };
            let numeric = (loss_at(H) - loss_at(-H)) / (2.0 * H);
            let err = (numeric - analytic[i]).abs() / scale;
            assert!(
                err <= REL_TOL,
                "{name}: d/d{}[{i}]: analytic {} vs numeric {numeric} (relative error {err:e})",
                g.try_node(p).unwrap().name,
                analytic[i]
            );
        }
        plan.write(p, &x0).unwrap();
    }
}

#[test]
fn matmul_all_transposes() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a: &[usize] = if ta { &[5, 3] } else { &[3, 5] };
        let b: &[usize] = if tb { &[4, 5] } else { &[5, 4] };
        gradcheck(&format!("matmul {ta} {tb}"), &[a, b], |g, p| {
            g.matmul(p[0], p[1], ta, tb).unwrap()
        });
    }
}

#[test]
fn batched_matmul() {
    gradcheck("batched matmul", &[&[2, 3, 4], &[2, 4, 3]], |g, p| {
        g.matmul(p[0], p[1], false, false).unwrap()
    });
    gradcheck("batched matmul tt", &[&[2, 4, 3], &[2, 3, 4]], |g, p| {
        g.matmul(p[0], p[1], true, true).unwrap()
    });
}

#[test]
fn activations_and_scale() {
    for op in [
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Scale(-2.5),
    ] {
        gradcheck(&format!("{op:?}"), &[&[3, 7]], |g, p| {
            g.unary(op, p[0]).unwrap()
        });
    }
}

#[test]
fn binary_with_and_without_bias_broadcast() {
    gradcheck("add", &[&[3, 4], &[3, 4]], |g, p| {
        g.add(p[0], p[1]).unwrap()
    });
    gradcheck("sub bias", &[&[3, 4], &[4]], |g, p| {
        g.sub(p[0], p[1]).unwrap()
    });
    gradcheck("mul bias", &[&[5, 2], &[2]], |g, p| {
        g.mul(p[0], p[1]).unwrap()
    });
    gradcheck("mul fan-out", &[&[3, 3]], |g, p| g.mul(p[0], p[0]).unwrap());
}

#[test]
fn reductions_both_axes() {
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::SumSquares] {
        for axis in [Axis::Rows, Axis::Cols] {
            gradcheck(&format!("{op:?} {axis:?}"), &[&[4, 3]], |g, p| {
                g.reduce(op, axis, p[0]).unwrap()
            });
        }
    }
}

#[test]
fn transpose_and_reshape() {
    gradcheck("transpose", &[&[3, 5]], |g, p| g.transpose(p[0]).unwrap());
    gradcheck("transpose batched", &[&[2, 3, 5]], |g, p| {
        g.transpose(p[0]).unwrap()
    });
    gradcheck("reshape", &[&[3, 4]], |g, p| {
        let r = g.reshape(p[0], &[2, 6]).unwrap();
        g.tanh(r).unwrap()
    });
}

/// Slices of a stack (one slice selected twice, one never) and a stack of values, each used
/// non-linearly, and the per-row product: the gathered Stack gradient with its zero slots, the
/// sum of repeated selects, and the Select gradient of a stack.
#[test]
fn select_stack_and_per_row_product() {
    gradcheck("select and stack", &[&[4, 2, 3], &[2, 3]], |g, p| {
        let a = g.select(p[0], 0).unwrap();
        let b = g.select(p[0], 2).unwrap();
        let b_again = g.select(p[0], 2).unwrap();
        let bb = g.mul(b, b_again).unwrap();
        let t = g.tanh(a).unwrap();
        let s = g.stack(&[t, bb, p[1]]).unwrap();
        g.tanh(s).unwrap()
    });
    gradcheck("select from a vector", &[&[5]], |g, p| {
        let x = g.select(p[0], 3).unwrap();
        let y = g.select(p[0], 1).unwrap();
        let xy = g.mul(x, y).unwrap();
        g.stack(&[xy, x]).unwrap()
    });
    gradcheck("per-row product", &[&[3, 4], &[3]], |g, p| {
        let y = g.mul_rows(p[0], p[1]).unwrap();
        g.tanh(y).unwrap()
    });
}

#[test]
fn losses() {
    gradcheck("softmax xent", &[&[4, 5]], |g, p| {
        let t = g
            .resident("t", &[4, 5], Init::Data(soft_targets(4, 5)), Role::Constant)
            .unwrap();
        g.softmax_xent(p[0], t).unwrap()
    });
    gradcheck("softmax cross-entropy mean", &[&[3, 7]], |g, p| {
        let t = g
            .resident("t", &[3, 7], Init::Data(soft_targets(3, 7)), Role::Constant)
            .unwrap();
        g.softmax_cross_entropy(p[0], t).unwrap()
    });
    gradcheck("mse", &[&[3, 4], &[3, 4]], |g, p| {
        g.mse(p[0], p[1]).unwrap()
    });
}

#[test]
fn two_layer_network_end_to_end() {
    gradcheck("mlp", &[&[4, 6], &[6, 5], &[5], &[5, 3]], |g, p| {
        let h = g.matmul(p[0], p[1], false, false).unwrap();
        let h = g.add(h, p[2]).unwrap();
        let h = g.tanh(h).unwrap();
        g.matmul(h, p[3], false, false).unwrap()
    });
}

/// Rows of non-negative weights summing to 1.
fn soft_targets(rows: usize, classes: usize) -> Vec<f32> {
    let raw: Vec<f32> = random(7, rows * classes, 1.0)
        .iter()
        .map(|v| v.abs() + 0.05)
        .collect();
    raw.chunks(classes)
        .flat_map(|r| {
            let s: f32 = r.iter().sum();
            r.iter().map(move |v| v / s).collect::<Vec<_>>()
        })
        .collect()
}

/// Data for a square weight: `kind` 0 = identity (fully degenerate spectrum), 1 = orthogonal
/// (a rotation, also degenerate), 2 = random, 3 = repeated singular values (2·I on a block),
/// 4 = distinct singular values σ_k = 2·0.65^k = 2, 1.3, 0.845, 0.549, … in rotated bases,
/// R·diag(σ)·Q (top gap 58% in σ²; ≥ 5% away from the Clamp kinks 0.8, 0.9, 1.1, 1.5).
fn weight(kind: usize, n: usize) -> Vec<f32> {
    let mut w = vec![0.0f32; n * n];
    match kind {
        0 => (0..n).for_each(|i| w[i * n + i] = 1.0),
        1 => {
            let (c, s) = (0.6f32, 0.8f32);
            (0..n).for_each(|i| w[i * n + i] = 1.0);
            w[0] = c;
            w[1] = -s;
            w[n] = s;
            w[n + 1] = c;
        }
        2 => w = data(11, n * n),
        3 => (0..n).for_each(|i| w[i * n + i] = if i < n / 2 { 2.0 } else { 0.5 }),
        _ => {
            // R rotates the plane (0, 1) by (0.6, 0.8), Q the plane (0, n − 1) by (0.8, 0.6):
            // the top singular vectors are off the axes on both sides.
            let rot = |p: usize, q: usize, c: f32, s: f32| {
                let mut m = vec![0.0f32; n * n];
                (0..n).for_each(|i| m[i * n + i] = 1.0);
                (m[p * n + p], m[p * n + q], m[q * n + p], m[q * n + q]) = (c, -s, s, c);
                m
            };
            let (r, q) = (rot(0, 1, 0.6, 0.8), rot(0, n - 1, 0.8, 0.6));
            for i in 0..n {
                for j in 0..n {
                    w[i * n + j] = (0..n)
                        .map(|k| r[i * n + k] * 2.0 * 0.65f32.powi(k as i32) * q[k * n + j])
                        .sum();
                }
            }
        }
    }
    w
}

/// W' = W·h(WᵀW) for the parameter W.
fn eigen_composition(mode: EigenMode) -> impl Fn(&mut Graph, &[Value]) -> Value {
    move |g, p| {
        let gram = g.matmul(p[0], p[0], true, false).unwrap();
        let h = g.spectral_fn(gram, mode.spectral_fn()).unwrap();
        g.matmul(p[0], h, false, false).unwrap()
    }
}

/// The EigenLayer composition W' = W·h(WᵀW) through the graph, on degenerate and random
/// weights, for every mode: autodiff through the spectral op matches finite differences.
/// `Normalize` (W/σ_max) is differentiable only where the top singular value is simple, so it
/// is checked on kinds 2 (random) and 4 (distinct σ); kinds 0, 1 and 3 repeat the top.
#[test]
fn eigen_layer_modes_on_degenerate_and_random_weights() {
    let modes = [
        EigenMode::Clamp { lo: 0.8, hi: 1.5 },
        EigenMode::Clamp { lo: 0.9, hi: 1.1 },
        EigenMode::Orthogonal,
    ];
    let n = 4;
    for mode in modes {
        for kind in 0..5 {
            let name = format!("{mode:?} weight kind {kind}");
            gradcheck_at(
                &name,
                &[(&[n, n], weight(kind, n))],
                eigen_composition(mode),
            );
        }
    }
    for kind in [2, 4] {
        let name = format!("Normalize weight kind {kind}");
        gradcheck_at(
            &name,
            &[(&[n, n], weight(kind, n))],
            eigen_composition(EigenMode::Normalize),
        );
    }
}

/// At W = I every singular value is the top one and W/σ_max is not differentiable; the
/// graph's gradient (the derivative along the solver's top eigenvector) must still be finite
/// (and nonzero), and the forward W' = I.
#[test]
fn eigen_layer_normalize_at_identity_is_finite() {
    let n = 4;
    let mut g = Graph::new();
    let w = g.param("w", &[n, n], Init::Data(weight(0, n))).unwrap();
    let y = eigen_composition(EigenMode::Normalize)(&mut g, &[w]);
    let r = g
        .resident(
            "r",
            &[n, n],
            Init::Data(random(99, n * n, 1.0)),
            Role::Constant,
        )
        .unwrap();
    let ry = g.mul(y, r).unwrap();
    let flat = g.reshape(ry, &[1, n * n]).unwrap();
    let loss = g.reduce(ReduceOp::Sum, Axis::Rows, flat).unwrap();
    let grads = g.backward(loss).unwrap();
    let mut plan = ReferencePlan::<f64>::compile(&g, 0).unwrap();
    plan.step(&[]).unwrap();
    let grad = plan.read(grads.get(w).expect("gradient")).unwrap();
    assert!(grad.iter().all(|v| v.is_finite()), "{grad:?}");
    assert!(grad.iter().any(|&v| v != 0.0), "{grad:?}");
    // W' = I·(V·Vᵀ)/1: exact up to the rounding of the f64 eigenvectors.
    let wp = plan.read(y).unwrap();
    for (i, v) in wp.iter().enumerate() {
        let expected = if i % (n + 1) == 0 { 1.0 } else { 0.0 };
        assert!((v - expected).abs() <= 1e-12, "W'[{i}] = {v}");
    }
}

#[test]
fn eigen_layer_builder_both_gram_sides() {
    for (inputs, outputs) in [(5, 3), (3, 5)] {
        gradcheck(
            &format!("EigenLayer {inputs}->{outputs}"),
            &[&[2, inputs]],
            |g, p| {
                let layer = EigenLayer::new(
                    &mut Scope::new(g, Mode::Train).scope("layer"),
                    inputs,
                    outputs,
                    EigenMode::Clamp { lo: 0.7, hi: 1.2 },
                    Init::Data(data(5, inputs * outputs)),
                )
                .unwrap();
                layer.forward(g, p[0]).unwrap()
            },
        );
    }
}

/// The learnable gain: y = x·(γ·W') + b through `EigenLayer::with_gain`, every parameter
/// (W, γ, b) and the input checked, at γ = 1 (its initial value) and γ = −0.7, on the
/// degenerate and random weights of [`weight`], for every mode (`Normalize` on the kinds
/// with a simple top singular value, as above). dγ = Σ dW''∘W' is a sum of n² products of
/// O(1) terms: the FD budget of the module docs holds unchanged.
#[test]
fn eigen_layer_gain_on_degenerate_and_random_weights() {
    let n = 4;
    let modes = [
        EigenMode::Clamp { lo: 0.9, hi: 1.1 },
        EigenMode::Clamp { lo: 0.8, hi: 1.5 },
        EigenMode::Orthogonal,
        EigenMode::Normalize,
    ];
    for mode in modes {
        for kind in 0..5 {
            if mode == EigenMode::Normalize && ![2, 4].contains(&kind) {
                continue;
            }
            for gain in [1.0, -0.7] {
                let mut g = Graph::new();
                let x = g.param("x", &[3, n], Init::Data(data(5, 3 * n))).unwrap();
                let layer = EigenLayer::with_gain(
                    &mut Scope::new(&mut g, Mode::Train).scope("layer"),
                    n,
                    n,
                    mode,
                    Init::Data(weight(kind, n)),
                )
                .unwrap();
                let y = layer.forward(&mut g, x).unwrap();
                let gamma = layer.gain.expect("a gain");
                let bias = layer.linear.bias;
                check_gradients(
                    &format!("{mode:?} weight kind {kind}, gain {gain}"),
                    g,
                    y,
                    &[x, layer.linear.weight, gamma, bias],
                    &[(gamma, vec![gain]), (bias, vec![0.1, -0.2, 0.3, 0.05])],
                );
            }
        }
    }
}

/// A `Clamp` layer from a random initialiser at another scale stores Ŵ = W/c and applies
/// c·Ŵ·h_{lo/|c|, hi/|c|}(ŴᵀŴ) (see `EigenMode::raw_weight_scale`): at the same W = c·Ŵ it
/// is the same function as a layer storing W itself, and its gradient with respect to Ŵ (the
/// constant c included) matches finite differences — on the degenerate and random weights
/// of [`weight`] (kinds 0–4, so W lands ≥ 5% away from the band's kinks), with a gain, for
/// c = 2, ½ and a negative −1.5 (a draw of negative scale).
#[test]
fn eigen_layer_clamp_with_a_raw_scale() {
    let n = 4;
    let mode = EigenMode::Clamp { lo: 0.9, hi: 1.1 };
    // Ŵ is drawn at singular values of root-mean-square 1: an i.i.d. std of 1/√n = ½.
    for c in [2.0f32, 0.5, -1.5] {
        for kind in 0..5 {
            let w = weight(kind, n);
            let stored: Vec<f32> = w.iter().map(|v| v / c).collect();
            let build = |init: Init| {
                let mut g = Graph::new();
                let x = g.param("x", &[3, n], Init::Data(data(5, 3 * n))).unwrap();
                let layer = EigenLayer::with_gain(
                    &mut Scope::new(&mut g, Mode::Train).scope("layer"),
                    n,
                    n,
                    mode,
                    init,
                )
                .unwrap();
                let y = layer.forward(&mut g, x).unwrap();
                (g, x, layer, y)
            };
            let (g, x, layer, y) = build(Init::Normal { std: 0.5 * c });
            assert_eq!(layer.raw_scale, c);
            // The same W′ as the layer that stores W = c·Ŵ itself (raw scale 1).
            let (g_w, _, layer_w, _) = build(Init::Data(w.clone()));
            assert_eq!(layer_w.raw_scale, 1.0);
            let mut plan = ReferencePlan::<f64>::compile(&g, 0).unwrap();
            let stored_f64: Vec<f64> = stored.iter().map(|&v| v as f64).collect();
            plan.write(layer.linear.weight, &stored_f64).unwrap();
            plan.forward(&[], &[layer.effective_weight]).unwrap();
            let mut plan_w = ReferencePlan::<f64>::compile(&g_w, 0).unwrap();
            plan_w.forward(&[], &[layer_w.effective_weight]).unwrap();
            let (a, b) = (
                plan.read(layer.effective_weight).unwrap(),
                plan_w.read(layer_w.effective_weight).unwrap(),
            );
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                // W/c in f32 is exact for c = 2 and ½, rounded once for −1.5.
                assert!(
                    (p - q).abs() <= 1e-6,
                    "c = {c}, kind {kind}: W'[{i}] {p} vs {q}"
                );
            }
            // Both report the singular values of W = c·Ŵ and of W′, not of Ŵ.
            let (scaled, direct) = (
                layer.singular_values(&plan).unwrap(),
                layer_w.singular_values(&plan_w).unwrap(),
            );
            assert_eq!((scaled.0.len(), scaled.1.len()), (n, n));
            for (p, q) in scaled
                .0
                .iter()
                .chain(&scaled.1)
                .zip(direct.0.iter().chain(&direct.1))
            {
                assert!((p - q).abs() <= 1e-5, "c = {c}, kind {kind}: σ {p} vs {q}");
            }
            let gamma = layer.gain.expect("a gain");
            check_gradients(
                &format!("{mode:?} at raw scale {c}, weight kind {kind}"),
                g,
                y,
                &[x, layer.linear.weight, gamma, layer.linear.bias],
                &[
                    (layer.linear.weight, stored_f64),
                    (gamma, vec![-0.7]),
                    (layer.linear.bias, vec![0.1, -0.2, 0.3, 0.05]),
                ],
            );
        }
    }
}

#[test]
fn whitening_spectral_function() {
    gradcheck("InvSqrt of a covariance", &[&[6, 3]], |g, p| {
        let c = g.matmul(p[0], p[0], true, false).unwrap();
        g.spectral_fn(c, SpectralFn::InvSqrt { eps: 1e-3 }).unwrap()
    });
}

/// Dropout with a fixed seed at a fixed step: a fixed mask, so L is linear in x and the rule
/// (the same dropout of dy) must match exactly up to rounding.
#[test]
fn dropout_with_a_fixed_mask() {
    for (rate, seed) in [(0.4, 17), (0.9, 3)] {
        gradcheck(&format!("dropout {rate}"), &[&[7, 9]], |g, p| {
            g.dropout(p[0], rate, seed).unwrap()
        });
    }
}

/// Layer normalisation on rows of awkward widths, a one-column row (output and gradient 0)
/// and the full layer with its gain and bias (broadcast products and sums after the op).
#[test]
fn layer_norm_alone_and_with_gain_and_bias() {
    for shape in [&[3, 7][..], &[2, 2], &[4, 1], &[1, 13]] {
        gradcheck(&format!("layer_norm {shape:?}"), &[shape], |g, p| {
            g.layer_norm(p[0], 1e-3).unwrap()
        });
    }
    gradcheck("layer_norm gain bias", &[&[5, 6], &[6], &[6]], |g, p| {
        let n = g.layer_norm(p[0], 1e-5).unwrap();
        let scaled = g.mul(n, p[1]).unwrap();
        g.add(scaled, p[2]).unwrap()
    });
}

/// The gradient of a slice selected from a trainable stack (a stacked layer's weight) is the
/// same slice of the stack's gradient: `Gradients::get_or_slice` appends that select (zeros
/// for a slice the loss does not use); a value with no gradient and no sliced source has none.
#[test]
fn the_gradient_of_a_selected_slice_is_the_slice_of_the_gradient() {
    let mut g = Graph::new();
    let stack = g
        .param("stack", &[3, 4, 4], Init::Data(data(7, 48)))
        .unwrap();
    let x = g.input("x", &[5, 4]).unwrap();
    let slices: Vec<Value> = (0..3).map(|k| g.select(stack, k).unwrap()).collect();
    let mut h = x;
    for &w in &slices[..2] {
        let z = g.matmul(h, w, false, false).unwrap();
        h = g.tanh(z).unwrap();
    }
    let flat = g.reshape(h, &[1, 20]).unwrap();
    let loss = g.reduce(ReduceOp::Sum, Axis::Rows, flat).unwrap();
    let grads = g.backward(loss).unwrap();
    let whole = grads.get(stack).expect("the stack's gradient");
    let parts: Vec<Value> = slices
        .iter()
        .map(|&w| {
            grads
                .get_or_slice(&mut g, w)
                .unwrap()
                .expect("a slice's gradient")
        })
        .collect();
    assert_eq!(grads.get_or_slice(&mut g, x).unwrap(), None);
    let mut plan = ReferencePlan::<f64>::compile(&g, 0).unwrap();
    let xs: Vec<f64> = data(8, 20).iter().map(|&v| v as f64).collect();
    let mut outputs = vec![whole];
    outputs.extend(&parts);
    plan.forward(&[(x, &xs)], &outputs).unwrap();
    let whole = plan.read(whole).unwrap().to_vec();
    for (k, &p) in parts.iter().enumerate() {
        assert_eq!(
            plan.read(p).unwrap(),
            &whole[k * 16..(k + 1) * 16],
            "slice {k}"
        );
    }
    assert!(whole[32..].iter().all(|&v| v == 0.0), "the unused slice");
    assert!(whole[..32].iter().any(|&v| v != 0.0));
}
