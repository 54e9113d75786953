"""Print every row of a results folder: status, headline median, its 99% CI half-width, what ended the run,
and the warnings; then how many rows warn. Reads old (schema 1) results too, so a before/after pair of
sweeps of the same command can be set side by side.

    python benchmarks/sweep_rows.py measurements_results/resnet50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework.measure.stats import ci_half_width  # noqa: E402
from framework.results.store import load_results  # noqa: E402
from framework.results.tables import sort_key  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    results = sorted(load_results(args.model_dir), key=sort_key)
    warned = 0
    for r in results:
        e, head = r.experiment, r.headline
        if r.status != "ok" or head is None:
            print(f"{e.engine:18} {e.precision:5} bs{e.batch_size:<4} {r.status}: {r.reason[:80]}")
            continue
        width = head.ci_half_width
        if width is None and head.median_ci99_low_ms is not None:  # schema 1 kept only the interval
            width = ci_half_width(head.median_ms, (head.median_ci99_low_ms, head.median_ci99_high_ms))
        half = f"{width * 100:.2f}%" if width is not None else "n/a"
        warned += bool(r.warnings)
        print(
            f"{e.engine:18} {e.precision:5} bs{e.batch_size:<4} {r.validity:8} median {head.median_ms:10.4f} ms  "
            f"CI half-width {half:>7}  n={head.n:<6} stop={head.stop_rule}  warnings={len(r.warnings)}"
        )
        for w in r.warnings:
            print(f"      - {w[:160]}")
    ok = sum(r.status == "ok" for r in results)
    print(f"rows: {len(results)}, measured: {ok}, with warnings: {warned}")


if __name__ == "__main__":
    main()
