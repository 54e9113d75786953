"""Print how often the two races of a killed or concurrent run happen, with this tree's code or another's.

1. Lock: four processes start together on a results folder whose lock was left by a killed run; a trial
   fails when two hold the lock at the same time (the old lock file's check-then-unlink recovery). Each
   contender pauses 0-5 ms when it warns (the old code warns between reading the dead holder and unlinking),
   as a preempting scheduler would on a busy machine.
2. Orphan: a sweep is SIGKILLed while a child measures; a trial fails when a process of the killed sweep is
   still alive two seconds later (it went on measuring and could overwrite a rerun's files).
3. Kill and rerun: ``--loops`` times, SIGKILL the sweep mid-measurement and rerun it at once; each time,
   summary.csv must match every experiment's summary.json and latencies.csv.

    python benchmarks/races.py [--code /path/to/another/checkout] [--trials 50] [--loops 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTEND = """
import os, random, sys, time, warnings
warnings.simplefilter("ignore")
_warn = warnings.warn
def _preempted(*args, **kwargs):  # a busy machine preempts a process anywhere: here, mid-recovery for the old lock
    time.sleep(random.random() * 0.005)
    _warn(*args, **kwargs)
warnings.warn = _preempted
from pathlib import Path
from framework.locking import results_lock
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    with results_lock(Path(sys.argv[1])):
        begin = time.monotonic_ns(); time.sleep(0.05); print(begin, time.monotonic_ns())
except Exception:
    print("refused")
"""


def lock_trials(code: Path, trials: int) -> int:
    double = 0
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(trials):
            folder = Path(tmp) / str(trial)
            folder.mkdir()
            (folder / ".deploybench.lock").write_text(json.dumps({"pid": 999999, "host": os.uname().nodename, "started": "x"}))
            start = str(time.time() + 3)  # every contender has imported by then
            contenders = [subprocess.Popen([sys.executable, "-c", CONTEND, str(folder), start], cwd=code, env=env, stdout=subprocess.PIPE, text=True)
                          for _ in range(4)]  # fmt: skip
            spans = sorted(tuple(map(int, out.split())) for out in (p.communicate()[0].strip() for p in contenders) if out != "refused")
            double += any(a[1] > b[0] for a, b in zip(spans, spans[1:]))
    return double


def sweep_command(output: Path, min_duration: str = "8") -> list[str]:
    return [sys.executable, "-m", "framework.cli", "run", "digits_cnn", "--engines", "onnxruntime-cpu,pytorch-cpu", "--precisions", "fp32,fp16",
            "--batch-sizes", "1,8", "--iterations", "10", "--min-duration", min_duration, "--output", str(output), "--quiet"]  # fmt: skip


def kill_mid_measurement(code: Path, output: Path, min_duration: str = "8") -> int:
    """Start a sweep in its own session, SIGKILL it once a child measures; return the session id."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    sweep = subprocess.Popen(sweep_command(output, min_duration), cwd=code, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((output / "digits_cnn").rglob("child.log")):
        time.sleep(0.05)
    time.sleep(0.7)
    sweep.kill()
    sweep.wait()
    return sweep.pid


def survivors(session: int) -> int:
    """Processes of the session still running (zombies, exited and waiting to be reaped, do not count); the
    fork server counts too while it shuts down (a few seconds under load: the interpreter finalises torch)."""
    alive = 0
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            alive += os.getsid(pid) == session and state != "Z"
        except (ProcessLookupError, FileNotFoundError, IndexError):
            continue
    return alive


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def orphan_trials(code: Path, trials: int) -> tuple[int, int]:
    """(trials where a process of the killed sweep still ran 2 s later, trials where anything under the
    results folder was written between 2 s and 12 s after the kill, as an orphan finishing its experiment)."""
    running = wrote = 0
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(trials):
            output = Path(tmp) / str(trial)
            session = kill_mid_measurement(code, output)
            time.sleep(2)
            running += survivors(session) > 0
            before = snapshot(output)
            time.sleep(10)
            wrote += snapshot(output) != before
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):  # clean up before the next trial
                try:
                    if os.getsid(pid) == session:
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return running, wrote


def tables_match(model_dir: Path) -> bool:
    with (model_dir / "summary.csv").open() as handle:
        rows = {(r["shape"], r["engine"], r["precision"], r["batch_size"]): r for r in csv.DictReader(handle)}
    for path in model_dir.rglob("summary.json"):
        parts = path.relative_to(model_dir).parts
        if "repeats" in parts or "cache" in parts or any(p.startswith(".") for p in parts):
            continue
        summary = json.loads(path.read_text())
        row = rows.get((summary["shape_tag"], summary["engine"], summary["precision"], str(summary["batch_size"])))
        if row is None or row["status"] != summary["status"]:
            return False
        if summary.get("latency"):
            with (path.parent / "latencies.csv").open() as handle:
                if (
                    sum(1 for _ in csv.DictReader(handle)) != summary["latency"]["n"]
                    or abs(float(row["median_ms"]) - summary["latency"]["median_ms"]) > 1e-9
                ):
                    return False
    return True


def kill_and_rerun(code: Path, loops: int) -> int:
    matched = 0
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp)
        for _ in range(loops):
            kill_mid_measurement(code, output, "1")
            rerun = subprocess.run(
                sweep_command(output, "1"), cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=False
            )
            time.sleep(1)  # an orphan of the killed sweep would write now
            matched += rerun.returncode == 0 and tables_match(output / "digits_cnn")
    return matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose framework/ runs (default: this one)")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--orphan-trials", type=int, default=5)
    parser.add_argument("--loops", type=int, default=20)
    args = parser.parse_args()
    code = args.code.resolve()
    print(f"code: {code}")
    print(f"lock: two of four contenders held it at once in {lock_trials(code, args.trials)} of {args.trials} trials")
    running, wrote = orphan_trials(code, args.orphan_trials)
    print(
        f"orphans: a process of the killed sweep ran 2 s later in {running} of {args.orphan_trials} trials (the fork server may still be "
        f"exiting); one wrote into the results folder 2-12 s after the kill in {wrote} of {args.orphan_trials}"
    )
    if args.loops:
        print(f"kill -9 then rerun: summary.csv matched the files in {kill_and_rerun(code, args.loops)} of {args.loops} loops")


if __name__ == "__main__":
    main()
