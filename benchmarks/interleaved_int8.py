"""fp32 against the int8 graph an experiment ran (the precision search's choice, where it ran), on ONNX Runtime
CPU, in one process, alternating blocks of iterations so a busy machine slows both alike: each graph's median
over all its samples and the ratio. Reads the experiment's job.json (its graphs and its inputs file).

    python benchmarks/interleaved_int8.py measurements_results/minilm/1x32_1x32/onnxruntime-cpu__int8__bs1 [--rounds 20] [--block 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from framework.config import load_config  # noqa: E402
from framework.sweep.job import Job, ShapeData  # noqa: E402
from framework.sweep.prepare import batch_inputs  # noqa: E402


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="the int8 experiment's folder (it holds job.json)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    job = Job.read(args.experiment / "job.json")
    config = load_config(job.config_path)
    feed = batch_inputs(config, ShapeData.read(job.data_file, config, False).inputs, job.experiment.batch_size)
    threads = int(job.measure.engine_options.get("threads") or 1)
    sessions = {"fp32": session(job.graphs["fp32"], threads), "int8": session(job.graphs["int8"], threads)}
    samples: dict[str, list[int]] = {name: [] for name in sessions}
    for s in sessions.values():  # warm-up, untimed
        for _ in range(args.block):
            s.run(None, feed)
    for _ in range(args.rounds):
        for name, s in sessions.items():
            for _ in range(args.block):
                start = time.perf_counter_ns()
                s.run(None, feed)
                samples[name].append(time.perf_counter_ns() - start)
    medians = {name: statistics.median(v) / 1e6 for name, v in samples.items()}
    print(f"int8 graph: {job.graphs['int8']}; {threads} threads; {args.rounds} rounds of {args.block} iterations each, alternating")
    for name, ms in medians.items():
        print(f"{name}: median {ms:.4g} ms (p90 {np.percentile(samples[name], 90) / 1e6:.4g} ms)")
    print(f"int8 / fp32 median latency: {medians['int8'] / medians['fp32']:.3f} (below 1: int8 faster)")


if __name__ == "__main__":
    main()
