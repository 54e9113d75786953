"""compare on constructed A/B result folders with known answers, written as the runner writes them."""

import dataclasses

import numpy as np
import pytest

from framework.cli import main
from framework.files import write_json
from framework.results.compare import bootstrap_ratio_ci, compare, mann_whitney_u, verdict
from framework.results.record import Experiment, Result, Samples
from framework.results.store import load_result, save_result

ENV = {"cpu_model": "Test CPU", "python": "3.11.7", "gpus": [], "packages": {"torch": "2.14.1", "onnxruntime": "1.32.0"}}


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


def test_verdicts_clearly_faster_clearly_slower_and_indistinguishable(tmp_path):
    a = write_run(tmp_path / "a", {"fast-engine": 10.0, "slow-engine": 10.0, "same-engine": 10.0}, seed=1)
    b = write_run(tmp_path / "b", {"fast-engine": 5.0, "slow-engine": 15.0, "same-engine": 10.0}, seed=2)
    pairs, notes = compare(a, b)
    by_engine = {p.key[2]: p for p in pairs}
    assert by_engine["fast-engine"].verdict == "faster" and by_engine["fast-engine"].ratio == pytest.approx(0.5, rel=0.01)
    assert by_engine["slow-engine"].verdict == "slower" and by_engine["slow-engine"].ci_low > 1
    same = by_engine["same-engine"]
    assert same.verdict == "no significant difference" and same.ci_low < 1.01 and same.ci_high > 0.99
    assert notes == []


def test_a_small_but_real_difference_below_the_factor_is_no_verdict():
    assert verdict(1.05, 1.03, 1.07, factor=1.1) == "no significant difference"
    assert verdict(1.15, 1.12, 1.18, factor=1.1) == "slower"
    assert verdict(1.15, 0.98, 1.30, factor=1.1) == "no significant difference"  # too uncertain
    low, high = bootstrap_ratio_ci(np.full(50, 2.0), np.full(50, 3.0))
    assert low == high == 1.5


def test_invalid_results_are_never_compared(tmp_path):
    a = write_run(tmp_path / "a", {"e": 10.0})
    b = write_run(tmp_path / "b", {"e": 20.0}, validity="invalid")
    pairs, notes = compare(a, b)
    assert pairs == [] and notes == ["m 8x8 e fp32 bs1: not compared, B: invalid ()"]


def test_cli_exit_codes_and_environment_mismatch(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"e": 10.0})
    b = write_run(tmp_path / "b", {"e": 15.0}, seed=3)
    assert main(["compare", str(a), str(b)]) == 1  # slower: fails a CI gate
    out = capsys.readouterr().out
    assert "slower" in out and "geometric mean of B/A over 1 pairs: 1.5" in out
    assert main(["compare", str(b), str(a)]) == 0
    other = write_run(tmp_path / "c", {"e": 10.0}, env={**ENV, "cpu_model": "Other CPU", "packages": {"torch": "2.9.1"}})
    assert main(["compare", str(a), str(other)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the two runs come from different environments" in out
    assert "cpu_model: 'Test CPU' vs 'Other CPU'" in out and "torch: 2.14.1 vs 2.9.1" in out
    assert main(["compare", str(a), str(other), "--strict"]) == 2
    assert "refusing to compare results from different environments" in capsys.readouterr().err


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
    by_engine = {p.key[2]: p for p in compare(a, b)[0]}
    assert by_engine["slow"].verdict == "slower" and by_engine["slow"].p_value == pytest.approx(2 / 3432)
    assert by_engine["noisy"].p_value > 0.002 and by_engine["noisy"].verdict == "no significant difference"
    assert by_engine["noisy"].ci_low > 1  # the pooled bootstrap alone would have called it slower


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
