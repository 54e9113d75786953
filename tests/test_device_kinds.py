"""``--devices H100,L4`` (``--executor ray``): a GPU experiment planned once per GPU kind, each in a folder of
its own, kept apart in the fingerprint and the Ray slot; the report groups rows by GPU kind, speedups stay
within a kind, and the verdict compares the same configuration across kinds. The GPUs are not here: the
results below are written as a Ray sweep on an H100 and an L4 node writes them, then read by the real
report, verdict and compare."""

import numpy as np
import pytest

from framework.cli import main
from framework.errors import DeployBenchError
from framework.measure.stats import latency_summary
from framework.measure.timing import Timing
from framework.results.compare import compare
from framework.results.record import Experiment, Result, Samples
from framework.results.speedup import speedups
from framework.results.store import load_results, save_result
from framework.settings import SweepSettings
from framework.sweep import plan
from framework.sweep.cluster import ClusterSettings
from framework.sweep.runner import verdict_text

KINDS = ("H100", "L4")
MEDIANS_MS = {("pytorch-cuda", "fp32", "H100"): 4.0, ("pytorch-cuda", "fp16", "H100"): 2.0,
              ("pytorch-cuda", "fp32", "L4"): 12.0, ("pytorch-cuda", "fp16", "L4"): 5.0}  # fmt: skip


def measured(root, medians=MEDIANS_MS, seed: int = 0):
    """Results as the driver saves them: one folder per experiment and GPU kind, samples around each median."""
    rng = np.random.default_rng(seed)
    for (engine, precision, kind), median in medians.items():
        experiment = Experiment("m", "8x8", ((8, 8),), engine, precision, 1, kind)
        ns = tuple(int(v) for v in median * 1e6 * (1 + 0.01 * rng.standard_normal(300)))
        latency = latency_summary(Timing(ns, sum(ns), 0, "cuda_events"), 1)
        node = {"gpu": f"NVIDIA {kind}", "hostname": f"node-{kind.lower()}"}
        result = Result(experiment, "pytorch", "cuda", "ok", validity="valid", samples=Samples(ns, ns), latency=latency, latency_model=latency,
                        machine={"node": node}, configuration={"threads": 16 if kind == "H100" else 8})  # fmt: skip
        save_result(experiment.folder(root), result)
    return root


def test_a_gpu_engine_is_planned_once_per_gpu_kind_and_a_cpu_engine_once():
    settings = SweepSettings(engines=["pytorch-cuda", "onnxruntime-cpu"], precisions=["fp32"], cluster=ClusterSettings(devices=KINDS))
    planned = plan.experiments("m", "8x8", [(8, 8)], ["pytorch-cuda", "onnxruntime-cpu"], settings, 1)
    assert [(e.engine, e.device_kind) for e in planned] == [("pytorch-cuda", "H100"), ("pytorch-cuda", "L4"), ("onnxruntime-cpu", None)]
    folders = [e.folder("out").name for e in planned]
    assert folders == ["pytorch-cuda__fp32__bs1__H100", "pytorch-cuda__fp32__bs1__L4", "onnxruntime-cpu__fp32__bs1"]
    cluster = settings.cluster
    assert cluster.task_options("cuda", "L4")["accelerator_type"] == "L4" and "accelerator_type" not in cluster.task_options("cuda")
    assert cluster.fingerprint_fields("cuda", "L4") == {"devices": ["L4"]} and cluster.fingerprint_fields("cpu") == {}
    assert [e.device_kind for e in plan.experiments("m", "8x8", [(8, 8)], ["pytorch-cuda"], SweepSettings(precisions=["fp32"]), 1)] == [None]


def test_a_cluster_without_one_of_the_kinds_is_refused_naming_it_and_a_kind_named_twice_too():
    missing = ClusterSettings(devices=KINDS).missing_resources({"cuda"}, {"GPU": 2.0, "accelerator_type:H100": 2.0})
    assert missing == ["--devices L4: no node of that GPU kind (the cluster has H100)"]
    with pytest.raises(DeployBenchError, match="named twice"):
        ClusterSettings(devices=("H100", "H100")).validate()


def test_the_report_groups_by_gpu_kind_and_the_verdict_compares_the_kinds(tmp_path):
    model_dir = measured(tmp_path / "out") / "m"
    assert main(["report", "m", "--output", str(tmp_path / "out")]) == 0
    report = (model_dir / "report.md").read_text()
    assert "### Across GPU kinds" in report
    assert "- shape 8x8, batch 1, pytorch-cuda fp16: H100 2 ms, L4 5 ms (2.50x slower)" in report
    assert "- shape 8x8, batch 1, pytorch-cuda fp32: H100 4 ms, L4 12 ms (3.00x slower)" in report  # host threads differ: still the same experiment
    every = report[report.index("### Batch size 1") :]
    rows = [line for line in every.splitlines() if line.startswith("| pytorch-cuda on ")]
    assert [row.split("|")[1].strip() for row in rows] == ["pytorch-cuda on H100"] * 2 + ["pytorch-cuda on L4"] * 2  # grouped by kind
    verdict = verdict_text(model_dir, None)
    assert "batch 1: pytorch-cuda on H100 fp16 with threads=16, 2 ms (500 items/s), 2.00x pytorch-cuda on H100 fp32 (threads=16)" in verdict
    assert "across GPU kinds" in verdict and "pytorch-cuda fp16: H100 2 ms, L4 5 ms (2.50x slower)" in verdict
    speedups = {r.experiment.series: r for r in load_results(model_dir)}
    assert set(speedups) == {"pytorch-cuda fp32 on H100", "pytorch-cuda fp16 on H100", "pytorch-cuda fp32 on L4", "pytorch-cuda fp16 on L4"}
    [l4_fp16] = [line for line in (model_dir / "summary.md").read_text().splitlines() if line.startswith("| pytorch-cuda on L4 | fp16 |")]
    assert "| 2.40x [" in l4_fp16  # L4 fp16 against L4 fp32 (12 / 5 ms), not against H100's fp32 (0.80x)


def test_compare_matches_the_same_gpu_kind_only(tmp_path):
    a = measured(tmp_path / "a")
    b = measured(tmp_path / "b", {**MEDIANS_MS, ("pytorch-cuda", "fp32", "L4"): 18.0}, seed=1)
    pairs, notes = compare(a, b)
    ratios = {pair.key[-1] + " " + pair.key[3]: round(pair.ratio, 2) for pair in pairs}
    assert ratios == {"H100 fp32": 1.0, "H100 fp16": 1.0, "L4 fp32": 1.5, "L4 fp16": 1.0} and notes == []


def test_a_gpu_kinds_speedup_never_takes_a_gpu_baseline_of_unknown_kind_but_a_cpu_baseline_serves_every_kind(tmp_path):
    """An earlier run without --devices left kindless pytorch-cuda results in the folder: a row on L4 whose L4
    baseline failed has no speedup, not one against a GPU of another kind; --baseline on a CPU engine still applies."""
    rows = (("pytorch-cuda", "fp32", None, 4.0), ("pytorch-cuda", "fp16", "L4", 5.0), ("onnxruntime-cpu", "fp32", None, 30.0))
    for engine, precision, kind, median in rows:
        experiment = Experiment("m", "8x8", ((8, 8),), engine, precision, 1, kind)
        ns = tuple(int(median * 1e6) + i for i in range(100))
        latency = latency_summary(Timing(ns, sum(ns), 0, "cuda_events"), 1)
        device = "cpu" if engine.endswith("cpu") else "cuda"
        result = Result(experiment, "pytorch", device, "ok", validity="valid", samples=Samples(ns, ns), latency=latency)
        save_result(experiment.folder(tmp_path), result)
    results = load_results(tmp_path / "m")
    by_series = {r.experiment.series: r for r in results}
    l4 = by_series["pytorch-cuda fp16 on L4"]
    assert speedups(results).get(id(l4)) is None  # was 0.80x: L4 fp16 against a GPU of unknown kind's fp32
    assert round(speedups(results, baseline=("onnxruntime-cpu", "fp32"))[id(l4)].ratio) == 6


def test_compare_on_the_command_line_names_each_pair_and_each_one_sided_experiment_with_its_kind(tmp_path, capsys):
    """It crashed (ValueError: too many values to unpack) on any key with a GPU kind."""
    a = measured(tmp_path / "a")
    b = measured(tmp_path / "b", {k: v for k, v in MEDIANS_MS.items() if k[2] == "H100"}, seed=1)
    assert main(["compare", str(a / "m"), str(b / "m")]) == 0
    out = capsys.readouterr().out
    assert "m 8x8 pytorch-cuda fp16 bs1 on H100 " in out and "m 8x8 pytorch-cuda fp32 bs1 on L4: only in A" in out


def test_the_throughput_against_batch_size_figure_draws_one_line_per_gpu_kind(tmp_path):
    """An H100's and an L4's points of the same engine and precision were one zigzag line named without a kind."""
    from framework.report.comparisons import _series

    results = load_results(measured(tmp_path) / "m")
    lines = {key: [r.experiment.series for r in points] for key, points in _series(results).items()}
    assert lines[("pytorch-cuda", "fp16", "L4")] == ["pytorch-cuda fp16 on L4"]
    assert lines[("pytorch-cuda", "fp32", "H100")] == ["pytorch-cuda fp32 on H100"]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_an_empty_devices_flag_is_refused_naming_it(executor, tmp_path, capsys):
    """`--devices ""` (an unset shell variable) ran on any GPU kind, or with the local executor was ignored."""
    assert main(["run", "digits_cnn", "--engines", "pytorch-cpu", "--executor", executor, "--devices", "", "--output", str(tmp_path)]) != 0
    assert "--devices: names no GPU kind" in capsys.readouterr().err
