//! The memory layout of a plan: where every value lives, and how resident tensors start.
//!
//! Values of compute ops share a pool of buffers: a buffer returns to the pool after the last
//! op that reads its value, and a later value of the same size class takes it. Inputs and
//! resident tensors (parameters, optimizer state, constants) own their buffers; reshapes alias
//! their input; values the caller wants to read stay alive for the whole step. Values that
//! depend only on resident tensors (an Eigen layer's Gram matrix and effective weight) also
//! own their buffers, because the GPU executor computes them ahead of the batch work.

use super::{Graph, Init, Op, Value};
use crate::error::{Error, Result};
use crate::kernels::REGION_ALIGNMENT;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Where a value's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// The op produces no value (updates, clipping).
    None,
    /// An input or a resident tensor with a buffer of its own.
    Owned,
    /// A buffer of the pool, by index.
    Pooled(usize),
    /// The storage of an earlier value (a reshape).
    Alias(Value),
    /// Never stored: the value lives only inside the fused kernel that computes it and its
    /// one consumer (see [`Placement`]).
    Fused,
    /// Part of an earlier value's storage: a [`Op::Select`] whose slice starts at a byte
    /// offset (counted from `of`'s start) that is a multiple of [`REGION_ALIGNMENT`], read
    /// in place, or a reshape of one (see [`slices_in_place`]).
    Slice {
        /// The value whose storage holds the slice (never itself a reshape or a slice).
        of: Value,
        /// Byte offset of the slice in `of`.
        offset: u64,
    },
    /// Part of a later value's storage: an input of a [`Op::Stack`] that the op computing it
    /// writes straight into its slot of the stack (see [`stacked_in_place`]), so the stack
    /// needs no copy.
    Within {
        /// The stack.
        stack: Value,
        /// Byte offset of the slot in the stack.
        offset: u64,
    },
    /// A range of one of the shared buffers the executor packs values into (see
    /// [`Placement`]), by buffer index and byte offset.
    Packed {
        /// Index into [`Layout::arenas`].
        arena: usize,
        /// Byte offset of the value in that buffer.
        offset: u64,
    },
}

/// What an executor decides about a graph that changes where values must live: which ops it
/// fuses into a later op's kernel, which values never reach memory, and which it packs into
/// shared buffers. The default, [`Placement::plain`], runs every op in place and stores every
/// value on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// For each node: the node in whose place its work runs — a later node when the executor
    /// fuses it into that node's kernel, itself otherwise. Its inputs stay alive until then.
    pub runs_at: Vec<usize>,
    /// For each node: its value is never stored.
    pub unstored: Vec<bool>,
    /// For each node: the shared buffer and byte offset its value is packed at, if any.
    pub packed: Vec<Option<(usize, u64)>>,
    /// Byte sizes of the shared buffers.
    pub arenas: Vec<u64>,
    /// Give a value a buffer no earlier op of the step used whenever the op that computes it
    /// could otherwise run beside the op before it (see [`Layout::placed`]): more memory, fewer
    /// points where the device drains.
    pub overlap: bool,
}

impl Placement {
    /// Every op runs in place, every value is stored on its own.
    pub fn plain(graph: &Graph) -> Placement {
        let n = graph.nodes().len();
        Placement {
            runs_at: (0..n).collect(),
            unstored: vec![false; n],
            packed: vec![None; n],
            arenas: Vec::new(),
            overlap: false,
        }
    }
}

/// The executor-independent part of a plan: storage of every value and the pool.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Storage of each node's value.
    pub storage: Vec<Storage>,
    /// Sizes in bytes of the pooled buffers.
    pub pool: Vec<u64>,
    /// Sizes in bytes of the shared buffers packed values live in.
    pub arenas: Vec<u64>,
    /// Bytes of owned buffers (inputs and resident tensors).
    pub owned_bytes: u64,
    /// Bytes if every value had its own buffer.
    pub unpooled_bytes: u64,
}

/// The size class of a buffer: the next power of two, at least 256 bytes.
fn size_class(bytes: u64) -> u64 {
    bytes.next_power_of_two().max(256)
}

/// Bytes of a value of `shape` (f32).
pub(crate) fn value_bytes(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64 * 4
}

impl Layout {
    /// Assigns storage to every value of `graph`, every op running in place
    /// ([`Placement::plain`]); `keep` are values the caller will read.
    pub fn new(graph: &Graph, keep: &[Value]) -> Result<Layout> {
        Layout::placed(graph, keep, &Placement::plain(graph))
    }

    /// Assigns storage to every value of `graph` as `placement` says: fused values get none,
    /// packed values their range, and a pooled buffer returns to the pool only after the
    /// last op that reads it has run (at its `runs_at`). `keep` are values the caller will
    /// read.
    ///
    /// With [`Placement::overlap`], a pooled buffer is reused only by a value whose op reads
    /// what the op right before it wrote. Such an op waits for the one before it anyway (on
    /// wgpu, a barrier), so writing a buffer used earlier costs nothing more. Any other op —
    /// one whose inputs are older, such as a layer's input gradient recorded after its weight
    /// gradient — gets a buffer of its own: writing a buffer first used there needs no barrier,
    /// so it runs beside the op before it.
    pub fn placed(graph: &Graph, keep: &[Value], placement: &Placement) -> Result<Layout> {
        let nodes = graph.nodes();
        for &k in keep {
            if k.0 >= nodes.len() || nodes[k.0].shape.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "output {} is not a value of this graph (an op without output, or a node \
                     of another graph)",
                    graph.describe(k)
                )));
            }
        }
        let slices = slices_in_place(graph, placement);
        let within = stacked_in_place(graph, placement);
        let mut has_slots = vec![false; nodes.len()];
        for &(stack, _) in within.iter().flatten() {
            has_slots[stack.0] = true;
        }
        let root = |mut v: Value| loop {
            match nodes[v.0].op {
                Op::Reshape => v = nodes[v.0].inputs[0],
                Op::Select { .. } if slices[v.0].is_some() => v = nodes[v.0].inputs[0],
                _ => return v,
            }
        };
        // When each value is read for the last time (the position its reader runs at).
        let mut last_use = vec![None::<usize>; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &v in &n.inputs {
                let r = root(v).0;
                last_use[r] = last_use[r].max(Some(placement.runs_at[i]));
            }
        }
        let kept: Vec<bool> = {
            let mut k = vec![false; nodes.len()];
            for &v in keep {
                k[root(v).0] = true;
            }
            k
        };
        // Which values' buffers return to the pool after each position: after their last
        // reader, or at once if nobody reads them. Kept values never return.
        let mut released_at: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (r, used) in last_use.iter().enumerate() {
            if !kept[r] {
                released_at[used.unwrap_or(r).max(r)].push(r);
            }
        }
        // Parameter-only values may be computed out of graph order (hoisted before the batch
        // work), so they get buffers of their own instead of pool slots.
        let param_only = graph.param_only();
        let waits = if placement.overlap {
            waits_for_previous(graph, placement, &param_only, &slices, root)
        } else {
            vec![true; nodes.len()]
        };
        let mut storage = vec![Storage::None; nodes.len()];
        let mut pool: Vec<u64> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let (mut owned_bytes, mut unpooled_bytes) = (0u64, 0u64);
        for (i, n) in nodes.iter().enumerate() {
            let bytes = value_bytes(&n.shape);
            storage[i] = match n.op {
                Op::Update(_) | Op::ClipGradients { .. } | Op::Ema { .. } => Storage::None,
                _ if placement.unstored[i] => Storage::Fused,
                _ if placement.packed[i].is_some() => {
                    let (arena, offset) = placement.packed[i].expect("checked");
                    unpooled_bytes += bytes;
                    Storage::Packed { arena, offset }
                }
                Op::Input | Op::Param { .. } => {
                    owned_bytes += bytes;
                    unpooled_bytes += bytes;
                    Storage::Owned
                }
                Op::Reshape | Op::Select { .. } if slices[i].is_some() => Storage::Slice {
                    of: root(Value(i)),
                    offset: slices[i].expect("checked"),
                },
                Op::Reshape => Storage::Alias(root(Value(i))),
                _ if within[i].is_some() => {
                    let (stack, offset) = within[i].expect("checked");
                    Storage::Within { stack, offset }
                }
                // A stack that inputs write in place lives for the whole step: they are
                // computed before it, at different times.
                _ if param_only[i] || has_slots[i] => {
                    owned_bytes += bytes;
                    unpooled_bytes += bytes;
                    Storage::Owned
                }
                _ => {
                    unpooled_bytes += bytes;
                    let class = size_class(bytes);
                    let reusable = waits[placement.runs_at[i]];
                    let slot = match free.iter().position(|&b| pool[b] == class) {
                        Some(k) if reusable => free.swap_remove(k),
                        _ => {
                            pool.push(class);
                            pool.len() - 1
                        }
                    };
                    Storage::Pooled(slot)
                }
            };
            // Release the buffers whose last reader runs here (after allocating this node's
            // output, so no op reads and writes the same buffer).
            for &r in &released_at[i] {
                if let Storage::Pooled(b) = storage[r] {
                    if !free.contains(&b) {
                        free.push(b);
                    }
                }
            }
        }
        Ok(Layout {
            storage,
            pool,
            arenas: placement.arenas.clone(),
            owned_bytes,
            unpooled_bytes,
        })
    }

    /// The value whose storage `v` uses (itself unless it is a reshape or a slice read in
    /// place).
    pub fn root(&self, v: Value) -> Value {
        match self.storage[v.0] {
            Storage::Alias(r) | Storage::Slice { of: r, .. } => r,
            _ => v,
        }
    }

    /// Owned, pooled and packed bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.owned_bytes + self.pool.iter().sum::<u64>() + self.arenas.iter().sum::<u64>()
    }
}

/// For each position of a step's batch work (node indices where `placement.runs_at` puts
/// work), whether the work there reads a value that the work at the position before it
/// computed — so that it has to wait for it. Parameter-only work runs ahead of the batch work
/// and is not part of this sequence.
fn waits_for_previous(
    graph: &Graph,
    placement: &Placement,
    param_only: &[bool],
    slices: &[Option<u64>],
    root: impl Fn(Value) -> Value,
) -> Vec<bool> {
    let nodes = graph.nodes();
    let batch_work = |j: usize| {
        !param_only[j]
            && slices[j].is_none()
            && !matches!(nodes[j].op, Op::Input | Op::Param { .. } | Op::Reshape)
    };
    // The nodes whose work runs at each position.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for j in (0..nodes.len()).filter(|&j| batch_work(j)) {
        members[placement.runs_at[j]].push(j);
    }
    let mut waits = vec![false; nodes.len()];
    let mut previous = None;
    for (position, here) in members.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
        waits[position] = here.iter().any(|&j| {
            nodes[j].inputs.iter().any(|&v| {
                let r = root(v).0;
                batch_work(r) && Some(placement.runs_at[r]) == previous
            })
        });
        previous = Some(position);
    }
    waits
}

/// For each node that is part of another value's storage at an offset: the byte offset
/// within its root's storage of a [`Op::Select`] read in place — where that offset (the
/// slices of selects of selects add up, through reshapes) is a multiple of
/// [`REGION_ALIGNMENT`], so the slice binds as a region of its own — and of a reshape of such
/// a slice. Other selects (and every other node, and values the executor packs or fuses away)
/// get `None`: the executor copies them.
pub fn slices_in_place(graph: &Graph, placement: &Placement) -> Vec<Option<u64>> {
    let nodes = graph.nodes();
    let mut out: Vec<Option<u64>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if placement.packed[i].is_some() || placement.unstored[i] {
            continue;
        }
        match n.op {
            Op::Reshape => out[i] = out[n.inputs[0].0],
            Op::Select { index } => {
                // The source starts at its own offset if it is such a slice, else at 0.
                let base = out[n.inputs[0].0].unwrap_or(0);
                let offset = base + index as u64 * value_bytes(&n.shape);
                if offset.is_multiple_of(REGION_ALIGNMENT) {
                    out[i] = Some(offset);
                }
            }
            _ => {}
        }
    }
    out
}

/// For each node: the stack and byte offset it is written to directly, if it is an input of
/// an [`Op::Stack`] that can be. An input qualifies when an op computes it into storage of its
/// own (not an input, a resident tensor, a reshape or slice, a value the executor fuses away or
/// packs), it appears in exactly one stack slot of the graph, and its slot starts at a
/// multiple of [`REGION_ALIGNMENT`], and its launch reads nothing else stored in the stack's
/// buffer. The stack then lives for the whole step; the inputs that do not qualify are copied
/// into it by the stack's own launches.
pub fn stacked_in_place(graph: &Graph, placement: &Placement) -> Vec<Option<(Value, u64)>> {
    let nodes = graph.nodes();
    let mut slots = vec![0usize; nodes.len()];
    for n in nodes.iter().filter(|n| n.op == Op::Stack) {
        n.inputs.iter().for_each(|v| slots[v.0] += 1);
    }
    let mut out = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.op != Op::Stack
            || placement.packed[i].is_some_and(|(_, o)| !o.is_multiple_of(REGION_ALIGNMENT))
        {
            continue;
        }
        let slot_bytes = value_bytes(&nodes[n.inputs[0].0].shape);
        for (k, &v) in n.inputs.iter().enumerate() {
            let offset = k as u64 * slot_bytes;
            let computed = !matches!(
                nodes[v.0].op,
                Op::Input
                    | Op::Param { .. }
                    | Op::Reshape
                    | Op::Select { .. }
                    | Op::Stack
                    | Op::Update(_)
                    | Op::ClipGradients { .. }
                    | Op::Ema { .. }
            );
            if computed
                && slots[v.0] == 1
                && !placement.unstored[v.0]
                && placement.packed[v.0].is_none()
                && offset.is_multiple_of(REGION_ALIGNMENT)
            {
                out[v.0] = Some((Value(i), offset));
            }
        }
    }
    // A launch may not read a buffer it writes (wgpu's rule for one dispatch): an input whose
    // launch reads a value in the same stack's storage — another slot of it, or for a stack
    // packed into an arena, anything in that arena — is copied instead.
    let root = |mut v: Value| {
        while matches!(nodes[v.0].op, Op::Reshape | Op::Select { .. }) {
            v = nodes[v.0].inputs[0];
        }
        v
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (j, &at) in placement.runs_at.iter().enumerate() {
        members[at].push(j);
    }
    for v in 0..nodes.len() {
        let Some((stack, _)) = out[v] else { continue };
        let arena = placement.packed[stack.0].map(|(arena, _)| arena);
        let reads_own_buffer = members[placement.runs_at[v]].iter().any(|&j| {
            nodes[j].inputs.iter().any(|&u| {
                let r = root(u);
                r != Value(v)
                    && (out[r.0].is_some_and(|(s, _)| s == stack)
                        || arena
                            .is_some_and(|a| placement.packed[r.0].is_some_and(|(b, _)| a == b)))
            })
        });
        if reads_own_buffer {
            out[v] = None;
        }
    }
    out
}

/// The initial values of a resident tensor: deterministic for a given `seed`, identical for
/// every executor.
pub fn init_values(init: &Init, shape: &[usize], seed: u64) -> Result<Vec<f32>> {
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let cols = super::rows_cols(shape).1;
    Ok(match init {
        Init::Zeros => vec![0.0; n],
        Init::Constant(v) => vec![*v; n],
        Init::Normal { std } => (0..n)
            .map(|_| std * rng.sample::<f32, _>(StandardNormal))
            .collect(),
        Init::Uniform { limit } => (0..n).map(|_| rng.random_range(-limit..=*limit)).collect(),
        Init::Identity { gain } => {
            // Per matrix of a batch: row index within the matrix against the column index.
            let mat_rows = matrix_rows(shape);
            (0..n)
                .map(|i| {
                    if (i / cols) % mat_rows == i % cols {
                        *gain
                    } else {
                        0.0
                    }
                })
                .collect()
        }
        Init::Orthogonal { gain } => per_matrix(shape, &mut rng, |rng, r, c| {
            orthonormal(rng, r, c) * f64::from(*gain)
        }),
        Init::OrthogonalSpread { gain, spread } => per_matrix(shape, &mut rng, |rng, r, c| {
            spread_matrix(rng, r, c, *gain, *spread)
        }),
        Init::Data(d) => {
            if d.len() != n {
                return Err(Error::shape(
                    "Init::Data",
                    format!("{} values for shape {shape:?}", d.len()),
                ));
            }
            d.clone()
        }
    })
}

/// The values of a tensor of `shape` whose matrices (its last two dimensions; a vector is one
/// row) are drawn one after another by `draw(rng, rows, cols)`, row-major.
fn per_matrix(
    shape: &[usize],
    rng: &mut StdRng,
    draw: impl Fn(&mut StdRng, usize, usize) -> nalgebra::DMatrix<f64>,
) -> Vec<f32> {
    let (rows, cols) = super::rows_cols(shape);
    let mat_rows = matrix_rows(shape);
    let mut values = Vec::with_capacity(rows * cols);
    for _ in 0..rows / mat_rows.max(1) {
        let w = draw(rng, mat_rows, cols);
        values.extend((0..mat_rows * cols).map(|i| w[(i / cols, i % cols)] as f32));
    }
    values
}

/// Rows of one matrix of a tensor of `shape`: its second-to-last dimension (1 for a vector).
fn matrix_rows(shape: &[usize]) -> usize {
    if shape.len() >= 2 {
        shape[shape.len() - 2]
    } else {
        1
    }
}

/// U·diag(σ)·Vᵀ of `rows × cols` with Haar U and V and σ = [`spread_spectrum`].
fn spread_matrix(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
    gain: f32,
    spread: f32,
) -> nalgebra::DMatrix<f64> {
    let r = rows.min(cols);
    let u = orthonormal(rng, rows, r);
    let v = orthonormal(rng, cols, r);
    let sigma = nalgebra::DVector::from_iterator(
        r,
        spread_spectrum(gain, spread, r).into_iter().map(f64::from),
    );
    u * nalgebra::DMatrix::from_diagonal(&sigma) * v.transpose()
}

/// A Haar-distributed `rows × cols` matrix with orthonormal columns (rows ≥ cols) or rows:
/// the Q of a Gaussian matrix's QR, its signs following diag(R).
fn orthonormal(rng: &mut StdRng, rows: usize, cols: usize) -> nalgebra::DMatrix<f64> {
    let (tall, short) = (rows.max(cols), rows.min(cols));
    let g = nalgebra::DMatrix::<f64>::from_fn(tall, short, |_, _| rng.sample(StandardNormal));
    let qr = g.qr();
    let (mut q, r) = (qr.q(), qr.r());
    for j in 0..short {
        if r[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    if rows >= cols {
        q
    } else {
        q.transpose()
    }
}

/// The singular values of the row-major `rows × cols` matrix `values`, largest first: how
/// initialisers with a prescribed spectrum are checked, and how a layer reads the spectrum of
/// a deterministic initialiser.
pub fn singular_values(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let m = nalgebra::DMatrix::from_row_slice(rows, cols, values);
    let mut sigma: Vec<f32> = m.singular_values().iter().copied().collect();
    sigma.sort_by(|a, b| b.total_cmp(a));
    sigma
}

/// The `r` singular values [`Init::OrthogonalSpread`] draws, largest first: evenly spaced
/// from `gain` down to `gain·(1 − spread)` (just `gain` for r = 1).
pub fn spread_spectrum(gain: f32, spread: f32, r: usize) -> Vec<f32> {
    let step = if r > 1 { spread / (r - 1) as f32 } else { 0.0 };
    (0..r).map(|i| gain * (1.0 - step * i as f32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::optim::UpdateRule;

    /// x [8, 16] → three tanh in a row (each value 512 bytes) → a sum per row.
    fn chain() -> (Graph, [Value; 5]) {
        let mut g = Graph::new();
        let x = g.input("x", &[8, 16]).unwrap();
        let a = g.tanh(x).unwrap();
        let b = g.tanh(a).unwrap();
        let c = g.tanh(b).unwrap();
        let s = g
            .reduce(
                crate::kernels::reduce::ReduceOp::Sum,
                crate::kernels::reduce::Axis::Rows,
                c,
            )
            .unwrap();
        (g, [x, a, b, c, s])
    }

    #[test]
    fn a_buffer_returns_to_the_pool_after_its_last_reader() {
        let (g, [x, a, b, c, s]) = chain();
        let layout = Layout::new(&g, &[s]).unwrap();
        assert_eq!(layout.storage[x.0], Storage::Owned);
        let slot = |v: Value| match layout.storage[v.0] {
            Storage::Pooled(k) => k,
            other => panic!("{v:?} is {other:?}"),
        };
        // b is written while a is read: two buffers; c takes a's back.
        assert_ne!(slot(a), slot(b));
        assert_eq!(slot(c), slot(a));
        // s is smaller (32 bytes, class 256): a buffer of its own size class.
        assert_eq!(layout.pool.len(), 3);
        assert_eq!(layout.pool[slot(a)], 512);
        assert_eq!(layout.pool[slot(s)], 256);
        assert_eq!(layout.owned_bytes, 512);
        assert_eq!(layout.peak_bytes(), 512 + 512 + 512 + 256);
        assert_eq!(layout.unpooled_bytes, 4 * 512 + 32);
    }

    #[test]
    fn with_overlap_only_an_op_reading_the_one_before_reuses_a_buffer() {
        // x → a → b → c in a chain, then d = tanh(x): d reads nothing c's op wrote.
        let (mut g, [x, a, b, c, _]) = chain();
        let d = g.tanh(x).unwrap();
        let keep = [c, d];
        let slot = |layout: &Layout, v: Value| match layout.storage[v.0] {
            Storage::Pooled(k) => k,
            other => panic!("{v:?} is {other:?}"),
        };
        let mut placement = Placement::plain(&g);
        let plain = Layout::placed(&g, &keep, &placement).unwrap();
        placement.overlap = true;
        let overlap = Layout::placed(&g, &keep, &placement).unwrap();
        // c's op reads b, which the op before it wrote: it takes a's buffer back either way.
        assert_eq!(slot(&plain, c), slot(&plain, a));
        assert_eq!(slot(&overlap, c), slot(&overlap, a));
        // d's op reads only x: without overlap it reuses b's freed buffer (so it would wait
        // for c's op, which reads b); with overlap it gets a buffer no op used before.
        assert_eq!(slot(&plain, d), slot(&plain, b));
        let used_before = [a, b, c].map(|v| slot(&overlap, v));
        assert!(!used_before.contains(&slot(&overlap, d)), "{overlap:?}");
        assert_eq!(overlap.pool.len(), plain.pool.len() + 1);
    }

    #[test]
    fn a_kept_value_keeps_its_buffer_for_the_whole_step() {
        let (g, [_, a, b, c, s]) = chain();
        let layout = Layout::new(&g, &[a, s]).unwrap();
        let pooled: Vec<Storage> = [a, b, c].iter().map(|v| layout.storage[v.0]).collect();
        assert_ne!(pooled[0], pooled[2], "c must not reuse the kept a");
        assert_ne!(pooled[1], pooled[2], "c must not overwrite its input b");
    }

    #[test]
    fn reshapes_alias_resident_and_parameter_only_values_own() {
        let mut g = Graph::new();
        let x = g.input("x", &[4, 6]).unwrap();
        let w = g.param("w", &[6, 6], Init::Identity { gain: 1.0 }).unwrap();
        let gram = g.matmul(w, w, true, false).unwrap();
        let y = g.matmul(x, gram, false, false).unwrap();
        let flat = g.reshape(y, &[1, 24]).unwrap();
        let again = g.reshape(flat, &[24]).unwrap();
        let layout = Layout::new(&g, &[again]).unwrap();
        assert_eq!(layout.storage[w.0], Storage::Owned);
        assert_eq!(layout.storage[gram.0], Storage::Owned, "parameter-only");
        assert!(matches!(layout.storage[y.0], Storage::Pooled(_)));
        assert_eq!(layout.storage[flat.0], Storage::Alias(y));
        assert_eq!(layout.storage[again.0], Storage::Alias(y));
        assert_eq!(layout.root(again), y);
    }

    #[test]
    fn ops_without_a_value_have_no_storage_and_bad_outputs_are_errors() {
        let mut g = Graph::new();
        let w = g.param("w", &[3], Init::Zeros).unwrap();
        let grad = g.constant(&[3], 1.0).unwrap();
        let m = g
            .resident(
                "w.momentum",
                &[3],
                Init::Zeros,
                crate::graph::Role::OptimizerState,
            )
            .unwrap();
        let rule = UpdateRule::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let update = g.push(Op::Update(rule), vec![w, grad, m], vec![]).unwrap();
        let layout = Layout::new(&g, &[]).unwrap();
        assert_eq!(layout.storage[update.0], Storage::None);
        assert!(layout.pool.is_empty());
        assert!(
            Layout::new(&g, &[update]).is_err(),
            "an update has no value"
        );
        assert!(Layout::new(&g, &[Value(99)]).is_err(), "not in the graph");
    }

    #[test]
    fn initial_values_are_seeded_and_shaped() {
        let a = init_values(&Init::Normal { std: 1.0 }, &[5, 4], 7).unwrap();
        assert_eq!(
            a,
            init_values(&Init::Normal { std: 1.0 }, &[5, 4], 7).unwrap()
        );
        assert_ne!(
            a,
            init_values(&Init::Normal { std: 1.0 }, &[5, 4], 8).unwrap()
        );
        // A batch of two 2×3 identities.
        let eye = init_values(&Init::Identity { gain: 2.0 }, &[2, 2, 3], 0).unwrap();
        let one = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0];
        assert_eq!(eye, [one, one].concat());
        // Orthogonal: the rows of a wide matrix are orthonormal (times the gain).
        let q = init_values(&Init::Orthogonal { gain: 3.0 }, &[2, 5], 1).unwrap();
        let dot = |i: usize, j: usize| (0..5).map(|k| q[i * 5 + k] * q[j * 5 + k]).sum::<f32>();
        assert!((dot(0, 0) - 9.0).abs() < 1e-4 && dot(0, 1).abs() < 1e-4);
        // OrthogonalSpread: exactly the spectrum it promises, on tall, wide, square and 1×1.
        for (rows, cols, spread) in [(7, 3, 0.5), (3, 7, 0.2), (13, 13, 0.1), (1, 1, 0.3)] {
            let w = init_values(
                &Init::OrthogonalSpread { gain: 2.5, spread },
                &[rows, cols],
                4,
            )
            .unwrap();
            let sigma = singular_values(&w, rows, cols);
            let want = spread_spectrum(2.5, spread, rows.min(cols));
            assert_eq!(sigma.len(), want.len());
            for (got, want) in sigma.iter().zip(&want) {
                // An f32 matrix and an f32 SVD: 1e-5 is about 40 ulps of σ_max = 2.5.
                assert!(
                    (got - want).abs() < 1e-5,
                    "{rows}×{cols}: {sigma:?} vs {want:?}"
                );
            }
        }
        assert_eq!(spread_spectrum(4.0, 0.5, 3), [4.0, 3.0, 2.0]);
        // A stack draws every matrix on its own, the first as the matrix alone would be.
        for init in [
            Init::Orthogonal { gain: 1.5 },
            Init::OrthogonalSpread {
                gain: 2.0,
                spread: 0.3,
            },
        ] {
            let (mats, rows, cols) = (3, 4, 6);
            let stack = init_values(&init, &[mats, rows, cols], 5).unwrap();
            let alone = init_values(&init, &[rows, cols], 5).unwrap();
            assert_eq!(stack[..rows * cols], alone[..], "{init:?}");
            let first = singular_values(&stack[..rows * cols], rows, cols);
            for m in stack.chunks(rows * cols).skip(1) {
                let sigma = singular_values(m, rows, cols);
                assert!(
                    sigma.iter().zip(&first).all(|(a, b)| (a - b).abs() < 1e-5),
                    "{init:?}: {sigma:?} vs {first:?}"
                );
                assert_ne!(m, &stack[..rows * cols], "{init:?}: a repeated matrix");
            }
        }
        assert!(matches!(
            init_values(&Init::Data(vec![1.0; 3]), &[2, 2], 0),
            Err(Error::Shape { .. })
        ));
    }
}
