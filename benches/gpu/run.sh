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
# Vulkan loader: if the machine has no libvulkan.so.1, the Debian packages in .gl/ (see the
# device notes: libvulkan1, libegl1, libglvnd0, libopengl0, libgl1, libglx0, libgles2, fetched
# with `apt-get download`) are unpacked first. NVIDIA's ICD json is found in the usual places
# (the driver mount /usr/local/nvidia/share/vulkan/icd.d first) and exported as
# VK_DRIVER_FILES unless it is already set.
set -euo pipefail

size_flag=""
out="out/gpu-bench"
for arg in "$@"; do
    case "$arg" in
        --quick|--smoke) size_flag="$arg" ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $arg" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- Vulkan loader and the NVIDIA ICD -------------------------------------------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    if compgen -G ".gl/*.deb" >/dev/null; then
        echo "run.sh: no Vulkan loader; unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        echo "run.sh: no libvulkan.so.1 and no .gl/*.deb to unpack (apt-get install libvulkan1)" >&2
        exit 1
    fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
               /usr/share/vulkan/icd.d/nvidia_icd.json \
               /etc/vulkan/icd.d/nvidia_icd.json; do
        if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
    done
fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$egl" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "run.sh: no nvidia-smi on this machine"
fi

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
