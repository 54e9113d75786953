#!/usr/bin/env bash
# Issue 18's must-show on the lent GPU machine's CPU (a 16-core Xeon with VNNI/AMX), in one call, under 5 minutes:
#   minilm on onnxruntime-cpu, fp32 and int8: the first int8 recipe fails, the precision search finds a valid one;
#   digits_cnn and resnet50 (batch 1) int8 on onnxruntime-cpu: their first recipe passes, no search runs.
# Prints each model's rows, the int8/fp32 latency ratio, the cosines and the search's table of steps
# (benchmarks/precision_search_summary.py) and the chosen int8 graph against fp32 in one process, alternating
# (benchmarks/interleaved_int8.py), into $OUT/precision_search.log; the reports go to $OUT too.
set -uo pipefail
out="${OUT:-/tmp/out}"; mkdir -p "$out"
log="$out/precision_search.log"
results=/tmp/precision_search
source benchmarks/device_install.sh
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | sed -E 's/(Flags:).*(avx512_vnni|amx_int8).*/\1 ... has \2 .../' | tee -a "$log"
run() {  # run MODEL ARGS...: one sweep, its wall time
  local model="$1"; shift
  local t0; t0=$(date +%s.%N)
  python3 -m framework.cli run "$model" --engines onnxruntime-cpu --precisions fp32,int8 --output "$results" --max-duration 10 "$@" 2>&1 \
    | grep -E "search|chosen|error|Verdict|->" | cut -c1-300 | tee -a "$log"
  echo "=== $model wall time: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" | tee -a "$log"
}
run minilm --search-budget 240
run digits_cnn
run resnet50 --batch-sizes 1
python3 benchmarks/precision_search_summary.py "$results/minilm" "$results/digits_cnn" "$results/resnet50" 2>&1 | tee -a "$log"
echo "=== minilm: the chosen int8 graph against fp32, one process, alternating blocks" | tee -a "$log"
python3 benchmarks/interleaved_int8.py "$results/minilm/1x32_1x32/onnxruntime-cpu__int8__bs1" 2>&1 | tee -a "$log"
for model in minilm digits_cnn resnet50; do
  mkdir -p "$out/$model" && cp "$results/$model/report.md" "$results/$model/report.html" "$out/$model/" 2>/dev/null
done
