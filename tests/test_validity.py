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


def test_unstable_and_host_bound_results_get_warnings_not_invalid():
    verdict = judge(result(cv=0.25, model=stats(cv=0.01, median=0.8)), 100, 1.0, enqueue_ns=(900_000, 950_000, 1_000_000))
    assert verdict.validity == "valid"
    assert verdict.warnings[0] == "unstable latency: coefficient of variation 25% > 10%"
    assert verdict.warnings[1].startswith("host-bound: issuing an iteration takes 0.950 ms on the host, the device runs it in 0.800 ms")
    assert "cuda_graph=true" in verdict.warnings[1]
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
