"""Print what isolation and the artifact cache cost, on this machine.

1. Wall time of the default CPU sweep (run_all_measurements.sh's model and settings, CPU engines) run
   in-process and isolated (one child process per experiment). Target (issue 6): isolation adds at most
   2 s per experiment.
2. Conversion time (ONNX export with its check, then fp16) of a first run, and of a ``--force`` re-run that
   reuses every cached artifact. Target: the re-run's under 5% of the first's.

    python benchmarks/isolation_cost.py [--model resnet50] [--engines pytorch-cpu,onnxruntime-cpu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep_seconds(args, output: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "framework.cli", "run", args.model, "--engines", args.engines,
                    "--output", str(output), "--quiet", *extra], check=False)  # fmt: skip
    return time.perf_counter() - start


def conversion_seconds(model: str, output: Path) -> float:
    """Export + check + fp16, as a run does it before measuring (cache hits when the files are current), in a
    fresh process so nothing is remembered between the two runs but the files."""
    code = (
        "from pathlib import Path; from framework.registry import discover; "
        "from framework.sweep.prepare import build_graphs, prepare_shape; "
        f"model = discover().get({model!r}); output = Path({str(output)!r}); "
        "prepared = prepare_shape(model.loader_class, model.load_config(), None, output / model.name, 'torchscript', 64, True, lambda _: None); "
        "prepared = build_graphs(prepared, ['fp16']); "
        "ok = 'fp16' in prepared.graphs; "
        "print(prepared.conversion_s if ok else f'failed: {prepared.setup_error} {prepared.graph_errors}')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    if result.startswith("failed"):
        raise SystemExit(f"conversion {result}")
    return float(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--engines", default="pytorch-cpu,onnxruntime-cpu")
    args = parser.parse_args()
    experiments = len(args.engines.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        sweep_seconds(args, Path(tmp) / "warm", "--iterations", "1", "--min-duration", "0")  # file cache, imports
        in_process = sweep_seconds(args, Path(tmp) / "a", "--in-process")
        isolated = sweep_seconds(args, Path(tmp) / "b")
        added = (isolated - in_process) / experiments
        print(f"default CPU sweep of {args.model} ({experiments} experiments): in-process {in_process:.1f} s, "
              f"isolated {isolated:.1f} s; isolation adds {added:.2f} s per experiment "
              f"(target <= 2 s: {'PASS' if added <= 2 else 'FAIL'})")  # fmt: skip
        first = conversion_seconds(args.model, Path(tmp) / "c")
        again = conversion_seconds(args.model, Path(tmp) / "c")
        print(f"conversion (export + check + fp16): first run {first:.2f} s, re-run from the cache {again:.2f} s = "
              f"{again / first:.1%} of it (target < 5%: {'PASS' if again / first < 0.05 else 'FAIL'})")  # fmt: skip


if __name__ == "__main__":
    main()
