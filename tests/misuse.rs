//! Misuse gives an error that names what was wrong, never a panic: values of another graph
//! handed to the graph builder, and optimizer hyper-parameters that would silently turn every
//! parameter into NaN (or never train). No GPU work: graphs are only built.

use eigengrad::graph::{Graph, Init, Value};
use eigengrad::kernels::elementwise::{BinaryOp, UnaryOp};
use eigengrad::kernels::reduce::{Axis, ReduceOp};
use eigengrad::kernels::spectral::SpectralFn;
use eigengrad::optim::{Adam, Sgd};
use eigengrad::Error;

/// `result` is `InvalidArgument` whose message names `op`.
fn assert_invalid<T: std::fmt::Debug>(what: &str, op: &str, result: eigengrad::Result<T>) {
    match result {
        Err(Error::InvalidArgument(msg)) => {
            assert!(
                msg.contains(op),
                "{what}: message {msg:?} does not name {op}"
            )
        }
        other => panic!("{what}: expected InvalidArgument naming {op}, got {other:?}"),
    }
}

/// A value out of `g`'s range: the last value of a larger graph.
fn foreign_value() -> Value {
    let mut other = Graph::new();
    for k in 0..20 {
        other.input(&format!("x{k}"), &[3, 3]).unwrap();
    }
    other.value(19).unwrap()
}

/// Every builder function that takes a value rejects one from another (larger) graph, in
/// either operand position, and the graph is left unchanged.
#[test]
fn graph_builder_rejects_values_of_another_graph() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 3]).unwrap();
    let w = g.param("w", &[3, 3], Init::Identity { gain: 1.0 }).unwrap();
    let f = foreign_value();
    let nodes = g.nodes().len();

    assert_invalid("matmul a", "MatMul", g.matmul(f, w, false, false));
    assert_invalid("matmul b", "MatMul", g.matmul(x, f, false, false));
    for op in [
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Gelu,
        UnaryOp::Scale(2.0),
    ] {
        assert_invalid(&format!("{op:?}"), "Unary", g.unary(op, f));
    }
    assert_invalid("relu", "Unary", g.relu(f));
    assert_invalid("tanh", "Unary", g.tanh(f));
    assert_invalid("gelu", "Unary", g.gelu(f));
    assert_invalid("scale", "Unary", g.scale(f, 2.0));
    for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::ReluBackward] {
        assert_invalid(&format!("{op:?} a"), "Binary", g.binary(op, f, x));
        assert_invalid(&format!("{op:?} b"), "Binary", g.binary(op, x, f));
    }
    assert_invalid("add", "Binary", g.add(x, f));
    assert_invalid("sub", "Binary", g.sub(f, x));
    assert_invalid("mul", "Binary", g.mul(x, f));
    assert_invalid("reduce", "Reduce", g.reduce(ReduceOp::Sum, Axis::Rows, f));
    assert_invalid("mean_all", "MeanAll", g.mean_all(f));
    assert_invalid("transpose", "Transpose", g.transpose(f));
    assert_invalid("reshape", "Reshape", g.reshape(f, &[9]));
    assert_invalid("select", "Select", g.select(f, 0));
    assert_invalid("stack first", "Stack", g.stack(&[f, x]));
    assert_invalid("stack later", "Stack", g.stack(&[x, f]));
    assert_invalid("mul_rows a", "MulRows", g.mul_rows(f, x));
    assert_invalid("mul_rows b", "MulRows", g.mul_rows(x, f));
    assert_invalid("softmax_xent", "SoftmaxXent", g.softmax_xent(f, x));
    assert_invalid("softmax_xent t", "SoftmaxXent", g.softmax_xent(x, f));
    assert_invalid(
        "softmax_cross_entropy",
        "SoftmaxXent",
        g.softmax_cross_entropy(x, f),
    );
    assert_invalid(
        "spectral_fn",
        "SpectralFn",
        g.spectral_fn(f, SpectralFn::Orthogonal),
    );
    assert_invalid("ema state", "Ema", g.ema(f, x, 0.1));
    assert_invalid("ema value", "Ema", g.ema(w, f, 0.1));
    assert_invalid("mse a", "Mse", g.mse(f, x));
    assert_invalid("mse b", "Mse", g.mse(x, f));
    assert_invalid("backward", "backward", g.backward(f));
    assert_invalid("set_name", "set_name", g.set_name(f, "renamed"));
    assert_invalid("try_node", "node", g.try_node(f));
    assert_invalid("try_shape", "shape", g.try_shape(f));
    assert_invalid(
        "Sgd::minimize",
        "backward",
        Sgd::new(0.1).minimize(&mut g, f),
    );
    assert_invalid(
        "Adam::minimize",
        "backward",
        Adam::new(0.1).minimize(&mut g, f),
    );
    assert_eq!(g.nodes().len(), nodes, "a rejected call added nodes");

    // The graph's own values still work.
    assert_eq!(g.try_shape(x).unwrap(), &[3, 3]);
    assert_eq!(g.try_node(w).unwrap().name, "w");
    g.set_name(w, "weight").unwrap();
    assert_eq!(g.find("weight"), Some(w));
}

/// Slices past the end of a stack, stacks of values of different shapes or of none, and
/// per-row factors that do not match the rows are shape errors naming the op.
#[test]
fn select_stack_and_per_row_products_check_their_shapes() {
    let mut g = Graph::new();
    let stack = g.input("stack", &[3, 2, 4]).unwrap();
    let a = g.input("a", &[2, 4]).unwrap();
    let b = g.input("b", &[4, 2]).unwrap();
    let rows = g.input("rows", &[2]).unwrap();
    let shape_error = |what: &str, op: &str, r: eigengrad::Result<Value>| match r {
        Err(Error::Shape { op: o, .. }) => assert_eq!(o, op, "{what}"),
        other => panic!("{what}: expected a shape error of {op}, got {other:?}"),
    };
    shape_error("past the end", "Select", g.select(stack, 3));
    shape_error("mixed shapes", "Stack", g.stack(&[a, b]));
    shape_error("too few factors", "MulRows", g.mul_rows(b, rows));
    assert_invalid("an empty stack", "Stack", g.stack(&[]));
    // The valid ones.
    let slice = g.select(stack, 2).unwrap();
    assert_eq!(g.try_shape(slice).unwrap(), [2, 4]);
    let two = g.stack(&[a, slice]).unwrap();
    assert_eq!(g.try_shape(two).unwrap(), [2, 2, 4]);
    let scaled = g.mul_rows(a, rows).unwrap();
    assert_eq!(g.try_shape(scaled).unwrap(), [2, 4]);
}

/// A value without output (an optimizer update) cannot be an operand.
#[test]
fn values_without_output_are_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 2]).unwrap();
    let w = g.param("w", &[2, 2], Init::Zeros).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let loss = g.mean_all(y).unwrap();
    Sgd::new(0.1).minimize(&mut g, loss).unwrap();
    let update = g.value(g.nodes().len() - 1).unwrap();
    assert!(g.try_shape(update).unwrap().is_empty());
    assert_invalid("relu of an update", "Unary", g.relu(update));
    assert_invalid("mse of an update", "Mse", g.mse(update, x));
    assert_invalid("ema momentum", "Ema", g.ema(w, y, f32::NAN));
    assert_invalid("ema momentum", "Ema", g.ema(w, y, 1.5));
}

/// A one-layer regression graph to minimise.
fn regression() -> (Graph, Value) {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 3]).unwrap();
    let t = g.input("t", &[4, 2]).unwrap();
    let w = g.param("w", &[3, 2], Init::Normal { std: 0.5 }).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let loss = g.mse(y, t).unwrap();
    (g, loss)
}

/// `minimize` with a bad hyper-parameter is `InvalidArgument` naming it, and appends nothing.
fn assert_rejected(what: &str, minimize: impl Fn(&mut Graph, Value) -> eigengrad::Result<()>) {
    let (mut g, loss) = regression();
    let nodes = g.nodes().len();
    assert_invalid(what, what, minimize(&mut g, loss));
    assert_eq!(g.nodes().len(), nodes, "{what}: nodes were appended");
}

const NOT_FINITE: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

#[test]
fn sgd_rejects_bad_hyper_parameters() {
    let with = |edit: &dyn Fn(&mut Sgd)| {
        let mut sgd = Sgd::new(0.1);
        edit(&mut sgd);
        move |g: &mut Graph, loss| sgd.minimize(g, loss).map(|_| ())
    };
    for bad in NOT_FINITE.into_iter().chain([-0.1]) {
        assert_rejected("learning rate", with(&|s| s.lr = bad));
        assert_rejected("weight decay", with(&|s| s.weight_decay = bad));
        assert_rejected("clip norm", with(&|s| s.clip_norm = Some(bad)));
    }
    for bad in NOT_FINITE.into_iter().chain([-0.1, 1.0, 1.5]) {
        assert_rejected("momentum", with(&|s| s.momentum = bad));
    }
    assert_rejected("clip norm", with(&|s| s.clip_norm = Some(0.0)));
    // The edges that are allowed.
    let (mut g, loss) = regression();
    let mut sgd = Sgd::new(0.0);
    sgd.momentum = 0.0;
    sgd.clip_norm = Some(1e-3);
    sgd.minimize(&mut g, loss).unwrap();
}

#[test]
fn adam_rejects_bad_hyper_parameters() {
    let with = |edit: &dyn Fn(&mut Adam)| {
        let mut adam = Adam::new(1e-3);
        edit(&mut adam);
        move |g: &mut Graph, loss| adam.minimize(g, loss).map(|_| ())
    };
    for bad in NOT_FINITE.into_iter().chain([-1e-3]) {
        assert_rejected("learning rate", with(&|a| a.lr = bad));
        assert_rejected("eps", with(&|a| a.eps = bad));
        assert_rejected("weight decay", with(&|a| a.weight_decay = bad));
        assert_rejected("clip norm", with(&|a| a.clip_norm = Some(bad)));
    }
    for bad in NOT_FINITE.into_iter().chain([-0.1, 1.0, 2.0]) {
        assert_rejected("beta1", with(&|a| a.beta1 = bad));
        assert_rejected("beta2", with(&|a| a.beta2 = bad));
    }
    assert_rejected("eps", with(&|a| a.eps = 0.0));
    let (mut g, loss) = regression();
    let mut adam = Adam::new(0.0);
    (adam.beta1, adam.beta2, adam.weight_decay) = (0.0, 0.0, 0.0);
    adam.minimize(&mut g, loss).unwrap();
}
