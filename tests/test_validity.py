"""Validity verdicts and warnings on constructed results with known answers; nothing is mutated."""

import dataclasses

import numpy as np
import pytest

from framework.measure.agreement import compare_outputs
from framework.measure.validity import judge
from framework.precisions import PRECISIONS
from framework.results.record import Accuracy, Agreement, Experiment, ExportInfo, LatencyStats, Result


def stats(n=100, region=2.0, cv=0.02, median=1.0):
    return LatencyStats(n=n, mean_ms=median, std_ms=cv * median, cv=cv, min_ms=median, median_ms=median, median_ci99_low_ms=median,
                        median_ci99_high_ms=median, iqr_ms=0.0, mad_ms=0.0, tukey_outliers=0, p90_ms=None, p95_ms=None, p99_ms=None,
                        max_ms=median, throughput_items_per_s=1000 / median, timed_region_s=region)  # fmt: skip


def result(precision="fp32", n=100, region=2.0, cv=0.02, cosine=1.0, nan=False, model=None):
    worst = {"max_abs_error": 0.0, "mean_abs_error": 0.0, "share_close": 1.0, "cosine_similarity": cosine, "relative_l2_error": 0.0,
             "has_nan_or_inf": nan, "rtol": 1e-3, "atol": 1e-4, "all_close": True}  # fmt: skip
    experiment = Experiment("m", "4", ((4,),), "onnxruntime-cpu", precision, 1)
    return Result(experiment, "onnxruntime", "cpu", "ok", latency=stats(n, region, cv), latency_model=model,
                  agreement=Agreement.from_dict({"worst": worst}))  # fmt: skip


def test_a_clean_result_is_valid_without_warnings():
    r = result()
    verdict = judge(r, 100, 1.0)
    assert (verdict.validity, verdict.invalid_reasons, verdict.warnings) == ("valid", (), ())
    assert r.validity is None and r.judged(verdict).validity == "valid"  # the result itself is never changed


def test_too_few_samples_or_too_short_a_run_is_invalid():
    verdict = judge(result(n=40, region=0.5), 100, 1.0)
    assert verdict.validity == "invalid"
    assert verdict.invalid_reasons == ("40 samples, 100 required", "timed region 0.500 s, 1.0 s required")


def test_wrong_or_non_finite_outputs_are_invalid_by_precision():
    fp32 = judge(result(cosine=0.9995), 100, 1.0)
    assert fp32.validity == "invalid" and "cosine similarity 0.999500 < 0.9999 for fp32" in fp32.invalid_reasons[0]
    assert judge(result(precision="fp16", cosine=0.9995), 100, 1.0).validity == "valid"
    assert judge(result(nan=True), 100, 1.0).invalid_reasons == ("outputs contain NaN or Inf",)


def test_a_high_cv_alone_is_no_warning_and_host_bound_results_get_warnings_not_invalid():
    verdict = judge(result(cv=0.25, model=stats(cv=0.01, median=0.8)), 100, 1.0, enqueue_ns=(900_000, 950_000, 1_000_000))
    assert verdict.validity == "valid" and len(verdict.warnings) == 1  # the median is known to its target: CV 25% says nothing more
    assert verdict.warnings[0].startswith("host-bound: issuing an iteration takes 0.950 ms on the host, the device runs it in 0.800 ms")
    assert "cuda_graph=true" in verdict.warnings[0]
    device_bound = judge(result(model=stats(cv=0.01, median=5.0)), 100, 1.0, enqueue_ns=(300_000,) * 3)
    assert device_bound.warnings == () and device_bound.enqueue_median_ms == 0.3
    launch_bound = judge(result(model=stats(cv=0.01, median=3.7)), 100, 1.0, enqueue_ns=(3_100_000,) * 3)  # 84%: the GPU waits
    assert launch_bound.warnings[0].startswith("host-bound")


def judged_with(precision="fp32", worst=None, after=None, changes=None, dataset=None, accuracy=None, export=None, runtime="onnxruntime"):
    """A clean result with some agreement figures replaced; ``after``/``dataset``: figures of those agreements."""
    clean = result(precision).agreement.worst.to_dict()
    agreements = {"agreement": Agreement.from_dict({"worst": {**clean, **(worst or {})}})}
    if after is not None or changes is not None:
        agreements["agreement_after_timing"] = Agreement.from_dict({"worst": {**clean, **(after or {})}, "changes": changes or {}})
    if dataset is not None:
        outputs = {"logits": {"top1_agreement": dataset["top1_agreement"]}} if "top1_agreement" in dataset else {}
        agreements["dataset_agreement"] = Agreement.from_dict({"worst": {**clean, **dataset}, "outputs": outputs})
    r = dataclasses.replace(result(precision), runtime=runtime, accuracy=accuracy, export=export, **agreements)
    return judge(r, 100, 1.0)


def test_the_thresholds_come_from_one_table_and_the_l2_ceiling_from_the_cosine_floor():
    assert [round(PRECISIONS[p].relative_l2_ceiling, 4) for p in ("fp32", "fp16", "int8")] == [0.0141, 0.0447, 0.1414]
    assert [(round(PRECISIONS[p].tolerance, 4), PRECISIONS[p].close_share_floor, PRECISIONS[p].top1_floor) for p in ("fp32", "fp16", "int8")] == [
        (0.0364, 0.99, 0.999), (0.1152, 0.99, 0.99), (0.3643, 0.99, 0.95)]  # fmt: skip
    rng = np.random.default_rng(1)  # noise-like errors exactly at the ceiling: 99% of the elements within the tolerance
    for p in ("fp32", "fp16", "int8"):
        ref = rng.standard_normal(100_000)
        got = ref + rng.standard_normal(ref.size) * PRECISIONS[p].relative_l2_ceiling * np.sqrt(np.mean(ref**2))
        assert np.mean(np.abs(got - ref) <= PRECISIONS[p].tolerance * np.sqrt(np.mean(ref**2))) == pytest.approx(0.99, abs=0.002)
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(1000)
    for p in ("fp32", "fp16", "int8"):  # equal norms, cosine exactly at the floor: relative L2 exactly at the ceiling
        cos = PRECISIONS[p].cosine_floor
        ortho = rng.standard_normal(1000)
        ortho -= ortho @ ref / (ref @ ref) * ref
        got = cos * ref + np.sqrt(1 - cos**2) * ortho * np.linalg.norm(ref) / np.linalg.norm(ortho)
        worst = compare_outputs({"y": ref}, {"y": got}, p)["worst"]
        assert worst["relative_l2_error"] == pytest.approx(PRECISIONS[p].relative_l2_ceiling, rel=1e-9)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_outputs_at_half_the_scale_are_invalid_though_their_cosine_is_one(precision):
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    figures = compare_outputs({"logits": ref}, {"logits": ref * 0.5}, precision)["worst"]
    assert figures["cosine_similarity"] == pytest.approx(1.0) and figures["relative_l2_error"] == pytest.approx(0.5)
    assert figures["share_within_tolerance"] < 0.6 and figures["tolerance"] == PRECISIONS[precision].tolerance
    verdict = judged_with(precision, worst=figures)
    assert verdict.validity == "invalid"
    reason = verdict.invalid_reasons[0]
    ceiling = PRECISIONS[precision].relative_l2_ceiling
    assert reason.startswith("outputs disagree with PyTorch fp32: relative L2 error 0.5000 > ") and f"{ceiling:.4f}" in reason
    assert f"of elements within {PRECISIONS[precision].tolerance:g} x RMS of the reference" in reason and reason.endswith(precision)


def test_too_few_elements_within_the_precisions_tolerance_is_invalid_even_when_the_norms_agree():
    verdict = judged_with("fp16", worst={"cosine_similarity": 0.9999, "relative_l2_error": 0.01, "share_within_tolerance": 0.9})
    tolerance = PRECISIONS["fp16"].tolerance
    assert verdict.invalid_reasons == (
        f"outputs disagree with PyTorch fp32: 90.0% of elements within {tolerance:g} x RMS of the reference < 99% for fp16",
    )
    assert judged_with("fp16", worst={"relative_l2_error": 0.01, "share_within_tolerance": 0.995}).validity == "valid"


def test_results_written_before_the_share_was_measured_are_still_judged():
    verdict = judged_with("int8", worst={"share_within_tolerance": None, "tolerance": None, "relative_l2_error": 0.05})
    assert verdict.validity == "valid"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_constant_outputs_are_invalid_at_every_precision(precision):
    """PyTorch's answer changed by 5%; the engine's did not change at all. At int8 the 5% alone is within the
    thresholds (cosine 0.999, relative L2 0.05): only the stale check sees it."""
    after = {"cosine_similarity": 0.999, "relative_l2_error": 0.05, "share_within_tolerance": 1.0}
    verdict = judged_with(precision, after=after, changes={"logits": {"engine": 0.0, "reference": 0.05}})
    assert verdict.validity == "invalid"
    assert verdict.invalid_reasons[0].startswith("after the timed run, the engine answered different inputs with the outputs it gave")
    assert "(logits) while PyTorch's changed: stale or constant outputs" in verdict.invalid_reasons[0]


def test_outputs_that_change_or_a_reference_that_does_not_are_not_stale():
    moved = judged_with("int8", changes={"logits": {"engine": 0.048, "reference": 0.05}})
    assert moved.validity == "valid"
    insensitive = judged_with("int8", changes={"logits": {"engine": 0.0, "reference": 1e-5}})  # the model ignores the change
    assert insensitive.validity == "valid"


def test_dataset_agreement_below_its_floor_is_invalid():
    poor = {"cosine_similarity": 0.81, "relative_l2_error": 0.6, "top1_agreement": 0.8}
    verdict = judged_with("int8", dataset=poor, accuracy=Accuracy(100, 0.8, 0.95))
    assert verdict.invalid_reasons == ("over the dataset, outputs disagree with PyTorch fp32: cosine similarity 0.810000 < 0.99, "
                                       "relative L2 error 0.6000 > 0.1414, top-1 agreement 80.0% < 95.0% for int8",)  # fmt: skip
    top1_only = judged_with("fp16", dataset={"top1_agreement": 0.985}, accuracy=Accuracy(100, 0.9, 0.99))
    assert top1_only.invalid_reasons == ("over the dataset, outputs disagree with PyTorch fp32: top-1 agreement 98.5% < 99.0% for fp16",)
    assert judged_with("int8", dataset={"top1_agreement": 0.97}, accuracy=Accuracy(100, 0.9, 0.99)).validity == "valid"
    # an unlabelled set (no accuracy): the outputs are no class scores, their argmax is not judged
    assert judged_with("fp32", dataset={"top1_agreement": 0.5}).validity == "valid"


def test_a_graph_traced_with_warnings_warns_the_engines_that_run_it():
    traced = ExportInfo(tracer_warnings=("load.py:12: TracerWarning: Converting a tensor to a Python boolean", "load.py:14: TracerWarning: x"))
    verdict = judged_with(export=traced)
    assert verdict.validity == "valid"
    assert verdict.warnings == ("the ONNX export traced with 2 TracerWarnings (data-dependent control flow may be frozen): "
                                "load.py:12: TracerWarning: Converting a tensor to a Python boolean",)  # fmt: skip
    assert judged_with(export=traced, runtime="pytorch").warnings == ()  # eager PyTorch runs the module, not the graph
    assert judged_with(export=ExportInfo()).warnings == ()


def measured(host_ms, model_ms=None, stop_rule="converged", warmup_rule="settled", target=0.01):
    """A clean result whose timed loops gave these samples (ms), with the statistics ``latency_summary`` derives."""
    from framework.measure.stats import latency_summary
    from framework.measure.timing import Timing
    from framework.results.record import Samples

    def loop(ms, clock):
        ns = tuple(int(round(v * 1e6)) for v in ms)
        return latency_summary(Timing(ns, sum(ns), 10, clock, stop_rule=stop_rule, warmup_rule=warmup_rule), 1), ns

    host, host_ns = loop(host_ms, "perf_counter_ns")
    model, model_ns = loop(model_ms, "cuda_events") if model_ms is not None else (None, None)
    return dataclasses.replace(result(), latency=host, latency_model=model, samples=Samples(host_ns, model_ns), target_ci=target)


def test_a_stable_run_gets_no_warning():
    rng = np.random.default_rng(3)
    for n in (200, 2000, 20000):
        verdict = judge(measured(rng.lognormal(0, 0.02, n)), 10, 0.0)
        assert (verdict.validity, verdict.warnings) == ("valid", ())


def test_a_run_cut_at_the_cap_says_it_did_not_converge_and_a_fixed_one_that_it_is_imprecise():
    samples = np.random.default_rng(0).lognormal(0, 0.5, 300)
    r = measured(samples, stop_rule="max-duration")
    width = r.latency.ci_half_width
    assert width > 0.05
    assert judge(r, 10, 1.0).warnings == (f"not converged: median's 99% CI ±{width * 100:.1f}% after 300 samples (target ±1%)",)
    fixed = judge(measured(samples, stop_rule="iterations"), 10, 1.0).warnings
    assert fixed == (f"imprecise: median's 99% CI ±{width * 100:.1f}% after 300 samples (target ±1%)",)
    assert judge(measured(samples, stop_rule="max-duration", target=0.2), 10, 1.0).warnings == ()  # within a looser target
    few = judge(measured([1.0, 1.1, 1.2], stop_rule="iterations"), 3, 0.0).warnings
    assert few == ("imprecise: median's 99% CI undefined after 3 samples (target ±1%)",)  # 3 samples bound no median at 99%
    cut = judge(measured(np.full(100, 1.0), warmup_rule="max-duration"), 10, 1.0).warnings
    assert cut == ("warm-up still trending when it was cut at --max-duration after 10 iterations",)


def test_drift_is_detected_on_the_loop_it_happened_in():
    rng = np.random.default_rng(1)
    steady = rng.normal(1.0, 0.02, 3000)
    moved = np.concatenate([rng.normal(1.0, 0.02, 1500), rng.normal(1.03, 0.02, 1500)])  # the machine got 3% slower mid-run
    verdict = judge(measured(steady, model_ms=moved), 10, 0.0)
    assert len(verdict.warnings) == 1 and verdict.warnings[0].startswith("drift in latency-model: the median of the last third")
    assert "+3.2% from the first third's (0.9989 -> 1.031 ms), beyond ±1%" in verdict.warnings[0]  # the samples' own medians
    slow_creep = 1.0 + np.linspace(0, 0.03, 3000) + rng.normal(0, 0.005, 3000)  # 3% over the run
    assert judge(measured(slow_creep), 10, 0.0).warnings[0].startswith("drift in latency: ")
    step = np.concatenate([rng.normal(1.0, 0.01, 1500), rng.normal(1.1, 0.01, 1500)])  # a 10% step: drift, and two modes
    assert [w.split(":")[0] for w in judge(measured(step, target=0.05), 10, 0.0).warnings] == ["drift in latency", "two modes in latency"]


def test_independent_noise_is_neither_drift_nor_two_modes():
    """The thirds' medians of i.i.d. samples often differ by more than the CI half-width (about 1 run in 5):
    their own intervals overlap, and drift is not claimed."""
    rng = np.random.default_rng(2)
    for seed in range(20):
        for samples in (rng.lognormal(0, 0.3, 1000), 0.5 + rng.exponential(0.2, 400), rng.normal(1, 0.05, 3000)):
            warnings = judge(measured(samples, stop_rule="iterations", target=1.0), 10, 1.0).warnings
            assert warnings == (), (seed, warnings)


def test_two_clusters_are_reported_as_two_modes():
    rng = np.random.default_rng(4)
    n = 1000
    upper = rng.random(n) < 0.3
    samples = np.where(upper, rng.normal(1.5, 0.02, n), rng.normal(1.0, 0.02, n))
    (warning,) = judge(measured(samples, target=1.0), 10, 1.0).warnings
    assert warning.startswith("two modes in latency: samples cluster near 1.0") and "ms and 1.5" in warning
    share = float(warning.split("(")[1].split("%")[0]) / 100
    assert share == pytest.approx(upper.mean(), abs=0.02)


def test_two_modes_stays_quiet_on_unimodal_shapes_and_few_spikes():
    from framework.measure.stats import two_modes

    rng = np.random.default_rng(5)
    shapes = (lambda n: rng.normal(1, 0.05, n), lambda n: rng.lognormal(0, 0.8, n), lambda n: 1 + rng.exponential(0.2, n),
              lambda n: rng.uniform(1, 1.2, n), lambda n: 1 + rng.pareto(2.5, n) * 0.1,
              lambda n: np.round(rng.normal(10, 0.6, n) / 0.5) * 0.5,  # quantised by the clock: 0.5 steps
              lambda n: np.where(rng.random(n) < 0.05, rng.normal(3, 0.3, n), rng.normal(1, 0.02, n)))  # 5% spikes: outliers, not a mode  # fmt: skip
    for shape in shapes:
        for n in (60, 300, 3000, 30000):
            assert all(two_modes(shape(n)) is None for _ in range(10))
    assert two_modes(np.concatenate([rng.normal(1, 0.02, 500), rng.normal(1.2, 0.02, 500)])) is not None
    assert two_modes(np.concatenate([rng.normal(1, 0.02, 20), rng.normal(1.2, 0.02, 20)])) is None  # 40 samples: too few to say


def test_records_written_before_the_half_width_was_kept_are_judged_on_their_interval():
    old = dataclasses.replace(result(), latency=dataclasses.replace(stats(), median_ci99_low_ms=0.9, median_ci99_high_ms=1.02))
    assert old.latency.ci_half_width is None and old.samples is None
    assert judge(old, 100, 1.0).warnings == ("imprecise: median's 99% CI ±10.0% after 100 samples (target ±1%)",)
