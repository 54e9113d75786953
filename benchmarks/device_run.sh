#!/usr/bin/env bash
# The GPU checks in one call on the lent GPU machine (see README "GPU checks"): install the carried wheels,
# run the gpu-marked tests, then a user's run of digits_cnn (every engine here, fp32/fp16/int8) and, in the
# full mode, benchmarks/gpu_suite.py, int8_speed.py (the Xeon's VNNI), isolation_cost.py and
# sampler_overhead.py (GPU and CPU engine). `device_run.sh quick` stops after the user's run; `device_run.sh suite`
# after gpu_suite.py (one 10-minute call); `device_run.sh tune` runs issue 15's --tune command instead (resumable).
# $OUT gets one log (device_run.log) and the reports: at most 8 files come back from a device call.
set -uo pipefail
mode="${1:-full}"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
log="$out/device_run.log"
source benchmarks/device_install.sh
python3 -c "import onnxruntime" 2>/dev/null || { echo "onnxruntime is not installed: carry the wheels first"; exit 1; }
step() { echo "=== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }
if [[ "$mode" == tune ]]; then  # issue 15's must-show as a user types it; a second call resumes it
  start=$(date +%s.%N)
  timeout "${TUNE_SECONDS:-580}" python3 -m framework.cli run resnet50 --engines pytorch-cuda,onnxruntime-cuda,onnxruntime-cpu \
    --precisions fp32,fp16 --batch-sizes 1,256 --tune --output /tmp/tune_run 2>&1 | tee -a "$log" | grep -v "^\[" | tail -60
  echo "=== this call's wall time: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s" | tee -a "$log"
  for f in report.md report.html summary.md; do cp "/tmp/tune_run/resnet50/$f" "$out/tune_$f" 2>/dev/null; done
  exit 0
fi
step python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
step python3 -m pytest -q -ra -m gpu tests
step python3 -m framework.cli run digits_cnn --precisions fp32,fp16,int8 --batch-sizes 1,64 --output /tmp/user_run --quiet
cp /tmp/user_run/digits_cnn/report.html "$out/report_digits_cnn.html" 2>/dev/null
cp /tmp/user_run/digits_cnn/summary.md "$out/summary_digits_cnn.md" 2>/dev/null
[[ "$mode" == quick ]] && exit 0
step python3 benchmarks/gpu_suite.py --output /tmp/gpu_results
cp /tmp/gpu_results/default/resnet50/report.html "$out/report_resnet50.html" 2>/dev/null
[[ "$mode" == suite ]] && exit 0
step python3 benchmarks/int8_speed.py
step python3 benchmarks/isolation_cost.py
step python3 benchmarks/sampler_overhead.py --model resnet50 --engine onnxruntime-cuda
step python3 benchmarks/sampler_overhead.py
cp /tmp/gpu_results/default/resnet50/report.html "$out/report_resnet50.html" 2>/dev/null
cp /tmp/gpu_results/default/resnet50/summary.md "$out/summary_resnet50.md" 2>/dev/null
cp /tmp/gpu_results/cuda_graph/resnet50/summary.md "$out/summary_resnet50_cuda_graph.md" 2>/dev/null
cp /tmp/gpu_results/default/resnet50/environment.json "$out/" 2>/dev/null
