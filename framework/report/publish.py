"""Everything a run writes about its results, rebuilt from the files on disk: nothing is measured.

``publish`` is the one entry the runner (after a run) and the ``report`` / ``plot`` commands call: the
summary tables, every figure of ``figures.FIGURES`` per shape, report.md and report.html. The configurations
``--tune`` tried are read too: the speedup chart's baseline may be one of them (PyTorch with default options).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framework.errors import DeployBenchError
from framework.report.document import write_report
from framework.report.figures import FigureOptions, draw_results
from framework.results.store import load_results
from framework.results.tables import sort_key, write_model_tables

SUMMARY_FILES = ("summary.csv", "summary.md")


@dataclass(frozen=True)
class Published:
    """The files one ``publish`` wrote (empty where it was told not to write them)."""

    plots: tuple[Path, ...] = ()
    tables: tuple[Path, ...] = ()  # summary.csv, summary.md
    report_md: Path | None = None
    report_html: Path | None = None
    experiments: int = 0  # results read back (unreadable files are skipped with a warning)


def publish(model_dir: Path, keep_outliers: bool = False, tables: bool = True, report: bool = True,
            baseline: tuple[str, str] | None = None) -> Published:  # fmt: skip
    """Rebuild one model's summary tables (``tables``), every plot, and report.md and report.html (``report``)
    from the results saved under ``model_dir``; return the paths written. ``DeployBenchError`` when there are none.
    ``baseline``: the (engine, precision) of the tables' and the speedup chart's speedups; None: PyTorch fp32 on
    each row's device kind.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        results = []
    else:  # read once: write_model_tables returns what it read
        results = write_model_tables(model_dir, baseline) if tables else sorted(load_results(model_dir), key=sort_key)
    if not results:
        raise DeployBenchError(f"no saved experiments in {model_dir}; run `deploybench run {model_dir.name}` first")
    candidates = tuple(load_results(model_dir, tuning=True))  # draw_results keeps each shape's own
    from framework.report.recipes import load_search_steps

    options = FigureOptions(keep_outliers=keep_outliers, baseline=baseline, candidates=candidates, search_steps=tuple(load_search_steps(model_dir)))
    plots = draw_results(model_dir, results, options)
    report_md, report_html = write_report(model_dir, results, baseline) if report else (None, None)
    return Published(plots=tuple(plots), tables=tuple(model_dir / name for name in SUMMARY_FILES) if tables else (),
                     report_md=report_md, report_html=report_html, experiments=len(results))  # fmt: skip
