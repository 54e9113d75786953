"""Where a sweep's measuring time went, from the results on disk: every experiment process's start and its
stages (``Result.started_at``, ``Result.stages_s``), grouped by the slot it ran in (a GPU of a Ray node, or
the one local slot). Prints, per folder: the processes, the span from the first start to the last end, how
busy each slot was, the gaps between one process's end and the next one's start on a slot (what the
executor costs per experiment), and the mean seconds of each stage per engine and batch size.

    python benchmarks/sweep_timeline.py measurements_results/resnet50 [OTHER_MODEL_FOLDER ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ("read", "load", "compile", "first_call", "timed", "checks", "close", "process", "task")


def processes(model_dir: Path) -> list[dict]:
    """One summary per experiment process (each of ``--repeats`` K), with its slot."""
    found = []
    for summary in sorted(model_dir.glob("*/*/summary.json")):
        repeats = sorted(summary.parent.glob("repeats/*/summary.json"))
        for path in repeats or [summary]:
            data = json.loads(path.read_text())
            if data.get("started_at") is None or "process" not in (data.get("stages_s") or {}):
                continue
            node = (data.get("machine") or {}).get("node") or {}
            slot = f"{node.get('hostname', '?')} GPU {node.get('cuda_visible_devices')}" if node else "local"
            found.append({**data, "slot": slot, "ended_at": data["started_at"] + data["stages_s"]["process"]})
    return found


def describe(model_dir: Path) -> None:
    runs = processes(model_dir)
    if not runs:
        print(f"{model_dir}: no process with timings (results from before deploybench recorded them)")
        return
    start, end = min(r["started_at"] for r in runs), max(r["ended_at"] for r in runs)
    span = end - start
    total = sum(r["stages_s"]["process"] for r in runs)
    slots = defaultdict(list)
    for r in runs:
        slots[r["slot"]].append(r)
    print(f"{model_dir}: {len(runs)} processes in {span:.1f} s (first start to last end) on {len(slots)} slot{'s' if len(slots) != 1 else ''}; "
          f"process seconds {total:.1f}; busy {total / (len(slots) * span):.0%}")  # fmt: skip
    for slot, rows in sorted(slots.items()):
        rows.sort(key=lambda r: r["started_at"])
        gaps = [b["started_at"] - a["ended_at"] for a, b in zip(rows, rows[1:])]
        busy = sum(r["stages_s"]["process"] for r in rows) / span
        gap_text = f"gap median {statistics.median(gaps):.3f} s, max {max(gaps):.2f} s" if gaps else "no gaps"
        print(f"  {slot}: {len(rows)} processes, busy {busy:.0%}, {gap_text}, first start +{rows[0]['started_at'] - start:.1f} s, "
              f"last end +{rows[-1]['ended_at'] - start:.1f} s")  # fmt: skip
    groups = defaultdict(list)
    for r in runs:
        kind = f" on {r['device_kind']}" if r.get("device_kind") else ""  # --devices: each GPU kind's own means
        groups[(r["engine"] + kind, r["precision"], r["batch_size"])].append(r["stages_s"])
    print("  mean seconds per process: " + " ".join(f"{s:>10}" for s in STAGES))
    for key in sorted(groups, key=str):
        means = [_mean([s[stage] for s in groups[key] if stage in s]) for stage in STAGES]
        cells = " ".join(f"{m:10.3f}" if m is not None else f"{'-':>10}" for m in means)
        print(f"  {key[0]:>17} {key[1]} bs{key[2]:<4} x{len(groups[key])}: {cells}")


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        describe(Path(folder))
