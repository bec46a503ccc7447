// Geometry of the blocked path (src/kernels/jacobi_block.rs), prepended to its kernels after
// jacobi_common.wgsl. The order n is split into p.m (even) blocks of b = ⌈n / p.m⌉ indices,
// the last ones padded with dummy indices ≥ n whose rows and columns of A are zero (they are
// never rotated). A round pairs the blocks (I, J), I < J, by the round-robin schedule; block
// pair k of the round is the 2b×2b problem on the indices I∪J, numbered locally 0 … 2b − 1
// (I's first), which keeps their order: local i < j ⟺ global i < j.

// b, the indices per block.
fn block_size() -> u32 {
    return (p.n + p.m - 1u) / p.m;
}

// Global index of local index i of the block pair `blocks` (I, J).
fn global_index(blocks: vec2<u32>, i: u32, b: u32) -> u32 {
    return select(blocks.y * b + i - b, blocks.x * b + i, i < b);
}

// Floats per row of a block pair's Q in the rotations buffer: 2b rounded up to whole vec4s.
fn q_stride(b: u32) -> u32 {
    return (2u * b + 3u) & ~3u;
}
