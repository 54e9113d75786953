"""Print whether the resource sampler disturbs what it measures: latency with it on and off.

The same experiment runs in separate processes, alternating sampler off / on, ``--repeats`` times each;
the figure is the median of the per-process medians. Target (issue 5): within 2% (CPU engine on a CPU
machine; run with --engine onnxruntime-cuda on a GPU machine for the GPU one).

    python benchmarks/sampler_overhead.py [--model resnet18] [--engine onnxruntime-cpu] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def median_ms(args, output: Path, interval_ms: float) -> float:
    subprocess.run([sys.executable, "-m", "framework.cli", "run", args.model, "--engines", args.engine, "--iterations", "100",
                    "--min-duration", str(args.min_duration), "--warmup", "20", "--sample-interval-ms", str(interval_ms),
                    "--output", str(output), "--quiet", "--force"], check=True)  # fmt: skip
    (summary,) = (output / args.model).glob(f"*/{args.engine}__fp32__bs1/summary.json")
    record = json.loads(summary.read_text())
    latency = record.get("latency_model") or record["latency"]
    return latency["median_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--engine", default="onnxruntime-cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-duration", type=float, default=2.0)
    args = parser.parse_args()
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            off.append(median_ms(args, Path(tmp) / "off", 0))
            on.append(median_ms(args, Path(tmp) / "on", 20))
    a, b = statistics.median(off), statistics.median(on)
    change = b / a - 1
    print(f"{args.model} {args.engine} bs1, median of {args.repeats} process medians: sampler off {a:.3f} ms, "
          f"on (20 ms) {b:.3f} ms, change {change:+.2%} (target within 2%: {'PASS' if abs(change) <= 0.02 else 'FAIL'})")  # fmt: skip
    print(f"  per process, off: {', '.join(f'{v:.3f}' for v in off)}; on: {', '.join(f'{v:.3f}' for v in on)}")


if __name__ == "__main__":
    main()
