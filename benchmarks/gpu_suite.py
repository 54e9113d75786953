"""Every GPU check in one call: ResNet-50 through the framework's own run path, against hand-written loops.

Rows: pytorch-cuda and onnxruntime-cuda x fp32/fp16 x batch 1/256 (default options: channels_last for
PyTorch, NHWC + IO binding for ONNX Runtime), plus batch 1 with CUDA graphs. Framework and reference runs
alternate (three times for batch-1 rows, which are launch-bound and drift). Each row prints the framework's
latency-model median (CUDA events), latency-all median (host clock, pinned copies included), model-only
throughput, a hand-written reference loop's median (CUDA events around the bare call) and the ratio
framework/reference. Then the host<->device copy time next to latency-all minus latency-model at batch 256,
the issue's targets with PASS/FAIL, and, where TensorRT (or TensorRT for RTX) is importable, the native
TensorRT engine's build path.

    python benchmarks/gpu_suite.py --output /tmp/gpu_results [--iterations 50] [--warmup 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework.registry import discover  # noqa: E402
from framework.settings import MeasureSettings, SweepSettings  # noqa: E402
from framework.sweep.runner import run_model  # noqa: E402

TARGETS = [  # (engine, precision, batch, cuda_graph, metric, comparison, value, text)
    ("pytorch-cuda", "fp16", 256, False, "model_throughput", ">=", 13000, "pytorch-cuda fp16 bs256 >= 13,000 img/s"),
    ("pytorch-cuda", "fp16", 1, True, "model_median", "<=", 1.0, "pytorch-cuda fp16 bs1 CUDA graph median <= 1.0 ms"),
    ("onnxruntime-cuda", "fp16", 256, False, "model_throughput", ">=", 10000, "onnxruntime-cuda fp16 bs256 >= 10,000 img/s"),
    ("onnxruntime-cuda", "fp16", 1, True, "model_median", "<=", 0.85, "onnxruntime-cuda fp16 bs1 CUDA graph median <= 0.85 ms"),
]


def cuda_event_median(fn, stream, iterations: int, warmup: int) -> float:
    import torch

    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
        stream.synchronize()
        times = []
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def reference_pytorch(module, precision, batch, cuda_graph, iterations, warmup) -> float:
    """What a careful user writes: half + channels_last, inference_mode, events around the call."""
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = copy.deepcopy(module).cuda().to(dtype).to(memory_format=torch.channels_last).eval()
    x = torch.rand(batch, 3, 224, 224, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    with torch.inference_mode():
        fn = lambda: model(x)  # noqa: E731
        if cuda_graph:
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(x)
            stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                model(x)
            fn = graph.replay
        return cuda_event_median(fn, stream, iterations, warmup)


def reference_onnxruntime(onnx_path, batch, cuda_graph, iterations, warmup) -> float:
    """ORT CUDA EP, NHWC, exhaustive cuDNN search, IO binding on ORT-allocated device values."""
    import onnxruntime as ort
    import torch

    stream = torch.cuda.Stream()
    options = {"cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1",
               "enable_cuda_graph": "1" if cuda_graph else "0", "user_compute_stream": str(stream.cuda_stream)}  # fmt: skip
    session = ort.InferenceSession(str(onnx_path), providers=[("CUDAExecutionProvider", options)])
    assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
    x = ort.OrtValue.ortvalue_from_numpy(np.random.rand(batch, 3, 224, 224).astype(np.float32), "cuda", 0)
    y = ort.OrtValue.ortvalue_from_shape_and_type((batch, 1000), np.float32, "cuda", 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("image", x)
    binding.bind_ortvalue_output("probs", y)
    return cuda_event_median(lambda: session.run_with_iobinding(binding), stream, iterations, warmup)


def copy_times_ms(batch: int) -> tuple[float, float]:
    """Host->device of the input and device->host of the output, pinned memory, CUDA events."""
    import torch

    stream = torch.cuda.Stream()
    host_in = torch.rand(batch, 3, 224, 224).pin_memory()
    dev_in = torch.empty_like(host_in, device="cuda")
    dev_out = torch.rand(batch, 1000, device="cuda")
    host_out = torch.empty(batch, 1000).pin_memory()
    h2d = cuda_event_median(lambda: dev_in.copy_(host_in, non_blocking=True), stream, 20, 3)
    d2h = cuda_event_median(lambda: host_out.copy_(dev_out, non_blocking=True), stream, 20, 3)
    return h2d, d2h


ROWS = [  # (engine, precision, batch, cuda_graph)
    (engine, precision, batch, graph)
    for graph, batches in ((False, (1, 256)), (True, (1,)))
    for batch in batches
    for engine in ("pytorch-cuda", "onnxruntime-cuda")
    for precision in ("fp32", "fp16")
]


def measure_row(model, module, row, args) -> dict:
    """Framework run, then the reference, alternated ``repeats`` times so that drift hits both alike.

    Batch-1 eager rows are launch-bound: their device time follows the host's speed, which drifts by tens of
    percent between runs minutes apart; alternating and taking the median of the per-run medians is fair.
    """
    engine, precision, batch, graph = row
    repeats = args.repeats if batch == 1 else 1
    framework, reference, last = [], [], None
    output = args.output / ("cuda_graph" if graph else "default")
    for _ in range(repeats):
        measure = MeasureSettings(iterations=args.iterations, warmup=args.warmup, engine_options={"cuda_graph": True} if graph else {})
        settings = SweepSettings(force=True, engines=(engine,), precisions=(precision,), batch_sizes=(batch,), measure=measure, output=output)
        (last,) = [r.to_json() for r in run_model(model, [None], settings, report=lambda _: None)]
        if last["status"] != "ok":
            return {"record": last}
        framework.append(last["latency_model"]["median_ms"])
        if engine == "pytorch-cuda":
            reference.append(reference_pytorch(module, precision, batch, graph, args.iterations, args.warmup))
        else:
            onnx = output / "resnet50/cache/224x224x3" / ("model.onnx" if precision == "fp32" else "model_fp16.onnx")
            reference.append(reference_onnxruntime(onnx, batch, graph, args.iterations, args.warmup))
    return {"record": last, "framework": framework, "reference": reference}


def print_row(row, result: dict, found: dict) -> None:
    r = result["record"]
    if r["status"] != "ok":
        print(f"{row[0]:17s} {row[1]:4s} {row[2]:5d} {str(row[3]):>5s} | {r['status']}: {r['reason']}")
        return
    fw, ref = statistics.median(result["framework"]), statistics.median(result["reference"])
    found[row] = {"model_median": fw, "model_throughput": r["latency_model"]["throughput_items_per_s"], "all_median": r["latency"]["median_ms"]}
    ratio = fw / ref
    runs = " ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(result["framework"], result["reference"]))
    enqueue = r.get("enqueue_median_ms")
    print(f"{row[0]:17s} {row[1]:4s} {row[2]:5d} {str(row[3]):>5s} | {fw:12.3f} {r['latency']['median_ms']:10.3f} "
          f"{r['latency_model']['throughput_items_per_s']:11.0f} | {ref:10.3f} {ratio:6.3f} | "
          f"{'ok ' if 0.97 <= ratio <= 1.03 else 'OUT'} {runs}; cosine {r['agreement']['worst']['cosine_similarity']:.6f}; "
          f"enqueue {enqueue if enqueue is not None else float('nan'):.3f} ms; "
          f"{r['validity']}{': ' + '; '.join(r['invalid_reasons']) if r['invalid_reasons'] else ''}"
          f"{''.join('; warning: ' + w[:90] for w in r['warnings'])}")  # fmt: skip


def print_copies_and_targets(found: dict) -> None:
    h2d, d2h = copy_times_ms(256)
    print(f"\ncopies at batch 256 (pinned, CUDA events): input host->device {h2d:.3f} ms, output device->host {d2h:.3f} ms, sum {h2d + d2h:.3f} ms")
    for engine in ("pytorch-cuda", "onnxruntime-cuda"):
        row = found.get((engine, "fp32", 256, False))
        if row:
            print(f"  {engine} fp32 bs256: latency-all - latency-model = {row['all_median'] - row['model_median']:.3f} ms")
    print("\ntargets:")
    for engine, precision, batch, graph, metric, op, value, text in TARGETS:
        row = found.get((engine, precision, batch, graph))
        if row is None:
            print(f"  MISSING {text}")
            continue
        got = row[metric]
        ok = got >= value if op == ">=" else got <= value
        print(f"  {'PASS' if ok else 'FAIL'} {text}: {got:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("/tmp/gpu_results"))
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="framework/reference alternations for batch-1 rows")
    args = parser.parse_args()
    import torch

    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    model = discover().get("resnet50")
    module = model.create().load_pytorch_module()
    header = (f"{'engine':17s} {'prec':4s} {'batch':>5s} {'graph':>5s} | {'model med ms':>12s} {'all med ms':>10s} "
              f"{'model img/s':>11s} | {'ref med ms':>10s} {'ratio':>6s} | per-run framework / reference medians")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    found = {}
    for row in ROWS:
        print_row(row, measure_row(model, module, row, args), found)
    print_copies_and_targets(found)
    tensorrt_build_check(args.output / "default" / "resnet50" / "cache" / "224x224x3", model)


def int8_graph(cache_dir: Path, loader) -> Path:
    """The symmetric-int8 QDQ graph TensorRT engines run, calibrated on the example input (speed only)."""
    from framework.artifacts.graphs import calibration_batches, quantize_int8

    target = cache_dir / "model_int8_symmetric.onnx"
    if not target.exists():
        batches = calibration_batches(loader.runtime_inputs(), loader.config.inputs, 8)
        seconds = quantize_int8(cache_dir / "model.onnx", target, batches, "int8_symmetric")
        print(f"\nint8 (symmetric) QDQ graph quantized in {seconds:.1f} s")
    return target


def tensorrt_build_check(cache_dir: Path, model) -> None:
    """Exercise the native engine's build path with whichever TensorRT module this machine has."""
    from framework.engines.base import ModelArtifacts
    from framework.engines.tensorrt_native import TensorRTEngine

    for module_name in ("tensorrt", "tensorrt_rtx_bindings"):
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            print(f"\n{module_name}: not importable ({exc})")
            continue
        loader = model.create()
        graphs = {"fp32": cache_dir / "model.onnx", "fp16": cache_dir / "model_fp16.onnx", "int8_symmetric": int8_graph(cache_dir, loader)}
        artifacts = ModelArtifacts(loader.config, None, graphs, cache_dir / module_name)
        for precision in ("fp32", "fp16", "int8"):
            engine = TensorRTEngine(artifacts, precision, {"module": module_name})
            try:
                engine.load()
                print(f"\n{module_name} {precision}: built and loaded: {engine.describe()}")
                print(f"  outputs: { {k: v.shape for k, v in engine.infer(dict(image=loader.runtime_inputs()[0])).items()} }")
            except Exception as exc:
                plan = getattr(engine, "plan_path", None)
                size = f"{plan.stat().st_size / 1e6:.1f} MB" if plan is not None and plan.exists() else "no plan"
                print(f"\n{module_name} {precision}: build {getattr(engine, 'cache_status', '?')}, "
                      f"build_s={getattr(engine, 'build_s', None)}, plan {size}; then: {type(exc).__name__}: {str(exc)[:300]}")  # fmt: skip
                traceback.print_exc(limit=3)


if __name__ == "__main__":
    main()
