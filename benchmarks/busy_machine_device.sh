#!/usr/bin/env bash
# Issue 14's before/after sweeps on the lent GPU machine, in one call each (see README "GPU checks").
#   busy_machine_device.sh cpu [SECONDS]  the default CPU sweep of resnet50 (pytorch-cpu, onnxruntime-cpu;
#                                         fp32, int8; batch 1, 32, 256): this tree, then the old tree in
#                                         .before/ (carried; `git archive 3c0e574`), with what time is left
#   busy_machine_device.sh gpu            the same with pytorch-cuda, onnxruntime-cuda, fp32/fp16 (wheels
#                                         installed by device_run.sh earlier on this warm machine)
# A second call resumes a side that ran out of time (the results folders live in /tmp while the machine is warm).
# Each side's wall time is printed, then every row (benchmarks/sweep_rows.py).
set -uo pipefail
mode="${1:-cpu}"; budget="${2:-580}"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
log="$out/busy_machine_$mode.log"
here="$PWD"; started=$(date +%s)
source benchmarks/device_install.sh
if [[ "$mode" == cpu ]]; then
  args=(--engines pytorch-cpu,onnxruntime-cpu --precisions fp32,int8 --batch-sizes 1,32,256)
else
  args=(--engines pytorch-cuda,onnxruntime-cuda --precisions fp32,fp16 --batch-sizes 1,32,256)
fi
side() {  # side NAME TREE
  local name="$1" tree="$2" left=$(( budget - ($(date +%s) - started) ))
  (( left < 30 )) && { echo "=== $name: no time left" | tee -a "$log"; return; }
  echo "=== $name ($tree), up to ${left} s" | tee -a "$log"
  local t0; t0=$(date +%s.%N)
  (cd "$tree" && PYTHONPATH="/tmp/site:$tree" PYTHONUNBUFFERED=1 timeout "$left" \
     python3 -m framework.cli run resnet50 "${args[@]}" --output "/tmp/sweep_${mode}_$name" --quiet) 2>&1 | tail -5 | tee -a "$log"
  echo "=== $name wall time: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" | tee -a "$log"
  PYTHONPATH="/tmp/site:$here" python3 benchmarks/sweep_rows.py "/tmp/sweep_${mode}_$name/resnet50" 2>&1 | tee -a "$log"
}
python3 -c "import os; print('cpus', os.cpu_count(), 'load', os.getloadavg())" | tee -a "$log"
for s in ${SIDES:-after before}; do side "$s" "$here$([[ $s == before ]] && echo /.before)"; done
