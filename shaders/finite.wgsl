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
    parts: u32, // finite_check_parts: the number of tensors in `parts`
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;
// finite_check_parts: (first element, slot) of each tensor laid out in x, in order.
@group(0) @binding(3) var<storage, read> parts: array<u32>;

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

// Like finite_check over several tensors laid out in x one after another (an arena of
// gradients, see kernels::optim): each finding goes to the slot of the tensor that holds it
// (the last one starting at or before it), at its index there. Findings are rare, so each
// records itself rather than being counted first.
@compute @workgroup_size(WG)
fn finite_check_parts(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.threads) {
        return;
    }
    for (var i = t; i < p.n; i += p.threads) {
        if ((bitcast<u32>(x[i]) & EXPONENT) == EXPONENT) {
            var k = 0u;
            for (var j = 1u; j < p.parts; j++) {
                if (parts[2u * j] <= i) { k = j; }
            }
            let slot = parts[2u * k + 1u];
            atomicAdd(&flags[FLAG_WORDS * slot], 1u);
            atomicMax(&flags[FLAG_WORDS * slot + 1u], 0xffffffffu - (i - parts[2u * k]));
        }
    }
}

// Step status: a flag buffer whose first HEADER_SLOTS slots hold a header instead of findings,
// and whose later slots are the findings (count, first index, as above) of everything a
// training step watches: running statistics, losses, parameter updates (see graph::status).
// Header words:
//   HALT:      0 while the step's updates may run; else the slot of the first finding, from
//              when on every update and running-statistic write is skipped;
//   HALTED_AT: the step at which HALT was set (low 32 bits);
//   STEP:      the current step (low 32 bits), written by the host before each step.
// The whole buffer is zeroed (encoder.clear_buffer) when the plan's tensors are rewritten.
const HEADER_SLOTS: u32 = 2u;
const HALT: u32 = 0u;
const HALTED_AT: u32 = 1u;
const STEP: u32 = 2u;

// The gate, one invocation: unless already halted, halts at the first of the p.n slots after
// the header that recorded a finding. Recorded between the step's checks and its updates (so
// that every update of a step sees the same HALT), and again at the end of the step.
@compute @workgroup_size(1)
fn gate() {
    if (atomicLoad(&flags[HALT]) != 0u) {
        return;
    }
    for (var s = HEADER_SLOTS; s < HEADER_SLOTS + p.n; s++) {
        if (atomicLoad(&flags[FLAG_WORDS * s]) != 0u) {
            atomicStore(&flags[HALTED_AT], atomicLoad(&flags[STEP]));
            atomicStore(&flags[HALT], s);
            return;
        }
    }
}
