#!/usr/bin/env bash
# The GPU checks in one call on the lent GPU machine (see README "GPU checks"): install the carried wheels,
# run the gpu-marked tests, then benchmarks/gpu_suite.py, int8_speed.py (the Xeon's VNNI), isolation_cost.py
# and sampler_overhead.py (GPU and CPU engine).
# Logs and result tables land in $OUT.
set -uo pipefail
out="${OUT:-/tmp/out}"; mkdir -p "$out" /tmp/parts /tmp/whl
cp .device-wheels/* /tmp/parts/ 2>/dev/null
for w in /tmp/parts/*.part00; do [[ -e $w ]] && cat "${w%.part00}".part* > "/tmp/whl/$(basename "${w%.part00}")"; done
cp /tmp/parts/*.whl /tmp/whl/ 2>/dev/null
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
python3 -m pytest -q -ra -m gpu tests 2>&1 | tee "$out/gpu_tests.log"
python3 benchmarks/gpu_suite.py --output /tmp/gpu_results 2>&1 | tee "$out/gpu_suite.log"
python3 benchmarks/int8_speed.py 2>&1 | tee "$out/int8_speed.log"
python3 benchmarks/isolation_cost.py 2>&1 | tee "$out/isolation_cost.log"
python3 benchmarks/sampler_overhead.py --model resnet50 --engine onnxruntime-cuda 2>&1 | tee "$out/sampler_overhead_gpu.log"
python3 benchmarks/sampler_overhead.py 2>&1 | tee "$out/sampler_overhead_cpu.log"
cp /tmp/gpu_results/default/resnet50/report.html "$out/" 2>/dev/null
cp /tmp/gpu_results/default/resnet50/summary.md "$out/summary_default.md" 2>/dev/null
cp /tmp/gpu_results/cuda_graph/resnet50/summary.md "$out/summary_cuda_graph.md" 2>/dev/null
cp /tmp/gpu_results/default/resnet50/plots/224x224x3/cuda_time_measurements.jpg "$out/" 2>/dev/null
cp /tmp/gpu_results/default/resnet50/environment.json "$out/" 2>/dev/null
