"""Print whether the resource sampler disturbs what it measures: latency with it on and off.

One process, one engine, loaded once; timed blocks alternate sampler off / on (``--blocks`` each), so the
comparison is not drowned by the differences between processes (several percent on a small VM). The
figure is the median of the per-block medians, with a Mann-Whitney test on them. Target (issue 5):
within 2% (CPU engine on a CPU machine; ``--engine onnxruntime-cuda`` on a GPU machine).

    python benchmarks/sampler_overhead.py [--model resnet18] [--engine onnxruntime-cpu] [--blocks 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from framework.engines import ModelArtifacts, engine_class
from framework.measure.monitor import DEFAULT_INTERVAL_S, ResourceSampler
from framework.measure.timing import time_host
from framework.registry import discover
from framework.results.compare import mann_whitney_u
from framework.sweep.prepare import batch_inputs, prepare_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--engine", default="onnxruntime-cpu")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block-seconds", type=float, default=1.5)
    args = parser.parse_args()
    cls = engine_class(args.engine)
    with tempfile.TemporaryDirectory() as tmp:
        model = discover().get(args.model)
        prepared = prepare_shape(model.loader_class, model.load_config(), None, Path(tmp) / args.model, "torchscript", 64, True, lambda _: None)
        if "fp32" not in prepared.graphs:
            raise SystemExit(f"export failed: {prepared.setup_error or prepared.graph_errors}")
        artifacts = ModelArtifacts(prepared.config, prepared.module, dict(prepared.graphs), prepared.cache_dir)
        engine = cls(artifacts, "fp32")
        engine.load()
        inputs = batch_inputs(prepared.config, prepared.inputs, 1)
        device_step = engine.make_device_step(inputs)
        step = device_step[0] if device_step else engine.make_step(inputs)
        time_host(step, 20, 0)  # warm-up
        off, on = [], []
        for _ in range(args.blocks):
            off.append(statistics.median(time_host(step, 10, 2, min_duration_s=args.block_seconds).latencies_ns) / 1e6)
            with ResourceSampler(DEFAULT_INTERVAL_S, gpu=cls.device == "cuda"):
                on.append(statistics.median(time_host(step, 10, 2, min_duration_s=args.block_seconds).latencies_ns) / 1e6)
        engine.close()
    a, b = statistics.median(off), statistics.median(on)
    change = b / a - 1
    p = mann_whitney_u(on, off)[1]
    print(f"{args.model} {args.engine} bs1, median of {args.blocks} alternating blocks: sampler off {a:.3f} ms, on "
          f"({DEFAULT_INTERVAL_S * 1e3:.0f} ms period) {b:.3f} ms, change {change:+.2%}, Mann-Whitney p {p:.3f} "
          f"(target within 2%: {'PASS' if abs(change) <= 0.02 else 'FAIL'})")  # fmt: skip
    print(f"  blocks off: {', '.join(f'{v:.3f}' for v in off)}")
    print(f"  blocks on:  {', '.join(f'{v:.3f}' for v in on)}")


if __name__ == "__main__":
    main()
