"""Issue 18's figures from a results folder: per model, fp32 and int8 on ONNX Runtime CPU (medians, their ratio,
validity), whether the precision search ran, the chosen recipe's cosine with PyTorch on the real dataset and on
held-out inputs, and the search's table of steps.

    python benchmarks/precision_search_summary.py /tmp/precision_search/minilm [...more model folders]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework.report.recipes import steps_markdown  # noqa: E402
from framework.results.store import load_results  # noqa: E402


def summarize(model_dir: Path) -> None:
    results = {(r.experiment.engine, r.experiment.precision, r.experiment.batch_size): r for r in load_results(model_dir)}
    print(f"=== {model_dir.name}")
    for (engine, precision, batch), r in sorted(results.items()):
        head = r.headline
        print(
            f"{engine} {precision} bs{batch}: {r.status} {r.validity or ''} median {head.median_ms:.4g} ms"
            if head
            else f"{engine} {precision}: {r.status} {r.reason[:100]}"
        )
        if precision != "int8":
            continue
        search = r.recipe_search
        print(f"  precision search ran: {'yes' if search else 'no (the first recipe passed)' if r.is_valid else 'no'}")
        if search:
            print(f"  chosen: {search.get('chosen')}, nodes kept in float: {len(search.get('excluded') or [])} {search.get('excluded')}; "
                  f"{search.get('steps')} steps in {search.get('spent_s')} s (budget {search.get('budget_s')} s)")  # fmt: skip
        for name, agreement in (
            ("timed input", r.agreement),
            ("held-out (varied) inputs", r.agreement_after_timing),
            ("dataset", r.dataset_agreement),
        ):
            if agreement is not None:
                print(f"  cosine with PyTorch fp32 on the {name}: {agreement.worst.cosine_similarity:.5f}")
        fp32 = results.get((engine, "fp32", batch))
        if fp32 is not None and fp32.headline and head:
            print(f"  int8 / fp32 median latency: {head.median_ms / fp32.headline.median_ms:.3f} (below 1: int8 faster)")
    table = steps_markdown(model_dir)
    print(table if table else "(no precision search ran)")


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        summarize(Path(folder))
