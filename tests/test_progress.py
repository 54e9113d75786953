"""The run's final time line (``sweep.progress.Progress.time_text``): its figures read as written and add up."""

from framework.sweep.progress import Progress


def test_the_time_line_rounds_minutes_and_seconds_together():
    progress = Progress(total=1, report=lambda _: None)
    progress.phases = {"preparing": 59.97, "measuring": 119.6, "report": 3599.7}
    assert progress.time_text() == "time: preparing 1 min 0 s; measuring 2 min 0 s; report 60 min 0 s"  # never "1 min 60 s"


def test_the_preparation_steps_and_its_start_add_up_to_the_preparing_time():
    progress = Progress(total=2, report=lambda _: None, slots=2, processes=4, process_s=30.0)
    progress.phases = {"preparing": 10.0, "measuring": 20.0}
    progress.preparation = {"model": 2.0, "references": 5.0}
    assert progress.time_text() == ("time: preparing 10.0 s (starting 3.0 s, model 2.0 s, references 5.0 s); measuring 20.0 s; "
                                    "4 experiment processes, 30.0 s in all, on 2 slots: busy 75% of the measuring time")  # fmt: skip


def test_the_time_line_counts_every_process_the_slot_ran_tried_configurations_too(tmp_path, capsys):
    """With --tune the slot runs the defaults and each tried configuration in processes of their own: the time
    line counted only the final measurement, so its busy share came out far below what the slot did."""
    import json
    import re

    from framework.cli import main
    from tests.test_faults import FAST, make_model

    models = make_model(tmp_path / "models", "tuned")
    fast = [flag for flag in FAST if flag != "--quiet"]
    assert main(["run", "tuned", "--models-dir", str(models), "--output", str(tmp_path / "out"), *fast, "--engines", "onnxruntime-cpu",
                 "--batch-sizes", "1", "--tune"]) == 0  # fmt: skip
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("time: ")]
    processes = int(re.search(r"(\d+) experiment processes", line).group(1))
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "out" / "tuned").rglob("summary.json")]
    tried = [s for s in summaries if s["status"] == "tuning"]
    assert len(tried) >= 2 and len(tried) <= processes <= len(tried) + 1  # + the full measurement, unless the defaults' stood in
