"""compare on constructed A/B result folders with known answers, written as the runner writes them."""

import dataclasses

import numpy as np
import pytest

from framework.cli import main
from framework.files import write_json
from framework.measure.stats import latency_summary
from framework.measure.timing import Timing
from framework.results.compare import (
    MIN_PROCESSES,
    NEEDS_REPEATS,
    bootstrap_medians,
    bootstrap_ratio_ci,
    compare,
    load_sides,
    mann_whitney_u,
    verdict,
)
from framework.results.record import Experiment, Result, Samples
from framework.results.store import load_result, save_result

ENV = {"cpu_model": "Test CPU", "python": "3.11.7", "gpus": [], "packages": {"torch": "2.14.1", "onnxruntime": "1.32.0"}}
SAME = "no significant difference"


def write_run(root, medians_ms: dict, env=ENV, seed=0, validity="valid", process_medians: dict | None = None):
    """One model, one experiment per engine, 200 samples around each median (1% jitter); ``process_medians``
    gives an engine the per-process medians of a --repeats run."""
    rng = np.random.default_rng(seed)
    write_json(root / "m" / "environment.json", env)
    for engine, median in medians_ms.items():
        experiment = Experiment("m", "8x8", ((8, 8),), engine, "fp32", 1)
        samples = median * (1 + 0.01 * rng.standard_normal(200))
        result = Result(experiment, "test", "cpu", "ok", validity=validity, samples=Samples(tuple(int(v * 1e6) for v in samples)),
                        process_medians_ms=(process_medians or {}).get(engine))  # fmt: skip
        save_result(experiment.folder(root), result)
    return root


def processes(median: float, count: int = 7, spread: float = 0.01, seed: int = 0) -> list[float]:
    """Per-process medians of a --repeats run: processes differ from each other by ``spread``."""
    return list(median * (1 + spread * np.random.default_rng(seed).standard_normal(count)))


def compared(a, b, **kwargs):
    """compare's pairs by engine, each checked: its interval contains its estimate."""
    pairs, notes = compare(a, b, **kwargs)
    assert all(p.ci_low <= p.ratio <= p.ci_high for p in pairs), pairs
    return {p.key[2]: p for p in pairs}, notes


def test_identical_single_process_runs_need_repeats_and_exit_0(tmp_path, capsys):
    """One process a side: the ratio and its interval, never a verdict (before, two identical runs said slower)."""
    a = write_run(tmp_path / "a", {"same": 10.0, "apart": 10.0}, seed=1)
    b = write_run(tmp_path / "b", {"same": 10.0, "apart": 15.0}, seed=2)
    by_engine, notes = compared(a, b)
    assert {p.verdict for p in by_engine.values()} == {NEEDS_REPEATS} and notes == []
    assert NEEDS_REPEATS == "needs --repeats (>= 7 per side) for a verdict"
    assert by_engine["apart"].ratio == pytest.approx(1.5, rel=0.01) and by_engine["apart"].ci_low > 1.4  # printed, not judged
    assert by_engine["same"].processes == (1, 1) and by_engine["same"].p_value is None
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert NEEDS_REPEATS in out and "slower" not in out and "[1.4" in out and "1/1" in out
    assert "resamples one process's samples, which are not independent" in out


def test_a_1_5x_slowdown_with_7_repeats_is_slower_and_exits_1(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"e": 10.0}, process_medians={"e": processes(10.0, seed=1)})
    b = write_run(tmp_path / "b", {"e": 15.0}, seed=3, process_medians={"e": processes(15.0, seed=2)})
    pair = compared(a, b)[0]["e"]
    assert pair.verdict == "slower" and pair.processes == (7, 7) and pair.p_value == pytest.approx(2 / 3432)
    assert pair.ratio == pytest.approx(np.median(processes(15.0, seed=2)) / np.median(processes(10.0, seed=1)))
    assert 1.4 < pair.ci_low < pair.ratio < pair.ci_high < 1.6
    assert main(["compare", str(a), str(b)]) == 1  # a CI gate
    out = capsys.readouterr().out
    assert "slower" in out and "7/7" in out and f"geometric mean of B/A over 1 pairs: {pair.ratio:.3f}" in out
    assert "not independent" not in out
    assert main(["compare", str(b), str(a)]) == 0
    assert "faster" in capsys.readouterr().out


def test_identical_distributions_with_7_repeats_are_no_significant_difference(tmp_path):
    """Processes 3% apart from each other, the same on both sides: never a verdict, whatever the factor."""
    for seed in range(20):
        a = write_run(tmp_path / f"a{seed}", {"e": 10.0}, process_medians={"e": processes(10.0, spread=0.03, seed=2 * seed)})
        b = write_run(tmp_path / f"b{seed}", {"e": 10.0}, process_medians={"e": processes(10.0, spread=0.03, seed=2 * seed + 1)})
        for factor in (1.0, 1.1):
            pair = compared(a, b, factor=factor)[0]["e"]
            assert pair.verdict == SAME and pair.processes == (7, 7), (seed, pair)
    assert main(["compare", str(a), str(b)]) == 0


def test_fewer_than_7_processes_a_side_get_an_estimate_but_no_verdict(tmp_path):
    """With 5 a side Mann-Whitney's smallest p is 2/252 = 0.0079: it can never reach 0.002."""
    a = write_run(tmp_path / "a", {"e": 10.0}, process_medians={"e": processes(10.0, count=5)})
    b = write_run(tmp_path / "b", {"e": 15.0}, process_medians={"e": processes(15.0, count=5, seed=1)})
    pair = compared(a, b)[0]["e"]
    assert pair.verdict == NEEDS_REPEATS and pair.processes == (5, 5) and pair.p_value == pytest.approx(2 / 252)
    assert pair.ci_low > 1.4 and MIN_PROCESSES == 7
    assert main(["compare", str(a), str(b)]) == 0


def test_repeats_on_one_side_only_is_noted_and_gets_no_verdict(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"e": 10.0}, process_medians={"e": processes(10.0)})
    b = write_run(tmp_path / "b", {"e": 15.0}, seed=1)
    by_engine, notes = compared(a, b)
    assert by_engine["e"].verdict == NEEDS_REPEATS and by_engine["e"].processes == (7, 1) and by_engine["e"].p_value is None
    assert notes == ["m 8x8 e fp32 bs1: only one side has --repeats (7 vs 1 processes): estimate and interval from the pooled samples, no verdict"]
    assert main(["compare", str(a), str(b)]) == 0
    assert notes[0] in capsys.readouterr().out


def test_the_interval_contains_the_estimate_for_any_input():
    """Property: over many random inputs (processes or samples, odd and even counts, ties, skew, outliers),
    the 99% percentile interval of median(b) / median(a) contains that ratio."""
    for seed in range(400):
        rng = np.random.default_rng(seed)
        n_a, n_b = rng.integers(1, 16 if seed % 2 else 400, size=2)
        draw = [rng.lognormal(0, 0.5, size=2 * max(n_a, n_b)), rng.exponential(1, size=2 * max(n_a, n_b)) + 0.1,
                np.round(rng.uniform(1, 3, size=2 * max(n_a, n_b)), 1), np.r_[np.ones(max(n_a, n_b)), 50 * np.ones(max(n_a, n_b))]]  # fmt: skip
        values = draw[seed % 4] * rng.uniform(0.5, 2)
        a, b = rng.permutation(values)[:n_a], rng.permutation(values)[:n_b] * rng.uniform(0.5, 2)
        low, high = bootstrap_ratio_ci(a, b, seed=seed)
        estimate = np.median(b) / np.median(a)
        assert low <= estimate <= high, (seed, n_a, n_b, low, estimate, high)


def test_bootstrap_medians_are_distributed_as_those_of_resamples():
    """The order-statistic draw against the plain one (resample, then the median), odd and even counts, ties."""
    for values in ([3.0], [1.0, 4.0], [5.0, 1.0, 2.0, 9.0, 7.0], [1.0, 2.0, 2.0, 3.0, 8.0, 9.0, 10.0, 10.0], list(range(12))):
        x, rng = np.asarray(values), np.random.default_rng(len(values))
        direct = bootstrap_medians(x, 40_000, rng)
        plain = np.median(rng.choice(x, size=(40_000, x.size)), axis=1)
        support = np.union1d(direct, plain)
        share = lambda m: np.array([(m == v).mean() for v in support])
        assert np.abs(share(direct) - share(plain)).sum() / 2 < 0.02, values  # total variation distance
    low, high = bootstrap_ratio_ci(np.full(50, 2.0), np.full(50, 3.0))
    assert low == high == 1.5


def test_verdict_is_asv_rule_significant_and_beyond_the_factor():
    assert verdict(1.05, 1.03, 1.07, factor=1.1) == SAME  # real but small
    assert verdict(1.15, 1.12, 1.18, factor=1.1) == "slower"
    assert verdict(1.15, 0.98, 1.30, factor=1.1) == SAME  # too uncertain
    assert verdict(1.15, 1.12, 1.18, factor=1.1, p_value=0.001) == "slower"
    assert verdict(1.15, 1.12, 1.18, factor=1.1, p_value=0.01) == SAME  # Mann-Whitney not significant
    assert verdict(0.8, 0.75, 0.85, factor=1.1, p_value=0.001) == "faster"


def test_invalid_results_are_never_compared(tmp_path):
    a = write_run(tmp_path / "a", {"e": 10.0})
    b = write_run(tmp_path / "b", {"e": 20.0}, validity="invalid")
    pairs, notes = compare(a, b)
    assert pairs == [] and notes == ["m 8x8 e fp32 bs1: not compared, B: invalid ()"]


def test_environment_mismatch_is_a_warning_or_with_strict_a_refusal(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"e": 10.0})
    other = write_run(tmp_path / "c", {"e": 10.0}, env={**ENV, "cpu_model": "Other CPU", "packages": {"torch": "2.9.1"}})
    assert main(["compare", str(a), str(other)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the two runs come from different environments" in out
    assert "cpu_model: 'Test CPU' vs 'Other CPU'" in out and "torch: 2.14.1 vs 2.9.1" in out
    assert main(["compare", str(a), str(other), "--strict"]) == 2
    assert "refusing to compare results from different environments" in capsys.readouterr().err


def test_the_fast_reader_reads_what_the_store_reads(tmp_path):
    """compare parses latencies.csv with numpy; a GPU result's shorter device-time column (empty cells) goes
    through the store's reader. Both give ``Result.headline_samples_ms``."""
    host, device = tuple(range(10_000_000, 10_000_300)), tuple(range(5_000_000, 5_000_250))
    for engine, model in (("cpu-engine", None), ("gpu-engine", device)):
        experiment = Experiment("m", "8x8", ((8, 8),), engine, "fp32", 1)
        stats = latency_summary(Timing(model, sum(model), 0, "cuda_events"), 1) if model else None
        result = Result(experiment, "test", "cpu", "ok", validity="valid", samples=Samples(host, model), latency_model=stats)
        save_result(experiment.folder(tmp_path), result)
    for key, side in load_sides(tmp_path).items():
        expected = load_result(side.folder).headline_samples_ms()
        assert side.samples_ms.tolist() == pytest.approx(expected, abs=1e-9) and len(expected) == (250 if key[2] == "gpu-engine" else 300)


def test_mann_whitney_u_matches_known_answers():
    assert mann_whitney_u(range(1, 8), range(8, 15)) == (0.0, pytest.approx(2 / 3432))  # exact: 2 / C(14, 7)
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(0.1))
    assert mann_whitney_u([1, 3, 5, 7], [2, 4, 6, 8]) == (6.0, pytest.approx(0.6857, abs=1e-4))  # interleaved
    u, p = mann_whitney_u([1, 1, 2, 3], [2, 4, 4, 8])  # ties: normal approximation with tie correction
    assert u == 1.5 and 0.05 < p < 0.1
    assert mann_whitney_u(range(1, 7), range(7, 13))[1] > 0.002  # 6 processes a side can never reach p < 0.002


def test_repeats_verdict_rests_on_per_process_medians(tmp_path):
    rng = np.random.default_rng(5)
    a_medians = list(10 + 0.1 * rng.standard_normal(7))
    slower = list(12 + 0.1 * rng.standard_normal(7))
    noisy = list(10.5 + 1.5 * rng.standard_normal(7))  # pooled samples differ, processes overlap
    a = write_run(tmp_path / "a", {"slow": 10.0, "noisy": 10.0}, process_medians={"slow": a_medians, "noisy": a_medians})
    b = write_run(tmp_path / "b", {"slow": 12.0, "noisy": 11.5}, seed=4, process_medians={"slow": slower, "noisy": noisy})
    by_engine = compared(a, b)[0]
    assert by_engine["slow"].verdict == "slower" and by_engine["slow"].p_value == pytest.approx(2 / 3432)
    assert by_engine["noisy"].p_value > 0.002 and by_engine["noisy"].verdict == SAME
    assert by_engine["noisy"].ci_low < 1 < by_engine["noisy"].ci_high  # over processes; the pooled samples' excluded 1


def test_strict_checks_the_machine_of_every_result_not_one_environment_json(tmp_path, capsys):
    """One experiment of B was measured after an onnxruntime upgrade; both folders' environment.json agree."""
    machine = {"cpu_model": "Test CPU", "gpus": [], "packages": {"onnxruntime": "1.31.0", "torch": "2.14.1"}}
    upgraded = {**machine, "packages": {**machine["packages"], "onnxruntime": "1.32.0"}}
    for root, machines in ((tmp_path / "a", {"e1": machine, "e2": machine}), (tmp_path / "b", {"e1": machine, "e2": upgraded})):
        write_run(root, {"e1": 10.0, "e2": 10.0})
        for engine, used in machines.items():
            experiment = Experiment("m", "8x8", ((8, 8),), engine, "fp32", 1)
            result = load_result(experiment.folder(root))
            save_result(experiment.folder(root), dataclasses.replace(result, machine=used))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--strict"]) == 2
    assert "onnxruntime: 1.31.0 vs 1.32.0 (1 of 2 experiments)" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "WARNING: the two runs come from different environments" in capsys.readouterr().out
