#!/usr/bin/env bash
# eigengrad against PyTorch on a Linux machine with an NVIDIA GPU.
#
# Runs the `bench` example (Vulkan, on the NVIDIA driver) and benches/gpu/torch_bench.py (CUDA,
# TF32 off, eager and CUDA graphs) on the same workloads and sizes, then prints both tables
# and one side by side.
#
#   benches/gpu/run.sh [--quick|--smoke] [OUT_DIR]        (default OUT_DIR: out/gpu-bench)
#
# The bench binary: $EIGENGRAD_BENCH_BIN if set (e.g. built elsewhere with
# `cargo build --release --example bench` and copied here), else `cargo run --release`.
#
# Vulkan loader and NVIDIA's ICD: see benches/gpu/vulkan_env.sh.
set -euo pipefail

size_flag=""
out="out/gpu-bench"
for arg in "$@"; do
    case "$arg" in
        --quick|--smoke) size_flag="$arg" ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $arg" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- Vulkan loader and the NVIDIA ICD -------------------------------------------------------
source benches/gpu/vulkan_env.sh

# --- eigengrad ------------------------------------------------------------------------------
# A shared cache folder for the matmul autotuning, inside the output (the machine may be bare).
export EIGENGRAD_CACHE_DIR="${EIGENGRAD_CACHE_DIR:-$out/cache}"
bench_args=(--backend vulkan --out "$out/eigengrad")
[ -n "$size_flag" ] && bench_args=("$size_flag" "${bench_args[@]}")
if [ -n "${EIGENGRAD_BENCH_BIN:-}" ]; then
    "$EIGENGRAD_BENCH_BIN" "${bench_args[@]}"
elif command -v cargo >/dev/null; then
    cargo run --release --example bench -- "${bench_args[@]}"
else
    echo "run.sh: no cargo here; build with 'cargo build --release --example bench' elsewhere" \
         "and set EIGENGRAD_BENCH_BIN to the binary" >&2
    exit 1
fi

# --- PyTorch --------------------------------------------------------------------------------
torch_args=(--device cuda --out "$out/torch")
[ -n "$size_flag" ] && torch_args=("$size_flag" "${torch_args[@]}")
PYTHONUNBUFFERED=1 python3 benches/gpu/torch_bench.py "${torch_args[@]}"

# --- side by side ---------------------------------------------------------------------------
echo
echo "== eigengrad (Vulkan) and PyTorch (CUDA), side by side =="
python3 benches/gpu/torch_bench.py compare \
    --eigengrad "$out/eigengrad/bench.csv" \
    --torch "$out/torch/torch_bench.csv" \
    --out "$out/side_by_side.md"
echo "wrote $out/eigengrad/bench.{csv,md}, $out/torch/torch_bench.{csv,md}, $out/side_by_side.md"
