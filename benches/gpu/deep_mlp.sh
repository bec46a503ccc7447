#!/usr/bin/env bash
# The deep-network results on the full Fashion-MNIST, on a Linux machine with a GPU: the
# `deep_mlp` demo at depth 32 and 64 (width 64, batch 128, 10 epochs), every variant from
# s = 0.5, 1 and 2, the hidden Eigen layers stacked, the learning rate warmed up for half an
# epoch and decayed along a cosine (`--cosine`); the shallow baseline at Adam 2e-3, the deep
# networks at the rate their depth needs (2e-3 at depth 32, 5e-4 at depth 64, 2e-4 from depth
# 256, the stretch: DEPTHS="256").
#
#   benches/gpu/deep_mlp.sh DATA_DIR [OUT_DIR]      (default OUT_DIR: out/gpu-deep-mlp)
#
# DATA_DIR holds Fashion-MNIST in MNIST format (train-images-idx3-ubyte.gz and the three other
# files). The demo binary: $EIGENGRAD_DEEP_MLP_BIN if set (built elsewhere with
# `cargo build --release --features digits --example deep_mlp`), else `cargo run --release`.
# DEPTHS (default "32 64") and EPOCHS (default 10) narrow or widen the run, DEEP_MLP_ARGS adds
# flags to every run (e.g. "--train-size 500" for a check). Each run writes its figures, CSVs
# and summary under OUT_DIR/depth<d>-<group>/.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,16p' "$0"
    exit 2
fi
data="$(cd "$1" && pwd)"
out="${2:-out/gpu-deep-mlp}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
source benches/gpu/vulkan_env.sh

deep_mlp() {
    if [ -n "${EIGENGRAD_DEEP_MLP_BIN:-}" ]; then
        "$EIGENGRAD_DEEP_MLP_BIN" "$@"
    else
        cargo run --release --features digits --example deep_mlp -- "$@"
    fi
}

common=(--backend vulkan --data "$data" --width 64 --batch 128 --epochs "${EPOCHS:-10}"
        --init-scale 0.5,1,2 --cosine)
read -ra extra <<<"${DEEP_MLP_ARGS:-}"
common+=("${extra[@]}")
for depth in ${DEPTHS:-32 64}; do
    lr=2e-3
    [ "$depth" -ge 64 ] && lr=5e-4
    [ "$depth" -ge 256 ] && lr=2e-4
    deep_mlp "${common[@]}" --depth "$depth" --variants shallow \
        --out "$out/depth$depth-shallow" | tee "$out/depth$depth-shallow.log"
    deep_mlp "${common[@]}" --depth "$depth" --lr "$lr" --stack \
        --variants plain,clamp,orthogonal,normalize \
        --out "$out/depth$depth-deep" | tee "$out/depth$depth-deep.log"
done
echo "wrote $out"
