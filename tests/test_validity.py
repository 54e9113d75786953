"""Validity verdicts and warnings on constructed results with known answers; nothing is mutated."""

from framework.measure.validity import judge
from framework.results.record import Agreement, Experiment, LatencyStats, Result


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
