"""Print the measurement loop's own cost per iteration, measured on a do-nothing engine step.

Target (issue 2): at most 5 microseconds per iteration. The figure is the median over repeats of
(timed region wall time / iterations); the per-sample figure is what one recorded latency contains
besides the step itself (two clock reads).

    python benchmarks/loop_overhead.py [--iterations 200000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics

from framework.measure.timing import time_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    def do_nothing() -> None:
        return None

    per_iteration, per_sample = [], []
    for _ in range(args.repeats):
        timing = time_host(do_nothing, args.iterations, warmup=1000)
        per_iteration.append(timing.elapsed_ns / args.iterations / 1000)
        per_sample.append(statistics.median(timing.latencies_ns) / 1000)
    loop_us = statistics.median(per_iteration)
    sample_us = statistics.median(per_sample)
    print(f"iterations per repeat:                {args.iterations}")
    print(f"loop cost per iteration (wall/iter):  {loop_us:.3f} us  (target <= 5 us: {'PASS' if loop_us <= 5 else 'FAIL'})")
    print(f"median recorded latency of a no-op:   {sample_us:.3f} us  (what each sample carries besides the step)")


if __name__ == "__main__":
    main()
