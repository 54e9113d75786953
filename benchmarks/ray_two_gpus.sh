#!/usr/bin/env bash
# Issue 17's GPU must-show on a host with two H100s: the resnet50 sweep (pytorch-cuda, onnxruntime-cuda; fp32, fp16;
# batch 1, 32, 256; --repeats 7 so that `compare` can give verdicts) with the local executor on one GPU, then with
# --executor ray on both (a local Ray instance that deploybench starts: every GPU of the host, one experiment per GPU).
# Prints both wall times and their ratio (must be <= 0.6), counts the results that carry the "other processes held
# the GPU" warning (must be 0; the CPU one, "other processes used N% of a core", is counted apart), and runs
# `deploybench compare` of the two folders (every row must say "no significant difference"). After each sweep,
# benchmarks/sweep_timeline.py shows where its time went (slot use, gaps between processes, stages per process).
#
#   bash benchmarks/ray_two_gpus.sh single [NAME [ARGS...]]  # prime the ONNX cache, then the one-GPU sweep (one device call)
#   bash benchmarks/ray_two_gpus.sh ray [NAME [ARGS...]]     # the Ray sweep on both GPUs, then `compare` against `single`
#   bash benchmarks/ray_two_gpus.sh compare [A B]            # the figures again, from the folders a warm machine kept
#   bash benchmarks/ray_two_gpus.sh all                      # single and ray in one call (about 10 minutes)
#
# NAME (default: single, ray) names the sweep's folder; ARGS go to `deploybench run` (e.g. ray ray16 --threads 16).
# Both sweeps start from the same cached ONNX export and fp16 graph (built once by `prime`), so the wall times
# compare measuring, not exporting twice. Folders live under /tmp/ray17 (kept while the machine stays warm); each
# step's log and the summaries go to $OUT. REPEATS and RUN_LENGTH override the defaults below.
set -uo pipefail
mode="${1:-all}"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
work="${WORK:-/tmp/ray17}"
repeats="${REPEATS:-7}"
run_length="${RUN_LENGTH:---warmup 10 --min-duration 0.2 --max-duration 1}"  # short: 84 processes a side must fit one 10-minute call
model="${MODEL:-resnet50}"  # MODEL, ENGINES, PRECISIONS, BATCHES: another sweep (a CPU dry run of this script, say)
sweep=("$model" --engines "${ENGINES:-pytorch-cuda,onnxruntime-cuda}" --precisions "${PRECISIONS:-fp32,fp16}"
       --batch-sizes "${BATCHES:-1,32,256}" --repeats "$repeats" $run_length)
py="${PYTHON:-python3}"
[[ -n ${NO_INSTALL:-} ]] || source benchmarks/device_install.sh
$py -c "import ray, onnxruntime; print('ray', ray.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())" \
  || { echo "ray or onnxruntime-gpu is not installed: carry .device-wheels first"; exit 1; }
nvidia-smi --query-gpu=index,name,driver_version,memory.used --format=csv | tee -a "$out/ray_two_gpus.log"

now() { date +%s.%N; }
prime() {  # the ONNX export and fp16 graph, once; each sweep's folder gets a copy of the cache
  [[ -d $work/prime/$model/cache ]] && return 0
  $py -m framework.cli run "$model" --engines "${PRIME_ENGINE:-onnxruntime-cuda}" --precisions "${PRECISIONS:-fp32,fp16}" --batch-sizes 1 --iterations 5 --warmup 0 \
    --min-duration 0 --output "$work/prime" --quiet 2>&1 | tail -3
}
timed_sweep() {  # name, extra arguments: the sweep into $work/name, its wall time into $work/name.wall_s
  local name=$1; shift
  mkdir -p "$work/$name/$model" && cp -rn "$work/prime/$model/cache" "$work/$name/$model/"
  local start; start=$(now)
  timeout 570 $py -m framework.cli run "${sweep[@]}" --output "$work/$name" "$@" > "$out/$name.log" 2>&1
  local code=$?
  local wall; wall=$($py -c "print(round($(now) - $start, 1))")
  echo "=== $name: exit $code, wall time $wall s" | tee -a "$out/ray_two_gpus.log"
  tail -25 "$out/$name.log"
  [[ $code == 0 ]] && echo "$wall" > "$work/$name.wall_s"
  cp "$work/$name/$model/summary.md" "$out/summary_$name.md" 2>/dev/null
  $py benchmarks/sweep_timeline.py "$work/$name/$model" | tee -a "$out/ray_two_gpus.log"
}
figures() {  # A B: two sweeps' folder names
  local a=$1 b=$2
  [[ -f $work/$a.wall_s && -f $work/$b.wall_s ]] || { echo "run both '$a' and '$b' first"; return 0; }
  $py - "$work" "$model" "$a" "$b" <<'EOF' | tee -a "$out/ray_two_gpus.log"
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
names = sys.argv[3:5]
single, ray = (float((work / f"{n}.wall_s").read_text()) for n in names)
print(f"wall time: {names[0]} {single:.1f} s; {names[1]} {ray:.1f} s; ratio {ray / single:.3f} (must be <= 0.6)")
for name in names:
    rows = [json.loads(p.read_text()) for p in (work / name / sys.argv[2]).glob("*/*/summary.json")]
    gpu = [r["engine"] + " " + r["precision"] + " bs" + str(r["batch_size"]) for r in rows if any("held the GPU" in w for w in r.get("warnings", []))]
    cpu = sum(any("of a core" in w for w in r.get("warnings", [])) for r in rows)
    nodes = sorted({(r.get("machine", {}).get("node") or {}).get("cuda_visible_devices") or "-" for r in rows})
    ok = sum(r["status"] == "ok" and r.get("validity") == "valid" for r in rows)
    print(f"{name}: {len(rows)} results, {ok} ok and valid; 'other processes held the GPU': {len(gpu)} {gpu}; "
          f"CPU 'other processes used ... of a core': {cpu}; GPUs used (CUDA_VISIBLE_DEVICES): {nodes}")
EOF
  $py -m framework.cli compare "$work/$a" "$work/$b" > "$out/compare.txt" 2>&1
  echo "=== compare exit $?" | tee -a "$out/ray_two_gpus.log"
  cat "$out/compare.txt"
  local rows; rows=$(grep -cE "^$model .* [0-9]+/[0-9]+ " "$out/compare.txt")
  echo "=== compare rows: $rows; 'no significant difference': $(grep -c 'no significant difference$' "$out/compare.txt"); slower: $(grep -c ' slower$' "$out/compare.txt"); faster: $(grep -c ' faster$' "$out/compare.txt")" | tee -a "$out/ray_two_gpus.log"
}

name="${2:-}"; extra=("${@:3}")
case "$mode" in
  single) prime; export CUDA_VISIBLE_DEVICES=0; timed_sweep "${name:-single}" "${extra[@]}" ;;
  ray) prime; unset CUDA_VISIBLE_DEVICES; timed_sweep "${name:-ray}" --executor ray "${extra[@]}"; figures single "${name:-ray}" ;;
  compare) figures "${2:-single}" "${3:-ray}" ;;
  all) prime; export CUDA_VISIBLE_DEVICES=0; timed_sweep single; unset CUDA_VISIBLE_DEVICES; timed_sweep ray --executor ray; figures single ray ;;
  *) echo "usage: $0 single|ray|compare|all"; exit 2 ;;
esac
