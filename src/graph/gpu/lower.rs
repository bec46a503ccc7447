//! Lowering: the one place where a graph op becomes kernel launches. [`Lowering::lower`] is
//! the table — one arm per op family, each a short function that builds the family's
//! dispatches over the plan's buffers; a fused chain ([`Fusion`]) becomes one launch at its
//! last node and nothing at the others, and the packed updates of a rule ([`Packing`]) one
//! launch at their first. Everything is built here, once, at compile time; a step only
//! records what this produced.

use super::alloc::{scratch, Buffers};
use super::checks;
use super::fuse::{Chain, Fusion};
use super::pack::Packing;
use super::solve::{batch_n, Solves};
use crate::device::Device;
use crate::error::Result;
use crate::graph::status::StepWatch;
use crate::graph::{rows_cols, Graph, Node, Op, Value};
use crate::kernels::matmul::{
    fused_matmul_dispatch, matmul_dispatch, matmul_shape, Epilogue, MatmulDims,
};
use crate::kernels::optim::StatusSlot;
use crate::kernels::reduce::{Axis, ReduceOp};
use crate::kernels::spectral::SpectralFn;
use crate::kernels::{self, Dispatch, Region};

/// One item of a step's recording.
pub(super) enum Recorded {
    /// A kernel launch inside a compute pass.
    Dispatch(Dispatch),
    /// An eigendecomposition (index into the plan's solves): copies and passes of its own.
    Solve(usize),
}

/// What lowering needs: the device, the graph, the buffers, the solves (a spectral function
/// that no hoisted solve serves gets its own here), the plan's fused chains and packed
/// updates, what the step watches (the status slots of the updates and running averages),
/// and the scratch it creates.
pub(super) struct Lowering<'a> {
    device: &'a Device,
    graph: &'a Graph,
    buffers: &'a Buffers,
    solves: &'a mut Solves,
    fusion: &'a Fusion,
    packing: &'a Packing,
    watch: &'a StepWatch,
    /// Scratch buffers the lowered dispatches bind; the plan keeps them alive.
    pub scratch: Vec<wgpu::Buffer>,
}

impl<'a> Lowering<'a> {
    /// A lowering of `graph` over `buffers` and `solves`, with `fusion` and `packing`,
    /// watched as `watch` says.
    pub fn new(
        device: &'a Device,
        graph: &'a Graph,
        buffers: &'a Buffers,
        solves: &'a mut Solves,
        fusion: &'a Fusion,
        packing: &'a Packing,
        watch: &'a StepWatch,
    ) -> Lowering<'a> {
        Lowering {
            device,
            graph,
            buffers,
            solves,
            fusion,
            packing,
            watch,
            scratch: Vec::new(),
        }
    }

    /// Lowers every node, in graph order: the launches of node i are element i.
    pub fn lower_all(&mut self) -> Result<Vec<Vec<Recorded>>> {
        (0..self.graph.nodes().len())
            .map(|i| self.lower(i))
            .collect()
    }

    /// The launches of node `i`, in the order they run.
    pub fn lower(&mut self, i: usize) -> Result<Vec<Recorded>> {
        let graph = self.graph;
        let node = &graph.nodes()[i];
        if self.fusion.runs_at[i] != i {
            return Ok(Vec::new());
        }
        if let Some(chain) = self.fusion.chains.get(&i) {
            return Ok(vec![Recorded::Dispatch(self.fused(chain)?)]);
        }
        let launches = match &node.op {
            Op::Input | Op::Param { .. } | Op::Reshape => Vec::new(),
            Op::MatMul { trans_a, trans_b } => self.matmul(node, i, *trans_a, *trans_b)?,
            Op::Unary(_) | Op::Binary { .. } | Op::Expand { .. } => self.elementwise(node, i)?,
            Op::Reduce { op, axis } => self.reduce(node, i, *op, *axis)?,
            Op::Transpose => self.transpose(node, i)?,
            Op::Select { index } => self.select(node, i, *index)?,
            Op::Stack => self.stack(node, i)?,
            Op::SoftmaxXent | Op::SoftmaxXentBackward => self.softmax(node, i)?,
            Op::Dropout { rate, seed } => self.dropout(node, i, *rate, *seed)?,
            Op::LayerNorm { .. } | Op::LayerNormBackward { .. } => self.norm(node, i)?,
            Op::SpectralFn(f) => return self.spectral_fn(node, i, *f),
            Op::SpectralFnBackward(f) => self.spectral_fn_backward(node, i, *f)?,
            Op::Ema { .. } | Op::ClipGradients { .. } | Op::Update(_) => self.optimizer(node, i)?,
        };
        Ok(launches.into_iter().map(Recorded::Dispatch).collect())
    }

    /// The region of value `v`.
    fn buffer(&self, v: Value) -> Result<Region<'a>> {
        self.buffers.value(v)
    }

    /// The region of input `k` of `node`.
    fn input(&self, node: &Node, k: usize) -> Result<Region<'a>> {
        self.buffer(node.inputs[k])
    }

    /// The output region of node `i`.
    fn out(&self, i: usize) -> Result<Region<'a>> {
        self.buffer(Value(i))
    }

    /// The shape of input `k` of `node`.
    fn shape(&self, node: &Node, k: usize) -> &'a [usize] {
        self.graph.shape(node.inputs[k])
    }

    /// C = op(A)·op(B).
    fn matmul(&self, node: &Node, i: usize, ta: bool, tb: bool) -> Result<Vec<Dispatch>> {
        let (_, dims) = matmul_shape(self.shape(node, 0), self.shape(node, 1), ta, tb)?;
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        Ok(vec![matmul_dispatch(
            self.device,
            &dims,
            a,
            b,
            self.out(i)?,
        )?])
    }

    /// A fused chain: its matmul with the chain's other ops in the epilogue, writing the
    /// chain's last value (and the activation's argument where the chain stores it).
    fn fused(&self, chain: &Chain) -> Result<Dispatch> {
        let graph = self.graph;
        let node = &graph.nodes()[chain.matmul()];
        let Op::MatMul { trans_a, trans_b } = node.op else {
            unreachable!("a chain starts at a matmul")
        };
        let (_, dims) = matmul_shape(self.shape(node, 0), self.shape(node, 1), trans_a, trans_b)?;
        let epilogue = match *chain {
            Chain::Forward {
                bias, activation, ..
            } => Epilogue::Forward {
                bias: bias.map(|b| self.input(&graph.nodes()[b], 1)).transpose()?,
                activation: activation.map(|a| match graph.nodes()[a].op {
                    Op::Unary(u) => u,
                    _ => unreachable!("a chain's activation is a unary op"),
                }),
                pre: chain
                    .stored_before_end(&self.fusion.unstored)
                    .map(|v| self.out(v))
                    .transpose()?,
            },
            Chain::Backward { rule, .. } => {
                let rule_node = &graph.nodes()[rule];
                let Op::Binary { op, .. } = rule_node.op else {
                    unreachable!("a backward chain ends in a binary rule")
                };
                Epilogue::Backward {
                    rule: op,
                    saved: self.input(rule_node, 0)?,
                }
            }
            Chain::ColumnSums { sums, .. } => Epilogue::ColumnSums {
                sums: self.out(sums)?,
            },
        };
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        let c = self.out(chain.product())?;
        fused_matmul_dispatch(self.device, &dims, [a, b, c], epilogue, None)
    }

    /// Unary maps, binary maps with broadcasting, and scaled broadcasts.
    fn elementwise(&self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        use kernels::elementwise::{binary_dispatch, expand_dispatch, unary_dispatch};
        let (x, out) = (self.input(node, 0)?, self.out(i)?);
        let n = node.shape.iter().product::<usize>();
        let d = match &node.op {
            Op::Unary(op) => unary_dispatch(self.device, *op, x, out, n)?,
            Op::Binary { op, b_from } => {
                binary_dispatch(self.device, *op, x, self.input(node, 1)?, out, n, *b_from)?
            }
            Op::Expand { from, alpha } => expand_dispatch(self.device, x, out, n, *from, *alpha)?,
            other => unreachable!("{} is not elementwise", other.name()),
        };
        Ok(vec![d])
    }

    /// Sums, means, maxima or sums of squares along rows or columns.
    fn reduce(&self, node: &Node, i: usize, op: ReduceOp, axis: Axis) -> Result<Vec<Dispatch>> {
        let (rows, cols) = rows_cols(self.shape(node, 0));
        let (x, out) = (self.input(node, 0)?, self.out(i)?);
        Ok(vec![kernels::reduce::reduce_dispatch(
            self.device,
            op,
            axis,
            x,
            out,
            rows,
            cols,
        )?])
    }

    /// Slice `index` of a stack: nothing where the layout reads it in place, else a copy.
    fn select(&mut self, node: &Node, i: usize, index: usize) -> Result<Vec<Dispatch>> {
        let n = node.shape.iter().product::<usize>();
        let (x, out) = (self.input(node, 0)?, self.out(i)?);
        let start = index * n;
        if in_place(x, start, out) {
            return Ok(Vec::new());
        }
        self.copy(x, start, out, 0, n)
    }

    /// A stack: a copy of every input that its op did not write into its slot already.
    fn stack(&mut self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        let n = self.shape(node, 0).iter().product::<usize>();
        let out = self.out(i)?;
        let mut launches = Vec::new();
        for k in 0..node.inputs.len() {
            let x = self.input(node, k)?;
            if !in_place(out, k * n, x) {
                launches.extend(self.copy(x, 0, out, k * n, n)?);
            }
        }
        Ok(launches)
    }

    /// Copies `n` elements of `x` from `src_offset` into `out` from `dst_offset`: one launch,
    /// or two through a scratch buffer where both live in one buffer (an arena), which one
    /// launch may not both read and write.
    fn copy(
        &mut self,
        x: Region<'a>,
        src_offset: usize,
        out: Region<'a>,
        dst_offset: usize,
        n: usize,
    ) -> Result<Vec<Dispatch>> {
        use kernels::elementwise::copy_dispatch;
        if x.buffer() != out.buffer() {
            return Ok(vec![copy_dispatch(
                self.device,
                x,
                src_offset,
                out,
                dst_offset,
                n,
            )?]);
        }
        let between = scratch(self.device, "copy between ranges of one buffer", n)?;
        let launches = vec![
            copy_dispatch(self.device, x, src_offset, &between, 0, n)?,
            copy_dispatch(self.device, &between, 0, out, dst_offset, n)?,
        ];
        self.scratch.push(between);
        Ok(launches)
    }

    /// Swaps the last two dimensions.
    fn transpose(&self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        let s = self.shape(node, 0);
        let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
        let batch = s.iter().product::<usize>() / (rows * cols);
        let (x, out) = (self.input(node, 0)?, self.out(i)?);
        Ok(vec![kernels::transpose::transpose_dispatch(
            self.device,
            x,
            out,
            batch,
            rows,
            cols,
        )?])
    }

    /// Softmax cross-entropy and its gradient w.r.t. the logits.
    fn softmax(&self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        use kernels::softmax::{softmax_xent_backward_dispatch, softmax_xent_dispatch};
        let (rows, classes) = rows_cols(self.shape(node, 0));
        let (logits, targets, out) = (self.input(node, 0)?, self.input(node, 1)?, self.out(i)?);
        let d = if node.op == Op::SoftmaxXent {
            softmax_xent_dispatch(self.device, logits, targets, out, rows, classes)?
        } else {
            let dloss = self.input(node, 2)?;
            softmax_xent_backward_dispatch(self.device, logits, targets, dloss, out, rows, classes)?
        };
        Ok(vec![d])
    }

    /// Dropout with the mask of the step whose count the hyperparameter words hold.
    fn dropout(&self, node: &Node, i: usize, rate: f32, seed: u32) -> Result<Vec<Dispatch>> {
        let n = node.shape.iter().product();
        let (x, out, hyper) = (self.input(node, 0)?, self.out(i)?, &self.buffers.hyper);
        Ok(vec![kernels::dropout::dropout_dispatch(
            self.device,
            x,
            out,
            hyper,
            n,
            rate,
            seed,
        )?])
    }

    /// Layer normalisation per row and its gradient.
    fn norm(&self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        use kernels::norm::{layer_norm_backward_dispatch, layer_norm_dispatch};
        let (rows, cols) = rows_cols(self.shape(node, 0));
        let (x, out) = (self.input(node, 0)?, self.out(i)?);
        let d = match node.op {
            Op::LayerNorm { eps } => layer_norm_dispatch(self.device, x, out, rows, cols, eps)?,
            Op::LayerNormBackward { eps } => {
                let dy = self.input(node, 1)?;
                layer_norm_backward_dispatch(self.device, x, dy, out, rows, cols, eps)?
            }
            ref other => unreachable!("{} is not a normalisation", other.name()),
        };
        Ok(vec![d])
    }

    /// H = (V·diag(f(λ)))·Vᵀ from the node's solve, preceded by the solve itself when the node
    /// has one of its own (a hoisted solve runs ahead of the step instead).
    fn spectral_fn(&mut self, node: &Node, i: usize, f: SpectralFn) -> Result<Vec<Recorded>> {
        let (batch, n) = batch_n(&node.shape);
        let (k, own) = self
            .solves
            .serving(self.device, self.graph, self.buffers, i)?;
        let (_, member) = self.solves.member(i)?;
        let scaled = scratch(self.device, "spectral scaled vectors", batch * n * n)?;
        let launches = [
            kernels::spectral::scale_columns_dispatch(
                self.device,
                f,
                &member.values,
                &member.vectors,
                &scaled,
                batch,
                n,
            )?,
            matmul_dispatch(
                self.device,
                &square_dims(batch, n, false, true),
                &scaled,
                &member.vectors,
                self.out(i)?,
            )?,
        ];
        self.scratch.push(scaled);
        let solve = own.then_some(Recorded::Solve(k));
        Ok(solve
            .into_iter()
            .chain(launches.into_iter().map(Recorded::Dispatch))
            .collect())
    }

    /// dG = V·(Lw ∘ sym(Vᵀ·dH·V))·Vᵀ with the eigenpairs of the forward node (input 1).
    fn spectral_fn_backward(
        &mut self,
        node: &Node,
        i: usize,
        f: SpectralFn,
    ) -> Result<Vec<Dispatch>> {
        let (batch, n) = batch_n(&node.shape);
        let (_, member) = self.solves.member(node.inputs[1].0)?;
        let (values, v) = (Region::from(&member.values), Region::from(&member.vectors));
        let t1 = scratch(self.device, "spectral backward scratch", batch * n * n)?;
        let t2 = scratch(self.device, "spectral backward scratch", batch * n * n)?;
        let (r1, r2) = (Region::from(&t1), Region::from(&t2));
        let mm = |ta, tb, a: Region<'_>, b: Region<'_>, c: Region<'_>| {
            matmul_dispatch(self.device, &square_dims(batch, n, ta, tb), a, b, c)
        };
        let dh = self.input(node, 0)?;
        // S = Vᵀ·dH·V, P = Lw ∘ sym(S), dG = V·P·Vᵀ.
        let launches = vec![
            mm(false, false, dh, v, r1)?,
            mm(true, false, v, r1, r2)?,
            kernels::spectral::loewner_product_dispatch(self.device, f, values, r2, r1, batch, n)?,
            mm(false, false, v, r1, r2)?,
            mm(false, true, r2, v, self.out(i)?)?,
        ];
        self.scratch.extend([t1, t2]);
        Ok(launches)
    }

    /// The slot in the step status where node `i` (an update or a running average) records
    /// itself.
    fn status_slot(&self, i: usize) -> Result<StatusSlot<'a>> {
        Ok(StatusSlot {
            buffer: &self.buffers.status,
            slot: checks::status_slot(self.graph, self.watch, i)?,
        })
    }

    /// In-place ops on resident tensors: running averages (a check of the new value, then the
    /// average, which a finding skips), gradient clipping (the squared norm of each packed
    /// group's gradient arena and of every other gradient, then the scale), optimizer updates
    /// (one launch per packed group, at its first update; one per update that is not packed).
    /// Averages and updates record in the step status.
    fn optimizer(&mut self, node: &Node, i: usize) -> Result<Vec<Dispatch>> {
        use kernels::finite::finite_check_dispatch;
        use kernels::optim::{
            clip_dispatch, ema_dispatch, packed_update_dispatch, sumsq_dispatch, sumsq_parts,
            update_dispatch,
        };
        let device = self.device;
        let hyper = Region::from(&self.buffers.hyper);
        let len = |v: Value| self.graph.shape(v).iter().product::<usize>();
        Ok(match &node.op {
            Op::Ema { momentum } => {
                let (state, value) = (self.input(node, 0)?, self.input(node, 1)?);
                let (status, n) = (self.status_slot(i)?, len(node.inputs[0]));
                vec![
                    finite_check_dispatch(device, value, status.buffer, n, status.slot)?,
                    ema_dispatch(device, state, value, status, n, *momentum)?,
                ]
            }
            Op::ClipGradients { max_norm } => {
                // (gradient region, elements) of each sum of squares.
                let mut sums: Vec<(Region<'a>, usize)> = Vec::new();
                let mut covered = vec![false; node.inputs.len()];
                for g in &self.packing.groups {
                    let grads: Vec<Value> = g
                        .updates
                        .iter()
                        .map(|&u| self.graph.nodes()[u].inputs[1])
                        .collect();
                    let inside: Vec<usize> = grads
                        .iter()
                        .filter_map(|gv| node.inputs.iter().position(|v| v == gv))
                        .collect();
                    if inside.len() == grads.len() {
                        inside.iter().for_each(|&k| covered[k] = true);
                        let arena = self.buffers.arena_of(grads[0])?;
                        sums.push((arena, g.len));
                    }
                }
                for (k, &v) in node.inputs.iter().enumerate() {
                    if !covered[k] {
                        sums.push((self.buffer(v)?, len(v)));
                    }
                }
                let slots: usize = sums.iter().map(|&(_, n)| sumsq_parts(n)).sum();
                let norms = scratch(device, "gradient norms", slots)?;
                let mut launches = Vec::with_capacity(sums.len() + 1);
                let mut slot = 0;
                for (grad, n) in sums {
                    launches.push(sumsq_dispatch(device, grad, &norms, n, slot)?);
                    slot += sumsq_parts(n);
                }
                launches.push(clip_dispatch(device, hyper, &norms, slots, *max_norm)?);
                self.scratch.push(norms);
                launches
            }
            Op::Update(rule) => match self.packing.group_of[i] {
                Some(k) => {
                    let g = &self.packing.groups[k];
                    if g.runs_at() != i {
                        return Ok(Vec::new());
                    }
                    let first = &self.graph.nodes()[g.updates[0]].inputs;
                    let states = first[2..]
                        .iter()
                        .map(|&s| self.buffers.arena_of(s))
                        .collect::<Result<Vec<_>>>()?;
                    let param = self.buffers.arena_of(first[0])?;
                    let grad = self.buffers.arena_of(first[1])?;
                    let parts = checks::group_parts(self.graph, self.buffers, self.watch, g)?;
                    let status = &self.buffers.status;
                    vec![packed_update_dispatch(
                        device, rule, hyper, param, grad, &states, status, &parts, g.len,
                    )?]
                }
                None => {
                    let states = node.inputs[2..]
                        .iter()
                        .map(|&v| self.buffer(v))
                        .collect::<Result<Vec<_>>>()?;
                    let (param, grad) = (self.input(node, 0)?, self.input(node, 1)?);
                    vec![update_dispatch(
                        device,
                        rule,
                        hyper,
                        param,
                        grad,
                        &states,
                        self.status_slot(i)?,
                        len(node.inputs[0]),
                    )?]
                }
            },
            other => unreachable!("{} is not an optimizer op", other.name()),
        })
    }
}

/// Batched n×n product dims: C = op(A)·op(B).
fn square_dims(batch: usize, n: usize, trans_a: bool, trans_b: bool) -> MatmulDims {
    MatmulDims {
        batch,
        m: n,
        n,
        k: n,
        trans_a,
        trans_b,
        a_batched: true,
        b_batched: true,
    }
}

/// Whether `part` is the range of `whole` that starts at element `start` (a slice the layout
/// placed in its stack, or read in place).
fn in_place(whole: Region, start: usize, part: Region) -> bool {
    whole.buffer() == part.buffer() && part.offset() == whole.offset() + start as u64 * 4
}

#[cfg(test)]
mod tests {
    use super::super::alloc::Residents;
    use super::super::schedule::passes;
    use super::*;
    use crate::graph::layout::Layout;
    use crate::graph::{Init, Role};
    use crate::kernels::optim::UpdateRule;

    /// One op of every family: a batch-dependent and a parameter-only spectral function,
    /// softmax cross-entropy, its gradient through everything, clipping of three gradients,
    /// updates and a running average.
    fn every_family() -> Graph {
        let mut g = Graph::new();
        let x = g.input("x", &[5, 3]).unwrap();
        let t = g.input("t", &[5, 3]).unwrap();
        let w = g.param("w", &[3, 3], Init::Identity { gain: 1.0 }).unwrap();
        let v = g.param("v", &[3, 3], Init::Normal { std: 0.5 }).unwrap();
        let gram = g.matmul(v, v, true, false).unwrap();
        let hoisted = g.spectral_fn(gram, SpectralFn::Orthogonal).unwrap();
        let xw = g.matmul(x, w, false, false).unwrap();
        let a = g.tanh(xw).unwrap();
        let xt = g.transpose(a).unwrap();
        let cov = g.matmul(xt, a, false, false).unwrap();
        let own = g
            .spectral_fn(cov, SpectralFn::InvSqrt { eps: 1e-3 })
            .unwrap();
        let mixed = g.matmul(a, own, false, false).unwrap();
        let logits = g.matmul(mixed, hoisted, false, false).unwrap();
        let mean = g.reduce(ReduceOp::Mean, Axis::Cols, logits).unwrap();
        let running = g
            .resident("running", &[3], Init::Zeros, Role::State)
            .unwrap();
        g.ema(running, mean, 0.1).unwrap();
        let loss = g.softmax_cross_entropy(logits, t).unwrap();
        let grads = g.backward(loss).unwrap();
        let pairs: Vec<(Value, Value)> = [w, v].map(|p| (p, grads.get(p).unwrap())).into();
        let all = vec![pairs[0].1, pairs[1].1, grads.get(w).unwrap()];
        g.push(Op::ClipGradients { max_norm: 1.0 }, all, vec![])
            .unwrap();
        let rule = UpdateRule::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        for (p, grad) in pairs {
            let shape = g.shape(p).to_vec();
            let state = g
                .resident(
                    &format!("{}.m", g.node(p).name),
                    &shape,
                    Init::Zeros,
                    Role::OptimizerState,
                )
                .unwrap();
            g.push(Op::Update(rule), vec![p, grad, state], vec![])
                .unwrap();
        }
        g
    }

    /// The kinds of a node's launches: `S` a solve, `D` a dispatch.
    fn kinds(recorded: &[Recorded]) -> String {
        recorded
            .iter()
            .map(|r| match r {
                Recorded::Solve(_) => 'S',
                Recorded::Dispatch(_) => 'D',
            })
            .collect()
    }

    #[test]
    fn each_op_family_lowers_to_its_launches() {
        let device = Device::new().expect("a GPU adapter (on CI: Mesa lavapipe)");
        let g = every_family();
        let layout = Layout::new(&g, &[]).unwrap();
        let watch = StepWatch::of(&g);
        let buffers =
            Buffers::allocate(&device, &g, &layout, &Residents::Fresh(0), watch.len()).unwrap();

        let mut solves = Solves::hoisted(&device, &g, &buffers).unwrap();
        assert_eq!((solves.len(), solves.hoisted_count()), (1, 1));
        let (fusion, packing) = (Fusion::none(&g), Packing::none(&g));
        let lowered = Lowering::new(
            &device,
            &g,
            &buffers,
            &mut solves,
            &fusion,
            &packing,
            &watch,
        )
        .lower_all()
        .unwrap();
        let mut families = std::collections::BTreeSet::new();
        for (i, node) in g.nodes().iter().enumerate() {
            let expected = match &node.op {
                Op::Input | Op::Param { .. } | Op::Reshape => String::new(),
                // The parameter-only one is solved ahead of the step; the other in place.
                Op::SpectralFn(_) if g.param_only()[i] => "DD".into(),
                Op::SpectralFn(_) => "SDD".into(),
                Op::SpectralFnBackward(_) => "DDDDD".into(),
                // A check of the new value, then the average.
                Op::Ema { .. } => "DD".into(),
                // A squared norm per gradient, then the scale.
                Op::ClipGradients { .. } => "D".repeat(node.inputs.len() + 1),
                _ => "D".into(),
            };
            assert_eq!(kinds(&lowered[i]), expected, "{}", node.name);
            families.insert(
                node.op
                    .name()
                    .trim_end_matches(char::is_numeric)
                    .to_string(),
            );
        }
        for family in [
            "Input",
            "Param",
            "MatMul",
            "Tanh",
            "Add",
            "Expand",
            "Reduce",
            "Transpose",
            "Reshape",
            "SoftmaxXent",
            "SoftmaxXentBackward",
            "SpectralFn",
            "SpectralFnBackward",
            "Ema",
            "ClipGradients",
            "UpdateSgd",
        ] {
            assert!(
                families.iter().any(|f| f.starts_with(family)),
                "no {family} in {families:?}"
            );
        }
        assert_eq!(
            solves.len(),
            2,
            "the batch-dependent spectral function has its own"
        );
        // Passes: one per run of dispatches between solves.
        let recording: Vec<&Recorded> = lowered.iter().flatten().collect();
        let solves_recorded = recording
            .iter()
            .filter(|r| matches!(r, Recorded::Solve(_)))
            .count();
        assert_eq!(solves_recorded, 1);
        assert_eq!(
            passes(recording.into_iter()),
            3,
            "dispatches, the solve, dispatches"
        );
    }
}
