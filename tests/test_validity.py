"""Validity labels and warnings on constructed records with known answers."""

from framework.validity import label


def record(precision="fp32", n=100, region=2.0, cv=0.02, cosine=1.0, nan=False, model=None):
    rec = {
        "precision": precision,
        "latency": {"n": n, "timed_region_s": region, "cv": cv, "median_ms": 1.0},
        "agreement": {"worst": {"has_nan_or_inf": nan, "cosine_similarity": cosine}},
    }
    if model:
        rec["latency_model"] = model
    return rec


def test_a_clean_result_is_valid_without_warnings():
    r = record()
    label(r, 100, 1.0, None)
    assert (r["validity"], r["invalid_reasons"], r["warnings"]) == ("valid", [], [])


def test_too_few_samples_or_too_short_a_run_is_invalid():
    r = record(n=40, region=0.5)
    label(r, 100, 1.0, None)
    assert r["validity"] == "invalid"
    assert r["invalid_reasons"] == ["40 samples, 100 required", "timed region 0.500 s, 1.0 s required"]


def test_wrong_or_non_finite_outputs_are_invalid_by_precision():
    fp32 = record(cosine=0.9995)
    label(fp32, 100, 1.0, None)
    assert fp32["validity"] == "invalid" and "cosine similarity 0.999500 < 0.9999 for fp32" in fp32["invalid_reasons"][0]
    fp16 = record(precision="fp16", cosine=0.9995)
    label(fp16, 100, 1.0, None)
    assert fp16["validity"] == "valid"
    nan = record(nan=True)
    label(nan, 100, 1.0, None)
    assert nan["invalid_reasons"] == ["outputs contain NaN or Inf"]


def test_unstable_and_host_bound_results_get_warnings_not_invalid():
    r = record(cv=0.25, model={"n": 100, "timed_region_s": 2.0, "cv": 0.01, "median_ms": 0.8})
    label(r, 100, 1.0, enqueue_ns=(900_000, 950_000, 1_000_000))
    assert r["validity"] == "valid"
    assert r["warnings"][0] == "unstable latency: coefficient of variation 25% > 10%"
    assert r["warnings"][1].startswith("host-bound: issuing an iteration takes 0.950 ms on the host, the device runs it in 0.800 ms")
    assert "cuda_graph=true" in r["warnings"][1]
    device_bound = record(model={"n": 100, "timed_region_s": 2.0, "cv": 0.01, "median_ms": 5.0})
    label(device_bound, 100, 1.0, enqueue_ns=(300_000,) * 3)
    assert device_bound["warnings"] == [] and device_bound["enqueue_median_ms"] == 0.3
    launch_bound = record(model={"n": 100, "timed_region_s": 2.0, "cv": 0.01, "median_ms": 3.7})
    label(launch_bound, 100, 1.0, enqueue_ns=(3_100_000,) * 3)  # 84% of the device time: the GPU waits on the host
    assert launch_bound["warnings"][0].startswith("host-bound")
