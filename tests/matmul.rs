//! Matmul kernels (every variant, each forced in turn, and every epilogue) against the f64
//! reference.
//!
//! Tolerance: the standard forward error bound of a dot product of length K computed in f32
//! in any order, with or without fused multiply-add, is
//! |ĉ_ij − c_ij| ≤ γ_K (|A|·|B|)_ij with γ_K = Kε/(1 − Kε) ≈ Kε (Higham, Accuracy and
//! Stability, §3.5), where |A|·|B| is the product of the elementwise absolute values. The
//! inputs are exact f32 values and the reference is computed in f64 (its own error is ~1e-16
//! relative, negligible), so we assert |ĉ − c_ref| ≤ 2·K·ε·(|A|·|B|)_ij per element: γ = 2
//! covers the 1/(1 − Kε) factor and the final rounding of the f64 reference, nothing more.
//!
//! Epilogues: the bias add is one more correctly rounded operation (ε·|c + bias| more); the
//! activations and backward rules are Lipschitz with constant ≤ 1.13 (GELU's steepest slope;
//! ReLU, tanh and their rules 1) in the product, so the product's bound is multiplied by 1.13,
//! plus the map's own f32 error: 8ε·(1 + |x|)·(1 + |y|) for the driver's tanh inside tanh,
//! GELU and their rules (as in tests/elementwise.rs, with y the rule's second operand).

mod common;
use common::*;
use eigengrad::kernels::autotune::Variant;
use eigengrad::kernels::elementwise::{BinaryOp, UnaryOp};
use eigengrad::kernels::matmul::{
    fused_matmul_dispatch, matmul, matmul_dispatch_variant, matmul_shape, Epilogue, MatmulClass,
    MatmulDims, MatmulVariant,
};
use eigengrad::kernels::run;
use eigengrad::{reference, Error, Tensor};

/// γ of the tolerance above.
const GAMMA: f64 = 2.0;

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// (m, n, k): 1×1×1; primes; non-multiples of every tile size (RowBlock 16 rows × 256
/// columns in groups of 4, Tiled 64×64 in 4×4 blocks with k steps of 16, Large 128×128 in 8×8
/// blocks with k steps of 8, Skinny 32×32 with k steps of 32, Subgroup 64×256 in 8×8 blocks
/// with k steps of 16 shuffled in rounds of the subgroup's width); tall/skinny and outer/inner
/// products; multiples of 4 that take Large's vec4 loads with partial tiles, and exactly one
/// Large tile; and the largest, 300³.
const SHAPES: [(usize, usize, usize); 14] = [
    (1, 1, 1),
    (7, 7, 7),
    (31, 31, 31),
    (127, 127, 127),
    (7, 31, 127),
    (127, 1, 7),
    (65, 257, 17),
    (17, 63, 33),
    (513, 129, 3),
    (1, 1, 1000),
    (200, 150, 1),
    (132, 260, 36),
    (128, 128, 8),
    (300, 300, 300),
];

/// Every variant the test device can run: all but `Subgroup` where it lacks subgroup
/// operations (see `the_subgroup_variant_runs_where_subgroups_exist_and_is_an_error_elsewhere`).
fn variants() -> Vec<MatmulVariant> {
    MatmulVariant::available_on(device().info())
}

/// The dims of one product op(A)·op(B), m×k by k×n.
fn unbatched(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> MatmulDims {
    MatmulDims {
        batch: 1,
        m,
        n,
        k,
        trans_a,
        trans_b,
        a_batched: false,
        b_batched: false,
    }
}

/// Runs `variant` on random operands laid out as `dims` and checks every element against the
/// f64 reference within the bound above.
fn check(variant: MatmulVariant, dims: &MatmulDims, seed: u64) {
    let dev = device();
    let a = random(seed, dims.a_len(), 1.0);
    let b = random(seed + 1, dims.b_len(), 1.0);
    let ta = Tensor::from_slice(&dev, &[a.len()], &a).unwrap();
    let tb = Tensor::from_slice(&dev, &[b.len()], &b).unwrap();
    let tc = Tensor::zeros(&dev, &[dims.c_len()]).unwrap();
    let d = matmul_dispatch_variant(&dev, dims, ta.buffer(), tb.buffer(), tc.buffer(), variant)
        .unwrap();
    run(&dev, &[&d]).unwrap();
    let gpu = tc.to_vec().unwrap();
    assert_matches_reference(&format!("{variant:?} {dims:?}"), &gpu, &a, &b, dims);
}

fn assert_matches_reference(what: &str, gpu: &[f32], a: &[f32], b: &[f32], dims: &MatmulDims) {
    let r = reference::matmul::matmul(&widen(a), &widen(b), dims);
    let abs = |x: &[f32]| x.iter().map(|v| v.abs() as f64).collect::<Vec<_>>();
    let bound = reference::matmul::matmul(&abs(a), &abs(b), dims);
    let k = dims.k as f64;
    assert_close_each(what, gpu, &r, |i, _| GAMMA * k * EPS * bound[i]);
}

#[test]
fn every_variant_matches_reference_for_all_transposes_and_awkward_shapes() {
    for variant in variants() {
        for (t, &(trans_a, trans_b)) in TRANSPOSES.iter().enumerate() {
            for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
                let dims = unbatched(m, n, k, trans_a, trans_b);
                check(variant, &dims, (100 * t + 2 * s) as u64);
            }
        }
    }
}

#[test]
fn batched_with_both_broadcast_patterns() {
    for variant in variants() {
        for &(trans_a, trans_b) in &TRANSPOSES {
            for (a_batched, b_batched) in [(true, true), (true, false), (false, true)] {
                for (m, n, k) in [(1, 1, 1), (7, 31, 17), (65, 257, 19)] {
                    let dims = MatmulDims {
                        batch: 3,
                        m,
                        n,
                        k,
                        trans_a,
                        trans_b,
                        a_batched,
                        b_batched,
                    };
                    check(variant, &dims, 7);
                }
            }
        }
    }
}

#[test]
fn more_workgroups_than_one_grid_dimension_allows_are_folded() {
    // Batch past max_compute_workgroups_per_dimension: the one-tile-per-item grid must fold.
    let batch = device().info().limits.max_compute_workgroups_per_dimension as usize + 3;
    for variant in variants() {
        let dims = MatmulDims {
            batch,
            m: 2,
            n: 3,
            k: 5,
            trans_a: false,
            trans_b: true,
            a_batched: true,
            b_batched: false,
        };
        check(variant, &dims, 11);
    }
}

/// The subgroup variant runs where the device has subgroups of at most 32 lanes — it is then
/// one of `variants()`, which every test here runs — and is a clear error elsewhere. CI states
/// which to expect of each adapter it tests on (`EIGENGRAD_EXPECT_SUBGROUPS`: 1 for lavapipe
/// on Vulkan, 0 for wgpu's GL backend), so that neither path goes untested unnoticed.
#[test]
fn the_subgroup_variant_runs_where_subgroups_exist_and_is_an_error_elsewhere() {
    let dev = device();
    let available = variants().contains(&MatmulVariant::Subgroup);
    if let Ok(expected) = std::env::var("EIGENGRAD_EXPECT_SUBGROUPS") {
        assert_eq!(available, expected == "1", "{}", dev.info());
    }
    let dims = unbatched(7, 5, 3, false, false);
    let (a, b, c) = (
        Tensor::zeros(&dev, &[dims.a_len()]).unwrap(),
        Tensor::zeros(&dev, &[dims.b_len()]).unwrap(),
        Tensor::zeros(&dev, &[dims.c_len()]).unwrap(),
    );
    let launch = matmul_dispatch_variant(
        &dev,
        &dims,
        a.buffer(),
        b.buffer(),
        c.buffer(),
        MatmulVariant::Subgroup,
    );
    match (available, launch) {
        (true, Ok(_)) => {}
        (false, Err(Error::InvalidArgument(why))) => {
            assert!(why.contains("subgroup"), "{why}")
        }
        (available, other) => panic!("available {available}: {other:?}"),
    }
}

#[test]
fn tensor_matmul_follows_the_shape_rule() {
    let dev = device();
    // (a shape, b shape, trans_a, trans_b, expected output shape)
    type Case = (
        &'static [usize],
        &'static [usize],
        bool,
        bool,
        &'static [usize],
    );
    let cases: [Case; 5] = [
        (&[5, 7], &[7, 3], false, false, &[5, 3]),
        (&[7, 5], &[3, 7], true, true, &[5, 3]),
        (&[4, 5, 7], &[7, 3], false, false, &[4, 5, 3]),
        (&[5, 7], &[4, 3, 7], false, true, &[4, 5, 3]),
        (&[4, 7, 5], &[4, 7, 3], true, false, &[4, 5, 3]),
    ];
    for (i, (sa, sb, trans_a, trans_b, expected)) in cases.into_iter().enumerate() {
        let a = random(40 + i as u64, sa.iter().product(), 2.0);
        let b = random(50 + i as u64, sb.iter().product(), 2.0);
        let ta = Tensor::from_slice(&dev, sa, &a).unwrap();
        let tb = Tensor::from_slice(&dev, sb, &b).unwrap();
        let c = matmul(&ta, &tb, trans_a, trans_b).unwrap();
        assert_eq!(c.shape(), expected, "{sa:?} · {sb:?}");
        let (shape, dims) = matmul_shape(sa, sb, trans_a, trans_b).unwrap();
        assert_eq!(shape, expected);
        assert_eq!(dims.a_batched, sa.len() == 3);
        assert_eq!(dims.b_batched, sb.len() == 3);
        let what = format!("matmul {sa:?} · {sb:?}");
        assert_matches_reference(&what, &c.to_vec().unwrap(), &a, &b, &dims);
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let bad: [(&[usize], &[usize], bool, bool); 8] = [
        (&[2, 3], &[4, 5], false, false),       // inner 3 vs 4
        (&[2, 3], &[2, 5], true, true),         // op(a) 3×2, op(b) 5×2: inner 2 vs 5
        (&[3, 2, 3], &[4, 3, 5], false, false), // batch 3 vs 4
        (&[6], &[6, 2], false, false),          // rank 1
        (&[2, 3], &[3], false, false),          // rank 1
        (&[1, 2, 2, 3], &[3, 4], false, false), // rank 4
        (&[2, 3], &[1, 1, 3, 4], false, false), // rank 4
        (&[0, 3], &[3, 4], false, false),       // zero dimension
    ];
    for (sa, sb, trans_a, trans_b) in bad {
        let err = matmul_shape(sa, sb, trans_a, trans_b).unwrap_err();
        match &err {
            Error::Shape { detail, .. } => assert!(
                detail.contains(&format!("{sa:?}")) && detail.contains(&format!("{sb:?}")),
                "the message names both shapes: {err}"
            ),
            other => panic!("{sa:?} · {sb:?}: expected Error::Shape, got {other}"),
        }
    }
    // The same through tensors.
    let dev = device();
    for (sa, sb) in [
        (&[2, 3][..], &[4, 6][..]),
        (&[2, 2, 3], &[3, 3, 2]),
        (&[24], &[24, 1]),
        (&[1, 2, 3, 4], &[4, 1]),
    ] {
        let a = Tensor::zeros(&dev, sa).unwrap();
        let b = Tensor::zeros(&dev, sb).unwrap();
        let err = matmul(&a, &b, false, false).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{sa:?} · {sb:?}: {err}");
    }
}

#[test]
fn dispatch_rejects_zero_dims_and_short_buffers() {
    let dev = device();
    let small = Tensor::zeros(&dev, &[5]).unwrap();
    let dims = MatmulDims {
        batch: 1,
        m: 2,
        n: 2,
        k: 2,
        trans_a: false,
        trans_b: false,
        a_batched: false,
        b_batched: false,
    };
    let buf = small.buffer();
    for variant in variants() {
        // 4 elements per operand fit in 5; a batch of 2 of batched A needs 8.
        assert!(matmul_dispatch_variant(&dev, &dims, buf, buf, buf, variant).is_ok());
        let batched = MatmulDims {
            batch: 2,
            a_batched: true,
            ..dims
        };
        let err = matmul_dispatch_variant(&dev, &batched, buf, buf, buf, variant).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let empty = MatmulDims { k: 0, ..dims };
        let err = matmul_dispatch_variant(&dev, &empty, buf, buf, buf, variant).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
    }
}

/// One epilogue a test runs.
#[derive(Clone, Copy)]
struct EpilogueCase {
    name: &'static str,
    activation: Option<UnaryOp>,
    bias: bool,
    /// Store the activation's argument too.
    store: bool,
    /// A backward rule instead of the forward epilogue.
    rule: Option<BinaryOp>,
}

/// Every forward combination of bias, activation and stored argument, and every backward rule.
fn epilogue_cases() -> Vec<EpilogueCase> {
    let forward = |name, activation, bias, store| EpilogueCase {
        name,
        activation,
        bias,
        store,
        rule: None,
    };
    let mut cases = vec![forward("bias", None, true, false)];
    for (name, f) in [
        ("relu", UnaryOp::Relu),
        ("tanh", UnaryOp::Tanh),
        ("gelu", UnaryOp::Gelu),
    ] {
        cases.push(forward(name, Some(f), true, true));
        cases.push(forward(name, Some(f), false, false));
    }
    for (name, rule) in [
        ("relu′", BinaryOp::ReluBackward),
        ("tanh′", BinaryOp::TanhBackward),
        ("gelu′", BinaryOp::GeluBackward),
    ] {
        cases.push(EpilogueCase {
            rule: Some(rule),
            ..forward(name, None, false, false)
        });
    }
    cases
}

#[test]
fn fused_epilogues_match_reference_for_every_variant() {
    let dev = device();
    // (batch, m, n, k): one element, primes past every tile, a batch sharing B (the bias is
    // per column, shared by the batch too), and a product whose m and n straddle the tiles.
    let shapes = [
        (1, 1, 1, 1),
        (1, 7, 31, 17),
        (3, 65, 33, 19),
        (1, 130, 129, 40),
    ];
    for variant in variants() {
        for (t, &(trans_a, trans_b)) in TRANSPOSES.iter().enumerate() {
            for (s, &(batch, m, n, k)) in shapes.iter().enumerate() {
                let dims = MatmulDims {
                    batch,
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    a_batched: batch > 1,
                    b_batched: false,
                };
                for (e, case) in epilogue_cases().into_iter().enumerate() {
                    check_fused(&dev, variant, &dims, case, (1000 * t + 100 * s + e) as u64);
                }
            }
        }
    }
}

/// Runs one fused product and checks C (and the stored argument) element by element.
fn check_fused(
    dev: &eigengrad::Device,
    variant: MatmulVariant,
    dims: &MatmulDims,
    case: EpilogueCase,
    seed: u64,
) {
    let EpilogueCase {
        name,
        activation,
        bias,
        store,
        rule,
    } = case;
    let a = random(seed, dims.a_len(), 1.0);
    let b = random(seed + 1, dims.b_len(), 1.0);
    let bias_v = random(seed + 2, dims.n, 1.0);
    let saved = random(seed + 3, dims.c_len(), 1.0);
    let up = |x: &[f32]| Tensor::from_slice(dev, &[x.len()], x).unwrap();
    let (ta, tb, tbias, tsaved) = (up(&a), up(&b), up(&bias_v), up(&saved));
    let (tc, tpre) = (
        Tensor::zeros(dev, &[dims.c_len()]).unwrap(),
        Tensor::zeros(dev, &[dims.c_len()]).unwrap(),
    );
    let epilogue = match rule {
        Some(rule) => Epilogue::Backward {
            rule,
            saved: tsaved.buffer().into(),
        },
        None => Epilogue::Forward {
            bias: bias.then(|| tbias.buffer().into()),
            activation,
            pre: store.then(|| tpre.buffer().into()),
        },
    };
    let regions = [ta.buffer().into(), tb.buffer().into(), tc.buffer().into()];
    let d = fused_matmul_dispatch(dev, dims, regions, epilogue, Some(variant)).unwrap();
    run(dev, &[&d]).unwrap();
    let (a64, b64, bias64, saved64) = (widen(&a), widen(&b), widen(&bias_v), widen(&saved));
    let reference_epilogue = match rule {
        Some(rule) => reference::matmul::Epilogue::Backward {
            rule,
            saved: &saved64,
        },
        None => reference::matmul::Epilogue::Forward {
            bias: bias.then_some(bias64.as_slice()),
            activation,
        },
    };
    let (r, r_pre) = reference::matmul::fused(&a64, &b64, dims, reference_epilogue);
    let abs = |x: &[f32]| x.iter().map(|v| v.abs() as f64).collect::<Vec<_>>();
    let bound = reference::matmul::matmul(&abs(&a), &abs(&b), dims);
    let product_tol = |i: usize| {
        let bias_term = if bias { EPS * r_pre[i].abs() } else { 0.0 };
        GAMMA * dims.k as f64 * EPS * bound[i] + bias_term
    };
    let what = format!("{variant:?} {name} {dims:?}");
    assert_close_each(&what, &tc.to_vec().unwrap(), &r, |i, _| {
        let (x, y) = match rule {
            Some(_) => (saved64[i].abs(), r_pre[i].abs()),
            None => (r_pre[i].abs(), 0.0),
        };
        1.13 * product_tol(i) + 8.0 * EPS * (1.0 + x) * (1.0 + y)
    });
    if store {
        assert_close_each(
            &format!("{what} argument"),
            &tpre.to_vec().unwrap(),
            &r_pre,
            |i, _| product_tol(i),
        );
    }
}

#[test]
fn column_sums_beside_the_product_match_reference_for_every_variant() {
    // A weight gradient Xᵀ·dZ with its bias gradient Σ_rows dZ: one element, primes past
    // every tile, k past one panel of every variant, n across several column tiles.
    let dev = device();
    let shapes = [(1, 1, 1), (7, 31, 17), (130, 129, 40), (3, 300, 257)];
    for variant in variants() {
        for (t, &(trans_a, trans_b)) in TRANSPOSES.iter().enumerate() {
            for (s, &(m, n, k)) in shapes.iter().enumerate() {
                let dims = unbatched(m, n, k, trans_a, trans_b);
                let seed = (100 * t + s) as u64;
                let (a, b) = (
                    random(seed, dims.a_len(), 1.0),
                    random(seed + 1, dims.b_len(), 1.0),
                );
                let up = |x: &[f32]| Tensor::from_slice(&dev, &[x.len()], x).unwrap();
                let (ta, tb) = (up(&a), up(&b));
                let tc = Tensor::zeros(&dev, &[dims.c_len()]).unwrap();
                let sums = Tensor::zeros(&dev, &[n]).unwrap();
                let epilogue = Epilogue::ColumnSums {
                    sums: sums.buffer().into(),
                };
                let regions = [ta.buffer().into(), tb.buffer().into(), tc.buffer().into()];
                let d = fused_matmul_dispatch(&dev, &dims, regions, epilogue, Some(variant));
                run(&dev, &[&d.unwrap()]).unwrap();
                let what = format!("{variant:?} {dims:?}");
                assert_matches_reference(&what, &tc.to_vec().unwrap(), &a, &b, &dims);
                let (_, r_sums) = reference::matmul::fused(
                    &widen(&a),
                    &widen(&b),
                    &dims,
                    reference::matmul::Epilogue::ColumnSums,
                );
                // A sum of k terms in any order: within γ_k·Σ|b|.
                let abs: Vec<f64> = b.iter().map(|v| v.abs() as f64).collect();
                let sum_bound = reference::matmul::column_sums(&abs, &dims);
                assert_close_each(
                    &format!("{what} column sums"),
                    &sums.to_vec().unwrap(),
                    &r_sums,
                    |j, _| GAMMA * k as f64 * EPS * sum_bound[j],
                );
            }
        }
    }
}

#[test]
fn epilogues_that_are_not_activations_are_errors() {
    let dev = device();
    let t = Tensor::zeros(&dev, &[16]).unwrap();
    let (_, dims) = matmul_shape(&[4, 4], &[4, 4], false, false).unwrap();
    let r = || [t.buffer().into(), t.buffer().into(), t.buffer().into()];
    let scale = Epilogue::Forward {
        bias: None,
        activation: Some(UnaryOp::Scale(2.0)),
        pre: None,
    };
    let err = fused_matmul_dispatch(&dev, &dims, r(), scale, None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let add = Epilogue::Backward {
        rule: BinaryOp::Add,
        saved: t.buffer().into(),
    };
    let err = fused_matmul_dispatch(&dev, &dims, r(), add, None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // A saved value shorter than C.
    let short = Tensor::zeros(&dev, &[3]).unwrap();
    let rule = Epilogue::Backward {
        rule: BinaryOp::TanhBackward,
        saved: short.buffer().into(),
    };
    let err = fused_matmul_dispatch(&dev, &dims, r(), rule, None).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    // Column sums shorter than a row of C, and of a batched product.
    let sums = Epilogue::ColumnSums {
        sums: short.buffer().into(),
    };
    let err = fused_matmul_dispatch(&dev, &dims, r(), sums, None).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let (_, batched) = matmul_shape(&[2, 2, 2], &[2, 2], false, false).unwrap();
    let sums = Epilogue::ColumnSums {
        sums: t.buffer().into(),
    };
    let err = fused_matmul_dispatch(&dev, &batched, r(), sums, None).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn size_classes_follow_the_tiles_a_large_gpu_needs() {
    let class = |batch, m, n| {
        MatmulDims {
            batch,
            m,
            n,
            k: 64,
            trans_a: false,
            trans_b: false,
            a_batched: batch > 1,
            b_batched: false,
        }
        .class()
    };
    // A training step's products are small: 256×512 outputs fill 32 tiles of 64×64, a
    // weight gradient of 784×512 under 98.
    assert_eq!(class(1, 256, 512), MatmulClass::Small);
    assert_eq!(class(1, 784, 512), MatmulClass::Small);
    assert_eq!(class(1, 128, 64), MatmulClass::Small);
    assert_eq!(class(1, 256, 10), MatmulClass::Small);
    // 1024² fills 256 tiles of 64×64 but 64 of 128×128; 2048² fills 256 of 128×128.
    assert_eq!(class(1, 1024, 1024), MatmulClass::Medium);
    assert_eq!(class(1, 2048, 2048), MatmulClass::Large);
    // The batch counts: 128 items of 64×64 fill 128 tiles of 64×64.
    assert_eq!(class(127, 64, 64), MatmulClass::Small);
    assert_eq!(class(128, 64, 64), MatmulClass::Medium);
}
