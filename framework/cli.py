"""deploybench: what each runtime (PyTorch, ONNX Runtime, TensorRT) costs your PyTorch model in latency, throughput, memory and accuracy.

The command line, and the only place exceptions become exit codes.

Exit status of ``run``: 0 when every experiment ended ok, skipped or unavailable; 1 when any failed; 2 for
bad input (unknown model, malformed config, bad arguments, results folder in use); 130 when interrupted. ``compare``: 1 when something got slower.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework import shape_mix_cli
from framework.errors import DeployBenchError, one_line

MAX_BATCH_SIZE = 1 << 20
TUNE_BUDGET_DEFAULT = 180.0


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as every other error is reported: one ``deploybench: error:``
    line, exit 2 (``--help`` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"deploybench: error: {self.prog.removeprefix('deploybench ')}: {message}\n")


def _csv(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if text.strip() and not all(items):
        raise argparse.ArgumentTypeError(f"an empty item in {text!r}")
    return [item for item in items if item]


def _ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(not 1 <= v <= MAX_BATCH_SIZE for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be between 1 and {MAX_BATCH_SIZE:,}, got {text!r}")
    return values


def _run_length_arguments(run: argparse.ArgumentParser) -> None:
    """``deploybench run``'s run length (``measure.convergence``): adaptive unless --iterations is given."""
    run.add_argument("--iterations", type=int, default=None,
                     help="fixed run length: at least N timed iterations and --min-duration, whichever ends later "
                          "(default: adaptive, until the median's 99%% CI is within --target-ci)")  # fmt: skip
    run.add_argument("--warmup", type=int, default=10, help="untimed warm-up: at least this many iterations (default 10; adaptive: and no trend)")
    run.add_argument("--min-duration", type=float, default=1.0, help="time at least this many seconds per timed loop (default 1.0)")
    run.add_argument("--warmup-duration", type=float, default=0.0, help="warm up at least this many seconds too (default 0)")
    run.add_argument("--target-ci", type=float, default=0.01,
                     help="adaptive: stop when the median's 99%% CI is within +-this share of it (default 0.01: +-1%%)")  # fmt: skip
    run.add_argument("--min-iterations", type=int, default=10, help="adaptive: at least this many timed iterations (default 10)")
    run.add_argument("--max-duration", type=float, default=30.0,
                     help="adaptive: at most this many seconds per timed loop (and per warm-up), converged or not (default 30)")  # fmt: skip


def _machine_and_tuning_arguments(run: argparse.ArgumentParser) -> None:
    """``deploybench run``'s CPU threads, quiet-machine check, ``--tune`` and ``--baseline``."""
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads of every engine, host threads of GPU engines (default: the physical cores this process may use)")  # fmt: skip
    run.add_argument("--pin", action="store_true", help="pin each experiment's process to one CPU of each of --threads physical cores")
    run.add_argument("--tune", action="store_true",
                     help="try each engine's documented options with short runs and measure its fastest valid configuration")  # fmt: skip
    run.add_argument("--tune-budget", type=float, default=TUNE_BUDGET_DEFAULT, metavar="SECONDS",
                     help="--tune: seconds of tuning per experiment; a configuration starts only within it (default 180)")  # fmt: skip
    run.add_argument("--precision-search", action=argparse.BooleanOptionalAction, default=True,
                     help="an int8/fp16 result that fails the accuracy floor: search the fastest recipe that passes (default on)")  # fmt: skip
    run.add_argument("--search-budget", type=float, default=300.0, metavar="SECONDS",
                     help="seconds of that search per experiment (default 300)")  # fmt: skip
    run.add_argument("--full-references", action="store_true",
                     help="PyTorch references by a forward pass at every batch size, never the batch of one's outputs repeated")  # fmt: skip
    run.add_argument("--baseline", default=None, metavar="ENGINE:PRECISION",
                     help="speedups against this (default: PyTorch fp32 with default options on the row's device kind)")  # fmt: skip
    run.add_argument("--require-quiet", action="store_true",
                     help="refuse to start (exit 2) when load average > usable CPUs / 2 or another process uses > 50%% of a core")  # fmt: skip


def _executor_arguments(run: argparse.ArgumentParser) -> None:
    """``deploybench run`` on a Ray cluster (``sweep.cluster``, ``sweep.ray_executor``): the local executor is the default."""
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: one experiment at a time here; ray: every experiment a Ray task, in parallel (deploybench[ray])")  # fmt: skip
    run.add_argument("--address", default=None, help="--executor ray: 'auto', a ray:// URL or HOST:PORT (default: start a local Ray instance)")
    run.add_argument("--exclusive-node", action="store_true",
                     help="--executor ray: a CPU experiment takes its whole node, never beside a GPU experiment's host thread")  # fmt: skip
    run.add_argument("--devices", type=_csv, default=None, metavar="KIND", help="--executor ray: GPU experiments once per GPU kind (e.g. H100,L4)")


def _cluster_settings(args):
    """--executor ray's settings; None for the local executor (which refuses the Ray-only flags)."""
    from framework.sweep.cluster import ClusterSettings

    if args.devices == []:  # `--devices ""`: not "any GPU" by accident
        raise DeployBenchError("--devices: names no GPU kind (give Ray accelerator types, e.g. --devices H100,L4, or leave the flag out)")
    if args.executor == "local":
        flags = (("--address", args.address), ("--exclusive-node", args.exclusive_node), ("--devices", args.devices))
        given = [flag for flag, value in flags if value]
        if given:
            raise DeployBenchError(f"{', '.join(given)}: only with --executor ray")
        return None
    if shape_mix_cli.wanted(args):
        raise DeployBenchError("--shape-mix and --shape-distribution do not run on --executor ray yet: use the local executor")
    return ClusterSettings(address=args.address, exclusive_node=args.exclusive_node, devices=tuple(args.devices or ()))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deploybench", description=__doc__.splitlines()[0].removeprefix("deploybench: "),
                     epilog="Start with `deploybench list`, then `deploybench run MODEL`; results and report.html land in "
                            "measurements_results/MODEL/.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", action="append", type=Path, default=[], help="extra folder of model plugins (repeatable)")

    run = sub.add_parser("run", parents=[common], help="measure one model in every engine")
    run.add_argument("model")
    run.add_argument("--shapes", nargs="+", default=None, metavar='"[(224,224,3)]"',
                     help="example shapes, one tuple per model input; each value is a separate measurement (default: the config's)")  # fmt: skip
    run.add_argument("--engines", type=_csv, default=None, help="comma-separated (default: every engine this machine can run)")
    run.add_argument("--precisions", type=_csv, default=["fp32"], help="comma-separated: fp32, fp16, int8 (default fp32)")
    run.add_argument("--batch-sizes", type=_ints, default=[1], help="comma-separated (default 1)")
    _run_length_arguments(run)
    run.add_argument("--output", type=Path, default=Path("measurements_results"), help="results folder")
    run.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript", help="torch.onnx exporter")
    run.add_argument("--keep-outliers", action="store_true", help="draw outliers in latency plots (default: NaN beyond 1.5 IQR)")
    run.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                     help="engine option, e.g. cuda_graph=true, channels_last=false, compile=max-autotune (repeatable)")  # fmt: skip
    run.add_argument("--sample-interval-ms", type=float, default=20.0,
                     help="resource sampler period during the timed loops: RSS, CPU %%, GPU memory/utilisation/clocks (0: off)")  # fmt: skip
    run.add_argument("--limit", type=int, default=None, help="accuracy on at most this many samples of the model's dataset (default: all)")
    run.add_argument("--repeats", type=int, default=1,
                     help="measure each experiment in K separate processes, alternating engines; compare then tests per-process medians")  # fmt: skip
    run.add_argument("--in-process", action="store_true", help="measure in this process instead of one child process per experiment (debugging)")
    run.add_argument("--timeout", type=float, default=1800.0, help="seconds one experiment's process may take before it is killed (default 1800)")
    run.add_argument("--force", action="store_true", help="measure again experiments an earlier run finished (default: resume, keeping them)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    _machine_and_tuning_arguments(run)
    _executor_arguments(run)
    shape_mix_cli.add_arguments(run)

    sub.add_parser("list", parents=[common], help="models found, and which engines this machine can run")

    for name, text in (("report", "rebuild summary tables, plots, report.md and report.html from saved results"),
                       ("plot", "rebuild the plots from saved results")):  # fmt: skip
        rebuild = sub.add_parser(name, help=text)
        rebuild.add_argument("model", help="model name: its results are in OUTPUT/<model>")
        rebuild.add_argument("--output", type=Path, default=Path("measurements_results"), help="results folder")
        rebuild.add_argument("--keep-outliers", action="store_true", help="draw outliers in latency plots")
        rebuild.add_argument("--baseline", default=None, metavar="ENGINE:PRECISION", help="speedups against this (as in run)")

    cmp = sub.add_parser("compare", help="compare two result folders: faster, slower or no significant difference")
    cmp.add_argument("results_a", type=Path)
    cmp.add_argument("results_b", type=Path)
    cmp.add_argument("--factor", type=float, default=1.1, help="minimum effect for a verdict, as in asv (default 1.1)")
    cmp.add_argument("--strict", action="store_true", help="refuse to compare results from different environments")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(args)
        if args.command == "compare":
            return _compare(args)
        if args.command in ("report", "plot"):
            return _rebuild(args)
        return _run(args)
    except DeployBenchError as exc:
        print(f"deploybench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `deploybench list | head`: the reader has what it wanted
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        print("deploybench: interrupted; finished experiments are kept, run the same command again to resume", file=sys.stderr)
        if "framework.sweep.ray_executor" in sys.modules:
            sys.modules["framework.sweep.ray_executor"].exit_after_interrupt(130)
        return 130
    except Exception as exc:  # not ours (a full disk, a library's bug): one line here, the traceback in a file
        log = _error_log(getattr(args, "output", None) or getattr(args, "results_a", None) or Path("."))
        print(f"deploybench: error: {one_line(exc)}{f'; the traceback is in {log}' if log else ''}", file=sys.stderr)
        return 1


def _error_log(folder: Path) -> Path | None:
    """Write the current exception's traceback to ``folder/deploybench-error.log``; None if that fails too."""
    import traceback

    path = Path(folder) / "deploybench-error.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
    except OSError:
        return None
    return path


def parse_options(items: list[str]) -> dict[str, object]:
    """``["cuda_graph=true", "workspace_mb=2048"]`` -> ``{"cuda_graph": True, "workspace_mb": 2048}``."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise DeployBenchError(f"--option {item!r}: expected NAME=VALUE")
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            options[name] = True
        elif lowered in ("false", "no", "off", "0"):
            options[name] = False
        else:
            options[name] = int(value) if value.strip().isdigit() else value
    return options


def _list(args) -> int:
    from framework.engines import ENGINES, engine_availability
    from framework.registry import discover

    registry = discover(args.models_dir)
    print("models:")
    for name in registry.names():
        print(f"  {name:24s} {registry.models[name].source}")
    for error in registry.errors:
        print(f"  (broken) {error}")
    print("engines:")
    for name in ENGINES:
        reason = engine_availability(name)
        print(f"  {name:24s} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def _rebuild(args) -> int:
    """Everything a run draws and tabulates, again, from the files it saved: nothing is measured."""
    from framework.files import safe_component
    from framework.report.publish import publish
    from framework.results.store import load_results

    model_dir = args.output / safe_component(args.model)
    if not model_dir.is_dir() or not load_results(model_dir):
        raise DeployBenchError(f"no saved experiments in {model_dir}; run `deploybench run {args.model}` first")
    full = args.command == "report"
    from framework.results.speedup import parse_baseline

    published = publish(model_dir, keep_outliers=args.keep_outliers, tables=full, report=full, baseline=parse_baseline(args.baseline))
    print(f"plots: {len(published.plots)} in {model_dir / 'plots'}")
    if full:
        print(f"report: {published.report_md}")
        print(f"report: {published.report_html}")
    return 0


def _compare(args) -> int:
    """Exit 1 when something got slower beyond the factor (a CI gate), 2 when refused, else 0."""
    from framework.results.compare import compare, environment_differences, format_report

    for folder in (args.results_a, args.results_b):
        if not folder.is_dir():
            raise DeployBenchError(f"results folder {folder} does not exist")
    env_diffs = environment_differences(args.results_a, args.results_b)
    if env_diffs and args.strict:
        raise DeployBenchError("refusing to compare results from different environments (--strict): " + "; ".join(env_diffs))
    pairs, notes = compare(args.results_a, args.results_b, args.factor)
    print(format_report(pairs, notes, env_diffs, args.factor))
    if not pairs:
        raise DeployBenchError("no valid experiment is present in both folders")
    return 1 if any(p.verdict == "slower" for p in pairs) else 0


def settings_from_args(args):
    """The sweep's settings from ``deploybench run``'s arguments."""
    from framework.results.speedup import parse_baseline
    from framework.settings import MeasureSettings, SweepSettings

    measure = MeasureSettings(iterations=args.iterations, warmup=args.warmup, min_duration=args.min_duration,
                              warmup_duration=args.warmup_duration, target_ci=args.target_ci, min_iterations=args.min_iterations,
                              max_duration=args.max_duration, engine_options=parse_options(args.option),
                              accuracy_limit=args.limit, sample_interval_s=args.sample_interval_ms / 1000)  # fmt: skip
    return SweepSettings(
        engines=tuple(args.engines) if args.engines is not None else None, precisions=tuple(args.precisions),
        batch_sizes=tuple(args.batch_sizes), measure=measure, output=args.output, exporter=args.exporter,
        keep_outliers=args.keep_outliers, isolate=not args.in_process, repeats=args.repeats, timeout_s=args.timeout, force=args.force,
        threads=args.threads, pin=args.pin, tune=args.tune, tune_budget=args.tune_budget, baseline=parse_baseline(args.baseline),
        precision_search=args.precision_search, search_budget=args.search_budget, full_references=args.full_references,
        cluster=_cluster_settings(args),
    )  # fmt: skip


def _run(args) -> int:
    from framework.files import safe_component
    from framework.locking import refuse_if_locked

    refuse_if_locked(args.output / safe_component(args.model))  # before the plugins import torch & co.
    from framework.machine_check import check_machine
    from framework.registry import discover
    from framework.settings import SweepSettings
    from framework.shapes import check_example_shapes, parse_example_shapes
    from framework.sweep.runner import run_model

    if args.tune_budget != TUNE_BUDGET_DEFAULT and not args.tune:
        raise DeployBenchError("--tune-budget bounds --tune's search: add --tune, or drop --tune-budget")
    if args.search_budget != SweepSettings.search_budget and not args.precision_search:
        raise DeployBenchError("--search-budget bounds the precision search, which --no-precision-search turns off: drop one of them")
    settings = settings_from_args(args)
    settings.validate()
    model = discover(args.models_dir).get(args.model)
    if shape_mix_cli.wanted(args):  # --shape-mix / --shape-distribution: the distribution's buckets, not example shapes
        return shape_mix_cli.run(args, model, settings)
    shapes_list = [parse_example_shapes(s) for s in args.shapes] if args.shapes else [None]
    check_example_shapes(model.load_config(), shapes_list, model.loader_class)  # bad --shapes: exit 2 before anything runs
    shape_mix_cli.warn_outside_profile(model, shapes_list, settings)  # outside the TensorRT profile: a warning for other engines
    check_machine(args.require_quiet, None if args.quiet else print)  # one line; --require-quiet: exit 2 when busy
    results = run_model(model, shapes_list, settings, report=None if args.quiet else print)
    failed = [r for r in results if r.status == "failed"]
    measured = [r for r in results if r.status == "ok"]
    if failed:
        print(f"deploybench: {len(failed)} of {len(results)} experiments failed (see summary.md)", file=sys.stderr)
    elif measured and not any(r.validity == "valid" for r in measured):
        print(f"deploybench: every measured result ({len(measured)}) is INVALID (see summary.md)", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
