"""Print how long ``compare`` takes on two result folders of 30 experiments x 7 processes x 2000 samples.

Target (issue "Numbers that stay true on a busy or shared machine", item 5): under 2 s for 30 pairs on a
2-core machine, reading the result files included. The folders are written once, untimed (``save_result``,
as the runner writes them); then ``compare()`` is timed (best of ``--rounds``), and apart from it how much
of that is reading the files (``load_sides``, compare's reader, of both folders), next to how long
``store.load_results`` (the csv module, every column) takes to read the same files, and the whole
``deploybench compare`` command. ``--processes 1`` times runs without ``--repeats`` (no verdicts).

    python benchmarks/compare_speed.py [--experiments 30] [--processes 7] [--samples 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from framework.cli import main as deploybench
from framework.results.compare import compare, load_sides
from framework.results.record import Experiment, Result, Samples
from framework.results.store import load_results, save_result

TARGET_S = 2.0


def write_folder(root: Path, experiments: int, processes: int, samples: int, slowdown: float, seed: int) -> None:
    """One model, ``experiments`` experiments; every third is ``slowdown`` times slower (B's folder)."""
    rng = np.random.default_rng(seed)
    for i in range(experiments):
        experiment = Experiment("m", "8x8", ((8, 8),), f"engine{i:02d}", "fp32", 1)
        median = (1 + i % 7) * (slowdown if i % 3 == 0 else 1.0)
        offsets = 1 + 0.01 * rng.standard_normal(processes)  # processes differ from each other a little
        ms = median * offsets[:, None] * (1 + 0.02 * rng.standard_exponential((processes, samples)))
        medians = tuple(float(np.median(row)) for row in ms)
        ns = tuple(int(v) for v in (ms.ravel() * 1e6))
        who = tuple(int(p) for p in np.repeat(np.arange(processes), samples))
        result = Result(experiment, "test", "cpu", "ok", validity="valid", repeats=processes,
                        samples=Samples(ns, processes=who), process_medians_ms=medians)  # fmt: skip
        save_result(experiment.folder(root), result)


def best_of(rounds: int, call) -> tuple[float, object]:
    times, value = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--processes", type=int, default=7)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        write_folder(a, args.experiments, args.processes, args.samples, 1.0, seed=1)
        write_folder(b, args.experiments, args.processes, args.samples, 1.5, seed=2)
        seconds, (pairs, notes) = best_of(args.rounds, lambda: compare(a, b))
        loading, _ = best_of(args.rounds, lambda: (load_sides(a), load_sides(b)))
        full, _ = best_of(1, lambda: (load_results(a), load_results(b)))
        with contextlib.redirect_stdout(io.StringIO()):
            cli, code = best_of(args.rounds, lambda: deploybench(["compare", str(a), str(b)]))
    shape = f"{args.experiments} experiments x {args.processes} processes x {args.samples} samples a side"
    print(f"compare(): {seconds:.3f} s for {len(pairs)} pairs ({shape}); best of {args.rounds}")
    print(
        f"  of which reading the result files (load_sides, both folders): {loading:.3f} s ({loading / seconds:.0%}); "
        f"store.load_results would take {full:.3f} s"
    )
    print(f"  deploybench compare (environment check and printing included): {cli:.3f} s, exit status {code}")
    print(f"  verdicts: {dict(Counter(p.verdict for p in pairs))}; notes: {len(notes)}")
    print(f"  under {TARGET_S:.0f} s: {'PASS' if seconds < TARGET_S else 'FAIL'}")


if __name__ == "__main__":
    main()
