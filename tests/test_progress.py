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
