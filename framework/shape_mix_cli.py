"""``deploybench run``'s shape-mix flags and what they run (``sweep.shape_study``): kept out of ``cli`` so
its hooks there stay two lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework.errors import DeployBenchError


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--shape-mix", action="store_true",
                     help="measure every engine across the config's shape distribution (per bucket, a mixed stream, static "
                          "against dynamic, padding and TensorRT profile recommendations) instead of at example shapes")  # fmt: skip
    run.add_argument("--shape-distribution", type=Path, default=None, metavar="FILE",
                     help="observed request shapes, one per row (CSV with a header naming the dims, or JSON); implies --shape-mix")  # fmt: skip
    run.add_argument("--mix-iterations", type=int, default=1000, help="--shape-mix: requests in the mixed stream (default 1000)")
    run.add_argument("--mix-seed", type=int, default=0, help="--shape-mix: seed of the mixed stream's draws (default 0)")


def wanted(args) -> bool:
    return bool(getattr(args, "shape_mix", False) or getattr(args, "shape_distribution", None))


def run(args, model, settings) -> int:
    """The shape-mix study; exit status 1 when any experiment failed."""
    from framework.machine_check import check_machine
    from framework.sweep.shape_study import MixSettings, run_shape_mix

    if args.shapes:
        raise DeployBenchError("--shapes measures example shapes one by one; --shape-mix measures the distribution's buckets: give one of them")
    if args.tune or args.repeats != 1:
        raise DeployBenchError("--shape-mix measures each engine in the configuration given (--option); --tune and --repeats do not apply")
    mix = MixSettings(distribution_file=args.shape_distribution, mix_iterations=args.mix_iterations, seed=args.mix_seed)
    check_machine(args.require_quiet, None if args.quiet else print)
    try:
        results = run_shape_mix(model, settings, mix, report=(lambda _: None) if args.quiet else print)
    except KeyboardInterrupt:  # not cli's "run the same command again to resume": a shape mix measures everything again
        print("deploybench: interrupted; a shape-mix run does not resume: the same command measures every experiment again",
              file=sys.stderr)  # fmt: skip
        return 130
    failed = [r for r in results if r.status != "ok"]
    if failed:
        print(f"deploybench: {len(failed)} of {len(results)} shape-mix experiments failed (see shape_mix/shape_mix.md)", file=sys.stderr)
    return 1 if failed else 0


def warn_outside_profile(model, shapes_list: list, settings) -> None:
    """``--shapes`` outside the config's TensorRT profile: a warning when no TensorRT engine runs (``distribution``)."""
    from framework.distribution import warn_outside_profile as warn

    warn(model.load_config(), shapes_list, settings.chosen_engines(), model.loader_class)
