#!/usr/bin/env bash
# Measure one model in every engine this machine can run, then write tables and plots under
# measurements_results/<model_name>/. Every variable below can be overridden from the environment:
#   num_iter=200 model_name=resnet50 experiments_example_shapes='"[(224,224,3)]" "[(336,336,3)]"' bash run_all_measurements.sh
# Extra arguments go to `deploybench run` (e.g. --batch-sizes 1,8 --engines onnxruntime-cpu).
set -euo pipefail
cd "$(dirname "$0")"

num_iter="${num_iter:-}"                    # timed iterations per experiment; empty: adaptive (until the median is known to +-1%)
num_warmup_iter="${num_warmup_iter:-10}"    # untimed warm-up iterations before them
model_name="${model_name:-digits_cnn}"      # a folder under models/ (see `deploybench list`)
# Each quoted value is one measurement: one tuple per model input, in the example (pre-processing) shape.
# Empty: the example shape of the model's config.yaml.
experiments_example_shapes="${experiments_example_shapes:-}"
precisions="${precisions:-fp32,fp16,int8}"  # each engine runs those it can; the others are listed as skipped

source framework/ensure_env.sh
eval "shapes=($experiments_example_shapes)"
shape_args=()
if [ "${#shapes[@]}" -gt 0 ]; then shape_args=(--shapes "${shapes[@]}"); fi
iteration_args=()
if [ -n "$num_iter" ]; then iteration_args=(--iterations "$num_iter"); fi
exec "$PYTHON" -m framework.cli run "$model_name" \
  "${shape_args[@]}" --precisions "$precisions" "${iteration_args[@]}" --warmup "$num_warmup_iter" \
  --output measurements_results "$@"
