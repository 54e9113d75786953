"""``benchmarks/sweep_timeline.py``: a results folder's timeline, read from the results as the sweep saves them."""

import importlib.util
from pathlib import Path

from framework.results.record import Experiment, Result
from framework.results.store import save_result

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_timeline.py"


def timeline():
    spec = importlib.util.spec_from_file_location("sweep_timeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_gpu_kinds_stages_are_averaged_apart(tmp_path, capsys):
    """--devices H100,L4: the same engine, precision and batch size on two kinds are two rows, not one mean."""
    for start, kind, timed in ((100.0, "H100", 2.0), (100.0, "L4", 6.0)):
        experiment = Experiment("m", "8x8", ((8, 8),), "pytorch-cuda", "fp32", 1, kind)
        node = {"hostname": f"node-{kind}", "cuda_visible_devices": "0"}
        result = Result(
            experiment, "pytorch", "cuda", "ok", machine={"node": node}, started_at=start, stages_s={"timed": timed, "process": timed + 1}
        )
        save_result(experiment.folder(tmp_path), result)
    timeline().describe(tmp_path / "m")
    out = capsys.readouterr().out
    assert "2 processes in 7.0 s" in out
    rows = [line.split() for line in out.splitlines() if "pytorch-cuda" in line]
    assert [(row[2], row[10], row[13]) for row in rows] == [("H100", "2.000", "3.000"), ("L4", "6.000", "7.000")]  # timed, process
