// Finite check: counts the NaN/Inf values among n floats and records the first offending
// index into one slot of a flag buffer, with atomics, so the result stays on the device until
// someone reads it.
//
// Slot layout (FLAG_WORDS = 2 u32 words at slot * 2):
//   word 0: how many values were NaN or ±Inf (atomicAdd);
//   word 1: 0xFFFFFFFF − (first offending index), kept with atomicMax, so the smallest index
//           wins and an all-zero slot means "nothing found". Indices are < n ≤ 2^32 − 1, so a
//           recorded value is never 0. A zero-filled buffer (encoder.clear_buffer) resets it.
// Non-finite is detected from the bits (exponent all ones), since compilers may fold x != x.
//
// Each invocation checks every `threads`-th element from its own index (coalesced) and
// touches the flags only if it found something, once: no barriers, few atomics.

struct Params {
    n: u32,
    threads: u32,
    slot: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;

const WG: u32 = 64u;
const FLAG_WORDS: u32 = 2u;
const EXPONENT: u32 = 0x7f800000u;

@compute @workgroup_size(WG)
fn finite_check(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.threads) {
        return;
    }
    var count = 0u;
    var first = 0xffffffffu;
    for (var i = t; i < p.n; i += p.threads) {
        if ((bitcast<u32>(x[i]) & EXPONENT) == EXPONENT) {
            count += 1u;
            first = min(first, i);
        }
    }
    if (count > 0u) {
        atomicAdd(&flags[FLAG_WORDS * p.slot], count);
        atomicMax(&flags[FLAG_WORDS * p.slot + 1u], 0xffffffffu - first);
    }
}
