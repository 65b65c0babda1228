#!/usr/bin/env bash
# One-step GPU check: the quick demo, then one real model (PaddleOCR's text-direction classifier, ONNX),
# each with the NVIDIA profile, printing mcbench's variant table. Under 8 minutes on one GPU.
# Where no NVIDIA GPU (or no CUDA provider in onnxruntime) is present it says why and exits 0.
#
#   benchmarks/gpu_check.sh [path/to/ch_ppocr_mobile_v2.0_cls_infer.onnx]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
MODEL=${1:-/tmp/realmodels/ch_ppocr_mobile_v2.0_cls_infer.onnx}
OUT=${OUT:-runs/gpu-check}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: skipped: no NVIDIA GPU on this machine (nvidia-smi is missing or lists no device)"
  exit 0
fi
providers=$("$PY" -c 'import onnxruntime as o; print(",".join(o.get_available_providers()))')
if [[ "$providers" != *CUDAExecutionProvider* ]]; then
  echo "gpu_check: skipped: onnxruntime here has no CUDAExecutionProvider (providers: $providers);" \
       "install onnxruntime-gpu"
  exit 0
fi
nvidia-smi -L
mkdir -p "$OUT"
echo "== the quick demo, NVIDIA profile =="
timeout 240 "$PY" -m mcbench.cli run --quick --no-load --profile nvidia-gpu --out "$OUT/demo"
if [[ -f "$MODEL" ]]; then
  echo "== $(basename "$MODEL"), NVIDIA profile =="
  timeout 240 "$PY" -m mcbench.cli run --quick --no-load --profile nvidia-gpu --model "$MODEL" \
    --input x=1,3,48,192 --out "$OUT/real"
else
  echo "gpu_check: real model skipped: $MODEL is not there (give its path as the first argument)"
fi
