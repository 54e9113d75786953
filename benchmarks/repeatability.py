"""Print how repeatable a CPU measurement is: the same experiment in two separate processes, then compare.

Target (issue 7): medians within 5% of each other, and ``deploybench compare`` says "no significant difference".
With ``--repeats K`` each run measures in K processes and compare tests the per-process medians
(Mann-Whitney U); the medians compared are then the medians of those per-process medians.

    python benchmarks/repeatability.py [--model resnet18] [--engine onnxruntime-cpu] [--iterations 100] [--repeats 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from framework.results.compare import NEEDS_REPEATS, compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--engine", default="onnxruntime-cpu")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--min-duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roots = [Path(tmp) / "a", Path(tmp) / "b"]
        for root in roots:
            subprocess.run([sys.executable, "-m", "framework.cli", "run", args.model, "--engines", args.engine,
                            "--iterations", str(args.iterations), "--min-duration", str(args.min_duration),
                            "--warmup", "20", "--repeats", str(args.repeats), "--output", str(root), "--quiet"], check=True)  # fmt: skip
        pairs, notes = compare(*roots)
        for p in pairs:
            spread = abs(p.ratio - 1)
            test = f", Mann-Whitney p {p.p_value:.3f} on per-process medians" if p.p_value is not None else ""
            print(f"{' '.join(map(str, p.key))}: median A {p.median_a:.3f} ms, B {p.median_b:.3f} ms, "
                  f"B/A {p.ratio:.3f} [99% CI {p.ci_low:.3f}, {p.ci_high:.3f}]{test}")  # fmt: skip
            print(f"  medians within 5%: {'PASS' if spread <= 0.05 else 'FAIL'} ({spread:.1%}); compare says: {p.verdict}"
                  f" ({'PASS' if p.verdict in ('no significant difference', NEEDS_REPEATS) else 'FAIL'})")  # fmt: skip
        for note in notes:
            print(note)


if __name__ == "__main__":
    main()
