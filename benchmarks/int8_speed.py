"""Print ONNX Runtime CPU latency of ResNet-50 at batch 1 in fp32 and int8, and their ratio.

int8 is the framework's own recipe (precision.quantize_int8: pre-processing, static QDQ calibration,
per-channel int8 weights, uint8 activations). Targets (issue 4): int8 at least 1.5x faster than fp32 on a
16-core Xeon with VNNI, and not slower on a 2-core AVX2 machine.

    python benchmarks/int8_speed.py [--model resnet50] [--iterations 100] [--min-duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--min-duration", type=float, default=3.0)
    parser.add_argument("--output", type=Path, default=None, help="keep the results here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output or Path(tmp)
        subprocess.run([sys.executable, "-m", "framework.cli", "run", args.model, "--engines", "onnxruntime-cpu",
                        "--precisions", "fp32,int8", "--iterations", str(args.iterations), "--min-duration", str(args.min_duration),
                        "--warmup", "20", "--output", str(out), "--quiet"], check=False)  # fmt: skip
        records = {}
        for path in (out / args.model).glob("*/onnxruntime-cpu__*__bs1/summary.json"):
            record = json.loads(path.read_text())
            records[record["precision"]] = record
    for precision in ("fp32", "int8"):
        r = records.get(precision, {})
        if r.get("status") != "ok":
            raise SystemExit(f"{precision}: {r.get('status')}: {r.get('reason')}")
        print(f"{args.model} onnxruntime-cpu {precision} bs1: median {r['latency']['median_ms']:.2f} ms "
              f"(n={r['latency']['n']}, CV {r['latency']['cv']:.1%}), "
              f"cosine vs PyTorch {r['agreement']['worst']['cosine_similarity']:.5f}")  # fmt: skip
    speedup = records["fp32"]["latency"]["median_ms"] / records["int8"]["latency"]["median_ms"]
    cores = os.cpu_count()
    target = 1.5 if cores >= 16 else 1.0
    print(f"int8 speed-up over fp32: {speedup:.2f}x on {cores} CPUs "
          f"(target >= {target}x here: {'PASS' if speedup >= target else 'FAIL'})")  # fmt: skip


if __name__ == "__main__":
    main()
