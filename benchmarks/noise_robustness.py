"""Print whether deploybench's figures stay honest on a busy machine: it loads the CPU itself, then checks three claims.

A shared machine makes a run slower and noisier without saying so, and ``compare`` of two identical noisy runs
once said "slower" (issue 14). Each part checks one promise, and the script exits 0 only when all hold:

A. Warnings: ``--runs`` runs of digits_cnn (onnxruntime-cpu, pytorch-cpu), alternately quiet and loaded by two
   busy-loop processes this script starts (their ``-c`` script begins with ``noise_load``; each stops by itself
   after ``--load-seconds`` or when this script dies, and is killed when its run ends). Every loaded result must
   warn "other processes used N% of a core ..." naming the load; no quiet result may carry that warning. Before
   a quiet run the script waits (at most ``--quiet-wait`` s) until other processes use under half a core; a
   quiet run that warns anyway prints the processes named, which are then not this script's.
B. No false verdict: two quiet runs of resnet18 on onnxruntime-cpu with ``--repeats 7``: compare must say
   "no significant difference".
C. A real difference: the same with ``--threads 2`` (A) and ``--threads 1`` (B): compare must say "slower".

B and C are about quiet runs: each side waits for a quiet machine first, every process prints whether others used
the CPU beside it, and a part in which any did is measured again (``--attempts`` in all, whatever its verdict);
the last attempt's claim then says how many processes ran on a busy machine.

    python benchmarks/noise_robustness.py [--part A,B,C] [--runs 4] [--output DIR] [--repeats 7]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framework.machine_check import WARN_CORES, OtherProcessesCPU, describe_processes
from framework.results.compare import compare, environment_differences, format_report
from framework.results.store import REPEATS_DIR, experiment_folders, load_result, load_results

REPO = Path(__file__).resolve().parent.parent
LOAD_TAG = "noise_load"  # first word of the load's -c script, so the warning's command text shows it
LOAD_SCRIPT = (f"{LOAD_TAG} = 'busy loop of benchmarks/noise_robustness.py'; import os, sys, time\n"
               "parent, deadline = os.getppid(), time.monotonic() + float(sys.argv[1])\n"
               "while time.monotonic() < deadline and os.getppid() == parent:\n"
               "    pass\n")  # fmt: skip
OTHERS = "other processes used"  # machine_check.other_cpu_warning's words
NO_DIFFERENCE, SLOWER = "no significant difference", "slower"  # compare.verdict's words
RUN_TIMEOUT_S = 600


def other_cpu(window_s: float = 2.0) -> tuple[float, list[tuple[float, int, str]]]:
    """Cores other processes (not this one nor its children) used over ``window_s``, and who used them."""
    others = OtherProcessesCPU(ancestors=False)
    others.scan()
    time.sleep(window_s)
    others.scan()
    return others.usage()


def wait_for_quiet(limit_s: float) -> str:
    """Wait until other processes use under half a core over 2 s, at most ``limit_s``; say how it went."""
    start = time.monotonic()
    while True:
        cores, used = other_cpu()
        waited = time.monotonic() - start
        if cores < WARN_CORES:
            return f"machine quiet ({100 * cores:.0f}% of a core used by others) after {waited:.0f} s"
        if waited >= limit_s:
            return f"machine NOT quiet after {waited:.0f} s: others used {100 * cores:.0f}% of a core: {describe_processes(used)}"


@contextlib.contextmanager
def cpu_load(count: int, seconds: float):
    """``count`` busy-loop processes for the body; each stops by itself after ``seconds`` (or when this script
    dies) and is killed when the body ends. Yields their PIDs."""
    loads = [subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, str(seconds)]) for _ in range(count)]
    try:
        time.sleep(0.5)  # running before the sweep starts
        yield [p.pid for p in loads]
    finally:
        for process in loads:
            process.kill()
            process.wait()


def deploybench_run(model: str, output: Path, engines: str, args, *extra: str) -> bool:
    """One ``deploybench run`` (fp32, batch 1, short adaptive loops, --force); True when it exited 0."""
    command = [sys.executable, "-m", "framework.cli", "run", model, "--engines", engines, "--precisions", "fp32", "--batch-sizes", "1",
               "--max-duration", str(args.max_duration), "--min-duration", str(args.min_duration), "--output", str(output),
               "--force", "--quiet", *extra]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode:
        print(f"  deploybench run exited {done.returncode}: {' '.join(command[3:])}\n  {done.stderr.strip()[-2000:]}")
    return done.returncode == 0


def cpu_warnings(result) -> list[str]:
    return [w for w in result.warnings if w.startswith(OTHERS)]


def run_a(index: int, loaded: bool, root: Path, args) -> tuple[list, list[int]]:
    """Run ``index`` of part A (loaded or quiet): its results, and the load's PIDs (none when quiet)."""
    kind = "loaded" if loaded else "quiet"
    output = root / "A" / f"run{index + 1}-{kind}"
    if not loaded:
        print(f"  run {index + 1}: {wait_for_quiet(args.quiet_wait)}")
    with cpu_load(2 if loaded else 0, args.load_seconds) as pids:
        started = time.monotonic()
        deploybench_run("digits_cnn", output, "onnxruntime-cpu,pytorch-cpu", args, "--limit", "200")
        print(f"  run {index + 1} ({kind}{f', load PIDs {pids}' if pids else ''}): {time.monotonic() - started:.0f} s")
    return load_results(output / "digits_cnn"), pids


def part_a(root: Path, args) -> list[tuple[str, bool, str]]:
    rows, loaded_ok, quiet_ok, problems = [], True, True, []
    for index in range(args.runs):
        loaded = index % 2 == 1
        results, pids = run_a(index, loaded, root, args)
        if len(results) != 2 or not all(r.status == "ok" for r in results):
            problems.append(f"run {index + 1}: {len(results)} results, statuses {[r.status for r in results]}")
        for r in results:
            found = cpu_warnings(r)
            named = sum(f"PID {pid}," in w for w in found for pid in pids)
            median = f"{r.latency.median_ms:.4f}" if r.latency else "-"
            rows.append((index + 1, "loaded" if loaded else "quiet", r.experiment.engine, median, f"{named}/{len(pids)}" if loaded else "",
                         "; ".join(found) or "-"))  # fmt: skip
            if loaded:
                loaded_ok &= any(LOAD_TAG in w for w in found)
            else:
                quiet_ok &= not found
    print(f"  {'run':>3s} {'kind':6s} {'engine':16s} {'median ms':>10s} {'load named':>10s}  other-processes warning")
    for run, kind, engine, median, named, text in rows:
        print(f"  {run:3d} {kind:6s} {engine:16s} {median:>10s} {named:>10s}  {text}")
    loaded_rows, quiet_rows = (sum(r[1] == kind for r in rows) for kind in ("loaded", "quiet"))
    return [("A: runs ended ok with both engines", not problems, "; ".join(problems) or f"{args.runs} runs"),
            ("A: every loaded result warns 'other processes used ...' naming the load", loaded_ok and loaded_rows > 0, f"{loaded_rows} results"),
            ("A: no quiet result warns 'other processes used ...'", quiet_ok and quiet_rows > 0,
             f"{quiet_rows} results" + ("" if quiet_ok else "; the processes named above are not this script's load"))]  # fmt: skip


def print_processes(model_dir: Path) -> tuple[int, int]:
    """Each process of each --repeats experiment under ``model_dir``: its median, and whether others used the CPU.
    Returns (processes that warned about other processes, processes)."""
    warned = total = 0
    for folder in experiment_folders(model_dir):
        merged = load_result(folder)
        print(f"    {merged.experiment.engine}: {merged.status}/{merged.validity}, threads {merged.engine_settings.get('threads')}")
        runs = sorted(folder.glob(f"{REPEATS_DIR}/*/"), key=lambda path: int(path.name) if path.name.isdigit() else -1)
        for path in runs:
            process = load_result(path)
            found = cpu_warnings(process)
            warned, total = warned + bool(found), total + 1
            median = f"{process.latency.median_ms:8.2f}" if process.latency else f"{'-':>8s}"
            print(f"      process {path.name}: median {median} ms, other processes: {'; '.join(found) or '-'}")
    return warned, total


def compare_runs(root: Path, sides: list[tuple[str, list[str]]], args) -> tuple[list, int, int]:
    """Two resnet18 runs (onnxruntime-cpu, ``--repeats``), each after waiting for a quiet machine, with the extra
    options of each side, compared: prints each process and compare's table. Returns the pairs, and how many of
    the processes warned that other processes used the CPU, of how many."""
    roots, warned, total = [], 0, 0
    for name, extra in sides:
        output = root / name
        print(f"  {name}: {wait_for_quiet(args.quiet_wait)}")
        started = time.monotonic()
        deploybench_run("resnet18", output, "onnxruntime-cpu", args, "--repeats", str(args.repeats), *extra)
        print(f"  {name} ({' '.join(extra) or 'default threads'}, --repeats {args.repeats}): {time.monotonic() - started:.0f} s")
        side_warned, side_total = print_processes(output / "resnet18")
        warned, total = warned + side_warned, total + side_total
        roots.append(output)
    pairs, notes = compare(*roots)
    print("  " + format_report(pairs, notes, environment_differences(*roots), 1.1).replace("\n", "\n  "))
    return pairs, warned, total


def compare_quiet(root: Path, sides: list[tuple[str, list[str]]], args) -> tuple[list, str]:
    """``compare_runs`` again (``--attempts`` in all) while any process ran beside other processes, whatever its
    verdict: the claims are about quiet runs. The pairs of the first clean attempt, else the last's, and a note."""
    for attempt in range(1, args.attempts + 1):
        print(f"  attempt {attempt} of {args.attempts}:")
        pairs, warned, total = compare_runs(root / f"attempt{attempt}", sides, args)
        note = f"attempt {attempt}: {warned} of {total} processes warned that other processes used the CPU"
        if not warned:
            break
        print(f"  {note}: {'measuring again' if attempt < args.attempts else 'no attempt left: the verdict comes from a busy machine'}")
    p_text = lambda p: "n/a" if p.p_value is None else f"{p.p_value:.4f}"
    pairs_text = "; ".join(f"B/A {p.ratio:.3f} [{p.ci_low:.3f}, {p.ci_high:.3f}], MWU p {p_text(p)}, {p.verdict}" for p in pairs)
    return pairs, f"{pairs_text or 'no pair compared'}; {note}"


def part_b(root: Path, args) -> list[tuple[str, bool, str]]:
    pairs, detail = compare_quiet(root / "B", [("same-a", []), ("same-b", [])], args)
    right = [p.verdict for p in pairs] == [NO_DIFFERENCE]
    return [(f"B: two identical quiet runs (--repeats {args.repeats}): '{NO_DIFFERENCE}'", right, detail)]


def part_c(root: Path, args) -> list[tuple[str, bool, str]]:
    pairs, detail = compare_quiet(root / "C", [("threads-2", ["--threads", "2"]), ("threads-1", ["--threads", "1"])], args)
    right = len(pairs) == 1 and pairs[0].verdict == SLOWER and pairs[0].ci_low > 1
    return [(f"C: 1 thread (B) against 2 threads (A), --repeats {args.repeats}: '{SLOWER}', significantly", right, detail)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="A,B,C", help="which parts, comma-separated (default A,B,C)")
    parser.add_argument("--runs", type=int, default=4, help="part A: runs, alternately quiet and loaded (default 4)")
    parser.add_argument("--output", type=Path, default=None, help="results folder, kept (default: a temporary one, removed)")
    parser.add_argument("--repeats", type=int, default=7, help="parts B, C: processes per side (default 7; compare gives no verdict under 7)")
    parser.add_argument("--max-duration", type=float, default=3.0, help="each timed loop's cap in seconds (default 3)")
    parser.add_argument("--min-duration", type=float, default=1.0, help="each timed loop's floor in seconds (default 1)")
    parser.add_argument("--load-seconds", type=float, default=120.0, help="part A: a load process stops by itself after this (default 120)")
    parser.add_argument("--attempts", type=int, default=2,
                        help="parts B, C: attempts in all; another while any process warned of other processes (default 2)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="before a quiet run, wait at most this for a quiet machine (default 60)")
    args = parser.parse_args()
    args.part = {p.strip().upper() for p in args.part.split(",") if p.strip()}
    if not args.part <= {"A", "B", "C"} or args.runs < 2 or args.repeats < 2 or args.attempts < 1:
        parser.error("--part takes A, B, C; --runs and --repeats at least 2, --attempts at least 1")
    return args


def main() -> int:
    args = parse_args()
    claims, begun = [], time.monotonic()
    with contextlib.ExitStack() as stack:
        root = args.output or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="noise_robustness_")))
        print(f"results under {root}")
        for name, part in (("A", part_a), ("B", part_b), ("C", part_c)):
            if name in args.part:
                print(f"part {name}:")
                started = time.monotonic()
                claims += part(root, args)
                print(f"part {name}: {time.monotonic() - started:.0f} s")
    for text, passed, detail in claims:
        print(f"{'PASS' if passed else 'FAIL'}: {text} ({detail})")
    print(f"total: {time.monotonic() - begun:.0f} s")
    return 0 if claims and all(passed for _, passed, _ in claims) else 1


if __name__ == "__main__":
    sys.exit(main())
