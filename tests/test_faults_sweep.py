"""Fault injection on the sweep itself: a stale figure is never kept, a killed parent leaves no orphan that
writes, the lock holds under races, a hang in the export fails its shape only, a full disk loses nothing.
Each test that reuses an earlier run (``earlier``) checks that its results are unchanged."""

import csv
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.cli import main
from framework.locking import results_lock
from tests.test_faults import FAST, REPO, earlier, lock_is_free, make_model, measured, records, run  # noqa: F401

SLOW_FORWARD = (
    "if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment':\n"
    "                    import time; time.sleep(0.02)\n"
    "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"
)  # fmt: skip


def test_an_edited_forward_is_measured_again_never_resumed_from_the_old_graph(earlier):
    models, out = earlier
    make_model(models, "edited")
    assert run(models, "edited", out, "--engines", "onnxruntime-cpu") == 0
    before = records(out, "edited")[("onnxruntime-cpu", "fp32", 1)]
    load = models / "edited" / "load.py"
    load.write_text(load.read_text().replace("return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))",
                                             "return self.head(torch.relu(self.conv(image) * 2).mean(dim=(2, 3)))"))  # fmt: skip
    assert run(models, "edited", out, "--engines", "onnxruntime-cpu") == 0  # no --force: the code changed
    after = records(out, "edited")[("onnxruntime-cpu", "fp32", 1)]
    assert after["fingerprint"] != before["fingerprint"] and after["run_id"] != before["run_id"]
    assert after["export"]["export_from_cache"] is False  # the cached graph of the old code was not used
    assert after["validity"] == "valid"


def test_an_upgraded_library_is_measured_again(earlier, monkeypatch):
    from framework import environment

    models, out = earlier
    real = environment.fingerprint_fields()
    upgraded = {**real, "packages": {**real["packages"], "onnxruntime": "99.0.0"}}
    monkeypatch.setattr(environment, "fingerprint_fields", lambda: upgraded)
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--batch-sizes", "4") == 0
    first = records(out, "healthy")[("onnxruntime-cpu", "fp32", 4)]["run_id"]
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--batch-sizes", "4") == 0
    assert records(out, "healthy")[("onnxruntime-cpu", "fp32", 4)]["run_id"] == first  # same environment: kept
    monkeypatch.setattr(environment, "fingerprint_fields", lambda: real)
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu", "--batch-sizes", "4") == 0
    assert records(out, "healthy")[("onnxruntime-cpu", "fp32", 4)]["run_id"] != first
    history = json.loads((out / "healthy" / "environment.json").read_text())["history"]
    assert len(history) >= 3  # every run's environment is kept


def test_a_hang_in_the_export_fails_that_shape_and_the_sweep_goes_on(earlier):
    models, out = earlier
    make_model(models, "hangs_in_export", extra="import time", forward=(
        "if image.shape[-1] == 16 and os.environ.get('DEPLOYBENCH_ROLE') == 'preparation':\n"
        "                    time.sleep(120)\n"
        "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"))  # fmt: skip
    start = time.monotonic()
    code = run(models, "hangs_in_export", out, "--engines", "onnxruntime-cpu", "--timeout", "10", "--shapes", "[(16,16,3)]", "[(8,8,3)]")
    assert code == 1 and time.monotonic() - start < 60
    rows = {(r["shape_tag"], r["engine"]): r for r in (json.loads(p.read_text()) for p in (out / "hangs_in_export").rglob("summary.json"))}
    hung = rows[("16x16x3", "onnxruntime-cpu")]
    assert hung["status"] == "failed" and "timed out after 10 s" in hung["reason"]
    assert rows[("8x8x3", "onnxruntime-cpu")]["status"] == "ok"


def test_an_exception_in_load_pytorch_module_keeps_its_traceback(earlier, capsys):
    models, out = earlier
    make_model(models, "raises_on_load")
    load = models / "raises_on_load" / "load.py"
    load.write_text(
        load.read_text().replace(
            "        torch.manual_seed(0)\n", "        torch.manual_seed(0)\n        raise ValueError('checkpoint has 3 keys too many')\n"
        )
    )
    for extra in ([], ["--in-process"]):
        assert run(models, "raises_on_load", out, "--engines", "onnxruntime-cpu,pytorch-cpu", *extra) == 1
        for record in records(out, "raises_on_load").values():
            assert "ValueError: checkpoint has 3 keys too many" in record["reason"]
            assert 'load.py", line' in record["traceback"] and "load_pytorch_module" in record["traceback"]


def test_a_run_whose_every_result_is_invalid_exits_1(earlier, capsys, monkeypatch):
    from framework.engines import ENGINES

    models, out = earlier
    monkeypatch.setitem(ENGINES, "constant-output", "tests.test_output_checks:ConstantOutputEngine")
    code = main(["run", "healthy", "--models-dir", str(models), "--output", str(out), "--engines", "constant-output", "--in-process",
                 "--batch-sizes", "2", *FAST])  # fmt: skip
    assert code == 1
    assert "every measured result (1) is INVALID" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, message",
    [("--timeout", "nan", "timeout must be a positive number"), ("--min-duration", "nan", "min-duration must be a finite number"),
     ("--limit", "0", "--limit must be at least 1"), ("--sample-interval-ms", "-5", "sample-interval-s must be a finite number >= 0"),
     ("--engines", "", "need at least one value"), ("--batch-sizes", "", "need at least one value"), ("--repeats", "0", "--repeats 0")],
)  # fmt: skip
def test_every_cli_number_is_checked_before_anything_is_created(tmp_path, capsys, flag, value, message):
    from tests.conftest import FIXTURE_MODELS

    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(tmp_path / "out"), flag, value, "--quiet"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _hold(folder: str, start: float, results) -> None:
    """One contender: wait for the common start, try the lock, hold it 50 ms if taken."""
    from framework.errors import DeployBenchError

    while time.time() < start:
        pass
    try:
        with results_lock(Path(folder)):
            begin = time.monotonic_ns()
            time.sleep(0.05)
            results.put((begin, time.monotonic_ns()))
    except DeployBenchError:
        results.put(None)


def test_the_lock_is_never_held_twice_even_when_contenders_start_together(tmp_path):
    """The race the old lock file lost (116 of 200 trials held twice): 30 trials of 3 processes at once."""
    context = multiprocessing.get_context("fork")
    for trial in range(30):
        folder = tmp_path / str(trial)
        (folder).mkdir()
        if trial % 2:  # half the trials start from a lock file left by a killed holder
            (folder / ".deploybench.lock").write_text('{"pid": 999999, "host": "x"}')
        results = context.Queue()
        start = time.time() + 0.2
        contenders = [context.Process(target=_hold, args=(str(folder), start, results)) for _ in range(3)]
        for process in contenders:
            process.start()
        spans = sorted(s for s in (results.get(timeout=20) for _ in contenders) if s)
        for process in contenders:
            process.join()
        assert spans, "nobody got the lock"
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"trial {trial}: held by two processes at once"


def running_in_session(session: int) -> list[int]:
    """Processes of a session still running (zombies, exited and waiting to be reaped, do not count)."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if os.getsid(pid) == session and state != "Z":
                found.append(pid)
        except (ProcessLookupError, FileNotFoundError, IndexError):
            continue
    return found


def test_kill_9_of_the_parent_leaves_no_orphan_and_an_immediate_rerun_owns_the_folder(earlier):
    """The orphan race: a child of a SIGKILLed sweep kept measuring and overwrote the rerun's files."""
    models, out = earlier
    make_model(models, "slow", forward=SLOW_FORWARD)
    command = [sys.executable, "-m", "framework.cli", "run", "slow", "--models-dir", str(models), "--output", str(out),
               "--engines", "pytorch-cpu,onnxruntime-cpu", "--iterations", "20", "--warmup", "0", "--min-duration", "3"]  # fmt: skip
    for _ in range(1):  # benchmarks/races.py loops 20 times
        sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / "slow").rglob(".incoming-*/child.log")):
            time.sleep(0.05)  # until a child measures
        time.sleep(0.5)
        sweep.kill()
        sweep.wait()
        time.sleep(2)
        left = running_in_session(sweep.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, "a process of the killed sweep is still running"
        rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert rerun.returncode == 0, rerun.stderr
        assert_tables_match_files(out / "slow")


def assert_tables_match_files(model_dir: Path) -> None:
    with (model_dir / "summary.csv").open() as handle:
        rows = {(r["shape"], r["engine"], r["precision"], r["batch_size"]): r for r in csv.DictReader(handle)}
    for path in model_dir.rglob("summary.json"):
        if "repeats" in path.parts or any(p.startswith(".") for p in path.relative_to(model_dir).parts):
            continue
        summary = json.loads(path.read_text())
        row = rows[(summary["shape_tag"], summary["engine"], summary["precision"], str(summary["batch_size"]))]
        assert row["status"] == summary["status"]
        if summary["latency"]:
            assert float(row["median_ms"]) == pytest.approx(summary["latency"]["median_ms"])
            with (path.parent / "latencies.csv").open() as handle:
                assert sum(1 for _ in csv.DictReader(handle)) == summary["latency"]["n"]


def test_a_full_disk_keeps_the_earlier_result_and_says_so_in_one_line(earlier):
    """--force over a valid result, then the disk fills while the new one is written: the old one stays whole."""
    models, out = earlier
    experiment = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1"
    before = {p.name: p.read_bytes() for p in experiment.iterdir() if p.is_file()}
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "from framework.cli import main; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)); "  # the summary (about 6 kB) cannot be written, the log can
        f"sys.exit(main(['run', 'healthy', '--models-dir', {str(models)!r}, '--output', {str(out)!r}, '--engines', 'onnxruntime-cpu', "
        "'--force', '--in-process', '--iterations', '3', '--warmup', '0', '--min-duration', '0', '--quiet']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("deploybench: error: OSError: [Errno 27] File too large") and done.stderr.count("\n") == 1, done.stderr
    assert "deploybench-error.log" in done.stderr and "File too large" in (out / "deploybench-error.log").read_text()
    assert {p.name: p.read_bytes() for p in experiment.iterdir() if p.is_file()} == before
    assert not list((out / "healthy").rglob("*.tmp")), "temporary files left behind"
    assert lock_is_free(out / "healthy")


def test_leftovers_of_an_interrupted_writer_are_cleaned_by_the_next_run(earlier):
    models, out = earlier
    experiment = out / "healthy" / "16x16x3" / "onnxruntime-cpu__fp32__bs1"
    (experiment / ".summary.json.abc123.tmp").write_text("{half")
    (experiment / ".incoming-deadbeef").mkdir()
    (experiment / ".incoming-deadbeef" / "summary.json").write_text("{}")
    assert run(models, "healthy", out, "--engines", "onnxruntime-cpu") == 0
    assert not (experiment / ".summary.json.abc123.tmp").exists() and not (experiment / ".incoming-deadbeef").exists()


def test_job_json_reruns_one_experiment_by_hand_and_rebuilds_the_tables(tmp_path):
    """A job names its files by absolute path: it re-runs in the folder its sweep wrote."""
    from tests.conftest import FIXTURE_MODELS

    out = tmp_path / "out"
    assert main(["run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(out), "--engines", "onnxruntime-cpu", *FAST]) == 0
    job = out / "tiny_cnn" / "16x16x3" / "onnxruntime-cpu__fp32__bs1" / "job.json"
    before = (job.parent / "latencies.csv").stat().st_mtime_ns
    (out / "tiny_cnn" / "summary.csv").unlink()
    done = subprocess.run([sys.executable, "-m", "framework.sweep.isolation", str(job)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tiny_cnn 16x16x3 onnxruntime-cpu fp32 bs1: ok" in done.stdout
    assert (job.parent / "latencies.csv").stat().st_mtime_ns != before  # measured again
    assert (out / "tiny_cnn" / "summary.csv").exists()


def test_an_early_ctrl_c_stops_quietly(tmp_path):
    """SIGINT while the fork server still imports: one line, exit 130, no traceback from the server."""
    from tests.conftest import FIXTURE_MODELS

    command = [sys.executable, "-m", "framework.cli", "run", "tiny_cnn", "--models-dir", str(FIXTURE_MODELS), "--output", str(tmp_path)]
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode in (130, 0), err
    assert "Traceback" not in err, err
