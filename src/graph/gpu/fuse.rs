//! Fusion: chains of ops that the GPU plan runs as one kernel launch, found by pattern on the
//! graph (autodiff and the reference executor never see them: the graph keeps its ops, only
//! their launches merge).
//!
//! Three patterns, each a matmul and what its epilogue
//! ([`Epilogue`](crate::kernels::matmul::Epilogue)) does besides:
//! - forward: `matmul → add a bias (one value per column) → activation`, with either of the
//!   last two optional;
//! - backward: `matmul → an activation's backward rule` reading the product as the upstream
//!   gradient, e.g. dH = dZ·Wᵀ followed by tanh′ in a dense network's backward pass;
//! - column sums: a matmul op(A)·B beside a sum of B over its rows — a dense layer's weight
//!   gradient Xᵀ·dZ and its bias gradient Σ_rows dZ, which read the same dZ. One launch
//!   writes both values, so a layer's parameter gradients cost one launch and, in a packed
//!   gradient arena, one barrier.
//!
//! A chain fuses only when every value before its end feeds nothing but the next op of the
//! chain — except the argument of the activation, which the epilogue can also store for the
//! backward pass (ReLU and GELU read it) provided everything reading it comes after the
//! chain's end. Values the caller named as outputs are never left unstored, and a chain mixes
//! no parameter-only op with batch work (they are scheduled apart). The fused launch is
//! recorded where the chain's last op is; the others record nothing.

use crate::graph::layout::Placement;
use crate::graph::{Graph, Op, Value};
use crate::kernels::elementwise::{BinaryOp, Broadcast, UnaryOp};
use crate::kernels::reduce::{Axis, ReduceOp};
use std::collections::BTreeMap;

/// One fused chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chain {
    /// `matmul`, then optionally `bias` (an Add of a row vector), then optionally
    /// `activation` (a ReLU, tanh or GELU); at least one of the two.
    Forward {
        /// The matmul node.
        matmul: usize,
        /// The bias add, if any.
        bias: Option<usize>,
        /// The activation, if any.
        activation: Option<usize>,
    },
    /// `matmul`, then `rule`: an activation's backward rule whose upstream gradient is the
    /// product.
    Backward {
        /// The matmul node.
        matmul: usize,
        /// The backward-rule node.
        rule: usize,
    },
    /// `matmul` (unbatched, B untransposed) and `sums`, a sum over the rows of the same B:
    /// both values are stored, by one launch recorded at the later of the two.
    ColumnSums {
        /// The matmul node.
        matmul: usize,
        /// The reduce node summing B over its rows.
        sums: usize,
    },
}

impl Chain {
    /// The chain's nodes, in graph order.
    pub fn members(&self) -> Vec<usize> {
        match *self {
            Chain::Forward {
                matmul,
                bias,
                activation,
            } => std::iter::once(matmul)
                .chain(bias)
                .chain(activation)
                .collect(),
            Chain::Backward { matmul, rule } => vec![matmul, rule],
            Chain::ColumnSums { matmul, sums } => vec![matmul.min(sums), matmul.max(sums)],
        }
    }

    /// The matmul the chain starts with.
    pub fn matmul(&self) -> usize {
        match *self {
            Chain::Forward { matmul, .. }
            | Chain::Backward { matmul, .. }
            | Chain::ColumnSums { matmul, .. } => matmul,
        }
    }

    /// The node whose value is the product after the epilogue (C): the chain's end, or for
    /// column sums the matmul.
    pub fn product(&self) -> usize {
        match *self {
            Chain::ColumnSums { matmul, .. } => matmul,
            _ => self.end(),
        }
    }

    /// The last node, where the fused launch is recorded.
    pub fn end(&self) -> usize {
        *self.members().last().expect("a chain has a matmul")
    }

    /// The node whose value the epilogue stores besides the chain's result: the argument of
    /// the activation, when something else reads it.
    pub fn stored_before_end(&self, unstored: &[bool]) -> Option<usize> {
        let members = self.members();
        members[..members.len() - 1]
            .iter()
            .copied()
            .find(|&m| !unstored[m])
    }
}

/// The chains a plan fuses, and what that means for storage and scheduling.
#[derive(Clone, Debug, Default)]
pub(super) struct Fusion {
    /// The chains, by the node they are recorded at (their end).
    pub chains: BTreeMap<usize, Chain>,
    /// For each node: the node whose launch computes it (its chain's end, else itself).
    pub runs_at: Vec<usize>,
    /// For each node: its value lives only inside a fused kernel.
    pub unstored: Vec<bool>,
}

impl Fusion {
    /// No chain: every op runs on its own.
    pub fn none(graph: &Graph) -> Fusion {
        let n = graph.nodes().len();
        Fusion {
            chains: BTreeMap::new(),
            runs_at: (0..n).collect(),
            unstored: vec![false; n],
        }
    }

    /// Finds the chains of `graph`; `keep` are values the caller will read (always stored).
    /// Column sums join a product only where `column_sums_fit` says its k allows.
    pub fn find(graph: &Graph, keep: &[Value], column_sums_fit: impl Fn(usize) -> bool) -> Fusion {
        let nodes = graph.nodes();
        let n = nodes.len();
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in nodes.iter().enumerate() {
            for v in &node.inputs {
                readers[v.0].push(i);
            }
        }
        let mut kept = vec![false; n];
        for &v in keep {
            kept[v.0] = true;
        }
        let param_only = graph.param_only();
        let mut fusion = Fusion::none(graph);
        // The one reader of `v`, if it has exactly one and nobody else needs `v` stored.
        let sole_reader = |v: usize| match readers[v].as_slice() {
            [r] if !kept[v] => Some(*r),
            _ => None,
        };
        for (i, node) in nodes.iter().enumerate() {
            if !matches!(node.op, Op::MatMul { .. }) {
                continue;
            }
            let cols = *node.shape.last().expect("a matmul has a shape");
            let full = node.shape.iter().product::<usize>();
            let chain = match sole_reader(i).map(|r| (r, &nodes[r])) {
                Some((r, reader)) if is_bias_add(reader, i, cols) => {
                    let activation = activation_reading(graph, &readers, r);
                    Some(Chain::Forward {
                        matmul: i,
                        bias: Some(r),
                        activation,
                    })
                }
                Some((r, reader)) if is_backward_rule(reader, i, full) => {
                    Some(Chain::Backward { matmul: i, rule: r })
                }
                _ => activation_reading(graph, &readers, i).map(|a| Chain::Forward {
                    matmul: i,
                    bias: None,
                    activation: Some(a),
                }),
            };
            let Some(chain) = chain else { continue };
            let members = chain.members();
            if members.iter().any(|&m| param_only[m] != param_only[i]) {
                continue;
            }
            let end = chain.end();
            for &m in &members {
                fusion.runs_at[m] = end;
            }
            for &m in &members[..members.len() - 1] {
                fusion.unstored[m] = sole_reader(m).is_some();
            }
            fusion.chains.insert(end, chain);
        }
        for (r, node) in nodes.iter().enumerate() {
            let Some(matmul) = column_sums_partner(graph, &readers, r) else {
                continue;
            };
            let k = graph.shape(node.inputs[0])[0];
            let free = |j: usize| fusion.runs_at[j] == j && !fusion.chains.contains_key(&j);
            // Batch work only: it runs in graph order, where "after `end`" means later.
            if param_only[matmul] || param_only[r] || !free(matmul) || !column_sums_fit(k) {
                continue;
            }
            let chain = Chain::ColumnSums { matmul, sums: r };
            let end = chain.end();
            // The earlier of the two is computed late, at the later: nothing may read it before.
            if readers[matmul.min(r)].iter().any(|&x| x <= end) {
                continue;
            }
            fusion.runs_at[matmul] = end;
            fusion.runs_at[r] = end;
            fusion.chains.insert(end, chain);
        }
        fusion
    }

    /// Records the fusion in `placement` (which must be [`Placement::plain`] so far).
    pub fn place(&self, placement: &mut Placement) {
        placement.runs_at.clone_from(&self.runs_at);
        placement.unstored.clone_from(&self.unstored);
    }

    /// The nodes a run of the nodes marked `needed` must execute: a fused launch computes its
    /// whole chain, so one needed member needs the chain's end — and the end's inputs.
    pub fn expand(&self, graph: &Graph, needed: &[bool]) -> Vec<bool> {
        let mut run = needed.to_vec();
        for (i, &end) in self.runs_at.iter().enumerate() {
            if needed[i] {
                run[end] = true;
            }
        }
        for i in (0..run.len()).rev() {
            if run[i] {
                for v in &graph.nodes()[i].inputs {
                    run[v.0] = true;
                }
            }
        }
        run
    }
}

/// Whether `node` adds a bias of one value per column to the product of node `product` (its
/// left operand), the product having `cols` columns.
fn is_bias_add(node: &crate::graph::Node, product: usize, cols: usize) -> bool {
    matches!(node.op, Op::Binary { op: BinaryOp::Add, b_from } if b_from == Broadcast::row_vector(cols))
        && node.inputs[0].0 == product
        && node.inputs[1].0 != product
}

/// Whether `node` is an activation's backward rule reading node `product` (of `len` elements)
/// as its upstream gradient, element for element.
fn is_backward_rule(node: &crate::graph::Node, product: usize, len: usize) -> bool {
    matches!(
        node.op,
        Op::Binary {
            op: BinaryOp::ReluBackward | BinaryOp::TanhBackward | BinaryOp::GeluBackward,
            b_from,
        } if b_from == Broadcast::full(len)
    ) && node.inputs[1].0 == product
        && node.inputs[0].0 != product
}

/// The matmul whose op(B) is what node `r` sums over its rows, if `r` is such a sum (one value
/// per column of a 2-D value B) and a matmul reads that B untransposed in an unbatched product.
fn column_sums_partner(graph: &Graph, readers: &[Vec<usize>], r: usize) -> Option<usize> {
    let nodes = graph.nodes();
    let node = &nodes[r];
    let sum_over_rows = Op::Reduce {
        op: ReduceOp::Sum,
        axis: Axis::Cols,
    };
    if node.op != sum_over_rows {
        return None;
    }
    // B itself, or a reshape of B to the same shape.
    let mut b = node.inputs[0];
    if nodes[b.0].op == Op::Reshape && graph.shape(nodes[b.0].inputs[0]) == graph.shape(b) {
        b = nodes[b.0].inputs[0];
    }
    if graph.shape(b).len() != 2 {
        return None;
    }
    readers[b.0].iter().copied().find(|&m| {
        matches!(nodes[m].op, Op::MatMul { trans_b: false, .. })
            && nodes[m].inputs[1] == b
            && nodes[m].shape.len() == 2
            && graph.shape(nodes[m].inputs[0]).len() == 2
    })
}

/// The activation (ReLU, tanh or GELU) that reads node `v`, if there is exactly one and every
/// other reader of `v` comes after it (so the fused launch, recorded at the activation, has
/// stored `v` before they read it).
fn activation_reading(graph: &Graph, readers: &[Vec<usize>], v: usize) -> Option<usize> {
    let is_activation = |r: usize| {
        matches!(
            graph.nodes()[r].op,
            Op::Unary(UnaryOp::Relu | UnaryOp::Tanh | UnaryOp::Gelu)
        )
    };
    let mut activations = readers[v].iter().copied().filter(|&r| is_activation(r));
    let a = activations.next()?;
    if activations.next().is_some() {
        return None;
    }
    readers[v].iter().all(|&r| r >= a).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Init;

    /// x·W + b → act, and its backward through Adam-less `backward`: the forward chain and
    /// the backward chain of the hidden layer fuse.
    fn two_layer(act: UnaryOp) -> (Graph, Value, Value) {
        let mut g = Graph::new();
        let x = g.input("x", &[5, 3]).unwrap();
        let w0 = g.param("w0", &[3, 4], Init::Normal { std: 0.5 }).unwrap();
        let b0 = g.param("b0", &[4], Init::Zeros).unwrap();
        let w1 = g.param("w1", &[4, 2], Init::Normal { std: 0.5 }).unwrap();
        let z = g.matmul(x, w0, false, false).unwrap();
        let zb = g.add(z, b0).unwrap();
        let h = g.unary(act, zb).unwrap();
        let y = g.matmul(h, w1, false, false).unwrap();
        let flat = g.reshape(y, &[1, 10]).unwrap();
        let loss = g
            .reduce(
                crate::kernels::reduce::ReduceOp::SumSquares,
                crate::kernels::reduce::Axis::Rows,
                flat,
            )
            .unwrap();
        g.backward(loss).unwrap();
        (g, zb, loss)
    }

    #[test]
    fn tanh_layer_fuses_forward_and_backward_and_stores_nothing_extra() {
        let (g, zb, loss) = two_layer(UnaryOp::Tanh);
        let f = Fusion::find(&g, &[loss], |_| true);
        let forward = f
            .chains
            .values()
            .find(|c| matches!(c, Chain::Forward { .. }));
        let Some(&Chain::Forward {
            matmul,
            bias: Some(bias),
            activation: Some(act),
        }) = forward
        else {
            panic!("no forward chain: {:?}", f.chains)
        };
        assert_eq!(bias, zb.index());
        // tanh's backward reads its output, so neither the product nor z + b is stored.
        assert!(f.unstored[matmul] && f.unstored[bias] && !f.unstored[act]);
        assert_eq!((f.runs_at[matmul], f.runs_at[bias]), (act, act));
        assert!(
            f.chains
                .values()
                .any(|c| matches!(c, Chain::Backward { .. })),
            "{:?}",
            f.chains
        );
    }

    #[test]
    fn a_bias_gradient_joins_its_weight_gradient() {
        let (g, _, loss) = two_layer(UnaryOp::Tanh);
        let nodes = g.nodes();
        let w0 = g.find("w0").unwrap().index();
        let b0 = g.find("b0").unwrap().index();
        let f = Fusion::find(&g, &[loss], |_| true);
        let Some(&Chain::ColumnSums { matmul, sums }) = f
            .chains
            .values()
            .find(|c| matches!(c, Chain::ColumnSums { .. }))
        else {
            panic!("no column sums: {:?}", f.chains)
        };
        // dW0 = xᵀ·dZ and db0 = Σ_rows dZ, the gradients the graph accumulates for w0 and b0.
        assert_eq!(nodes[matmul].shape, nodes[w0].shape);
        assert_eq!(nodes[sums].shape, nodes[b0].shape);
        assert!(!f.unstored[matmul] && !f.unstored[sums]);
        let end = matmul.max(sums);
        assert_eq!((f.runs_at[matmul], f.runs_at[sums]), (end, end));
        // Where the adapter cannot fit the sums, the two run apart.
        let apart = Fusion::find(&g, &[loss], |_| false);
        assert!(apart
            .chains
            .values()
            .all(|c| !matches!(c, Chain::ColumnSums { .. })));
    }

    #[test]
    fn relu_layer_stores_its_argument_for_the_backward_pass() {
        let (g, zb, loss) = two_layer(UnaryOp::Relu);
        let f = Fusion::find(&g, &[loss], |_| true);
        let chain = f.chains[&f.runs_at[zb.index()]];
        assert!(!f.unstored[zb.index()], "ReluBackward reads z + b");
        assert_eq!(chain.stored_before_end(&f.unstored), Some(zb.index()));
    }

    #[test]
    fn kept_values_and_shared_products_are_not_fused_away() {
        let (g, zb, loss) = two_layer(UnaryOp::Tanh);
        let f = Fusion::find(&g, &[loss, zb], |_| true);
        assert!(!f.unstored[zb.index()]);
        // A product read twice is stored: no chain starts at it.
        let mut g = Graph::new();
        let x = g.input("x", &[2, 2]).unwrap();
        let w = g.param("w", &[2, 2], Init::Zeros).unwrap();
        let p = g.matmul(x, w, false, false).unwrap();
        let t = g.tanh(p).unwrap();
        let s = g.add(p, t).unwrap();
        let f = Fusion::find(&g, &[s], |_| true);
        assert!(f.chains.is_empty() || !f.unstored[p.index()]);
    }

    #[test]
    fn expand_runs_whole_chains_and_their_inputs() {
        let (g, zb, loss) = two_layer(UnaryOp::Relu);
        let f = Fusion::find(&g, &[loss], |_| true);
        let mut needed = vec![false; g.nodes().len()];
        needed[zb.index()] = true;
        let run = f.expand(&g, &needed);
        assert!(run[f.runs_at[zb.index()]]);
        for v in &g.nodes()[f.runs_at[zb.index()]].inputs {
            assert!(run[v.index()]);
        }
    }
}
