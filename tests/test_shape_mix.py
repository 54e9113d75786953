"""Shapes as served (issue 16): distributions, per-bucket and mixed-stream timing, recommendations, the report.

The recommendation functions are checked against a fake engine whose latency is a known function of shape, so
the expected latency, the profile split and the padding choice have exact answers; the timing functions run
that fake engine on a fake clock; the end-to-end test runs the real CLI on a real model and ONNX Runtime."""

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from framework.cli import main
from framework.config import load_config
from framework.distribution import check_profile, config_distribution, file_distribution
from framework.errors import ConfigError, DeployBenchError
from framework.measure.shape_mix import draw_buckets, mixed_stream, time_buckets
from framework.results.profiles import expected_latency, padding_choices, profile_latency, recommend_profiles

FIXTURES = Path(__file__).parent / "fixtures" / "models"
VALUES = [(8,), (16,), (32,), (64,)]
WEIGHTS = [0.4, 0.3, 0.2, 0.1]


def linear(value) -> float:
    """The fake engine: 1 ms per token."""
    return float(value[0])


def test_expected_latency_is_the_weighted_mean():
    assert expected_latency(WEIGHTS, [linear(v) for v in VALUES]) == pytest.approx(0.4 * 8 + 0.3 * 16 + 0.2 * 32 + 0.1 * 64)
    assert expected_latency([2, 2], [1.0, 3.0]) == pytest.approx(2.0)  # weights are normalised


def test_one_profile_takes_the_opt_that_minimises_the_modelled_latency():
    split = recommend_profiles(VALUES, WEIGHTS, [linear(v) for v in VALUES], k=1, opt_penalty=0.5)
    (profile,) = split.profiles
    assert (profile.min, profile.opt, profile.max) == ((8,), (32,), (64,))
    # by hand: 20.8 ms unpenalised + 0.5 x (3.2 x 2 + 4.8 x 1 + 6.4 x 0 + 6.4 x 1) doublings away from 32
    assert split.expected_ms == pytest.approx(29.6)


def brute_force(k: int, penalty: float) -> float:
    """Every split into k contiguous groups, every opt per group: the DP must find the minimum."""
    best = math.inf
    lat = [linear(v) for v in VALUES]
    for cuts in itertools.combinations(range(1, len(VALUES)), k - 1):
        bounds = list(zip((0, *cuts), (*cuts, len(VALUES))))
        total = sum(min(sum(WEIGHTS[i] * profile_latency(lat[i], VALUES[i], VALUES[o], penalty) for i in range(a, b)) for o in range(a, b))
                    for a, b in bounds)  # fmt: skip
        best = min(best, total)
    return best


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_profile_split_is_the_best_of_every_split(k):
    split = recommend_profiles(VALUES, WEIGHTS, [linear(v) for v in VALUES], k=k, opt_penalty=0.3)
    assert len(split.profiles) == k
    assert split.expected_ms == pytest.approx(brute_force(k, 0.3))
    assert [b for p in split.profiles for b in p.buckets] == VALUES  # contiguous, every bucket once
    if k == 4:  # a profile per bucket: no penalty left, the unpenalised expected latency
        assert split.expected_ms == pytest.approx(20.8)


def test_padding_is_not_recommended_when_latency_grows_with_length():
    choices = padding_choices(VALUES, WEIGHTS, [linear(v) for v in VALUES])
    assert choices[0].label == "none"
    assert choices[0].expected_ms == pytest.approx(20.8)
    nearest = next(c for c in choices if c.label == "nearest of 64")  # everything padded to 64
    assert nearest.expected_ms == pytest.approx(64.0) and not nearest.interpolated


def test_padding_wins_where_the_aligned_shape_is_faster():
    """A fake engine whose 32-token kernels are fast (aligned) and odd lengths slow: pad everything to 32."""
    values, weights, latencies = [(8,), (16,), (24,), (32,)], [0.25] * 4, [5.0, 4.0, 6.0, 2.0]
    best = padding_choices(values, weights, latencies)[0]
    assert best.expected_ms == pytest.approx(2.0)
    assert best.targets == ((32,),) * 4
    two = next(c for c in padding_choices(values, weights, latencies) if c.label.startswith("nearest of") and c.label.count(",") == 1)
    # exactly two sizes: the best keeps 8 alone (5 ms) and pads 16, 24 and 32 to 32 (2 ms): (5 + 3 x 2) / 4
    assert two.label == "nearest of 8, 32" and two.expected_ms == pytest.approx(2.75)


def test_padding_to_an_unmeasured_size_is_interpolated_and_says_so():
    choices = {c.label: c for c in padding_choices([(10,), (30,)], [0.5, 0.5], [1.0, 3.0], multiples=(20,))}
    assert choices["multiple of 20"].targets == ((20,), (40,))
    assert choices["multiple of 20"].interpolated  # 20 read off the line from (10, 1 ms) to (30, 3 ms): 2 ms
    assert choices["multiple of 20"].expected_ms == pytest.approx((2.0 + 4.0) / 2)  # 40, past 30, on that line: 4 ms


def test_padding_past_the_largest_bucket_is_not_as_cheap_as_the_largest_bucket():
    """Padding up to a multiple overshoots the largest bucket: that size costs more, not the largest bucket's latency."""
    (one,) = [c for c in padding_choices([(32, 32)], [1.0], [2.0], multiples=(64,)) if c.label == "multiple of 64"]
    assert one.targets == ((64, 64),) and one.interpolated and one.expected_ms == pytest.approx(8.0)  # 4x the pixels
    choices = padding_choices([(32, 32)], [1.0], [2.0], multiples=(64,))
    assert choices[0].label == "none"  # one bucket: padding is pure cost
    flat = {c.label: c for c in padding_choices([(10,), (30,)], [0.5, 0.5], [3.0, 1.0], multiples=(20,))}
    assert flat["multiple of 20"].expected_ms == pytest.approx((2.0 + 1.0) / 2)  # a falling curve is held at the largest's 1 ms


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def fake_steps(clock: FakeClock):
    """The fake engine's steps, one per bucket: each call takes exactly linear(value) ms on the fake clock."""

    def step(ms: float):
        def run():
            clock.now += int(ms * 1e6)

        return run

    return [step(linear(v)) for v in VALUES]


def test_bucket_timing_and_mixed_stream_of_a_fake_engine_are_exact():
    clock = FakeClock()
    timings = time_buckets(fake_steps(clock), {"iterations": None, "warmup": 2, "min_duration_s": 0.2, "max_duration_s": 2.0}, clock=clock)
    assert [float(np.median(t.latencies_ns)) / 1e6 for t in timings] == [8.0, 16.0, 32.0, 64.0]
    assert [t.stop_rule for t in timings] == ["converged"] * 4 and all(len(t.latencies_ns) >= 5 for t in timings)
    draws = draw_buckets(WEIGHTS, 20000, seed=7)
    assert np.array_equal(draws, draw_buckets(WEIGHTS, 20000, seed=7))  # seeded
    latencies = np.array(mixed_stream(fake_steps(clock), draws, clock=clock)) / 1e6
    assert np.array_equal(latencies, [linear(VALUES[d]) for d in draws])
    shares = np.bincount(draws, minlength=4) / draws.size
    assert np.allclose(shares, WEIGHTS, atol=0.015)
    assert latencies.mean() == pytest.approx(20.8, rel=0.03)  # the mix's mean is the expected latency


def test_the_first_call_after_a_shape_switch_is_kept_apart_from_the_bucket_median():
    """A runtime that pays 50 ms whenever the shape changes (ONNX Runtime CUDA's algorithm search): the bucket
    medians stay the steady-state latencies and the switch cost is reported on its own."""
    clock, last = FakeClock(), [None]

    def step(index: int):
        def run():
            clock.now += int((linear(VALUES[index]) + (50.0 if last[0] not in (None, index) else 0.0)) * 1e6)
            last[0] = index

        return run

    timings = time_buckets([step(i) for i in range(4)], {"iterations": 20, "warmup": 2, "min_duration_s": 0.0}, clock=clock)
    assert [float(np.median(t.latencies_ns)) / 1e6 for t in timings] == [8.0, 16.0, 32.0, 64.0]
    assert [float(np.median(t.switch_ns)) / 1e6 for t in timings] == [58.0, 66.0, 82.0, 114.0]


def write_config(tmp_path: Path, distribution: str) -> Path:
    text = (FIXTURES / "tiny_two_inputs" / "config.yaml").read_text() + distribution
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_config_distribution_is_read_and_normalised(tmp_path):
    config = load_config(write_config(tmp_path, "distribution:\n  dims: [sequence]\n  buckets: {4: 3, 2: 1}\n"))
    found = config_distribution(config)
    assert found.values == ((2,), (4,)) and found.weights == (0.25, 0.75)
    assert found.runtime_shapes(config, (4,), 3) == [(3, 4), (3, 1)]  # sequence filled, batch from the run, fixed dims kept


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("distribution:\n  dims: [words]\n  buckets: {4: 1}\n", "distribution.dims[0]", "not a dynamic dim"),
        ("distribution:\n  dims: [batch_size]\n  buckets: {4: 1}\n", "distribution.dims[0]", "batch_size is the run's"),
        ("distribution:\n  dims: [sequence]\n  buckets: [{shape: [4], weight: 1}, {shape: [8], weight: -2}]\n",
         "distribution.buckets[1].weight", "finite number >= 0"),
        ("distribution:\n  dims: [sequence]\n  buckets: {0: 1}\n", "distribution.buckets.0", "positive whole number"),
        ("distribution:\n  dims: [sequence]\n  buckets: {4: 0}\n", "distribution.buckets", "sum to 0"),
        ("distribution:\n  dims: [sequence]\n  buckets: []\n", "distribution.buckets", "non-empty list"),
    ],
)  # fmt: skip
def test_config_distribution_errors_name_file_and_field(tmp_path, text, field, problem):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config_distribution(load_config(path))
    assert caught.value.path == str(path) and caught.value.field == field and problem in caught.value.problem


def test_observed_shapes_from_csv_and_json(tmp_path):
    config = load_config(FIXTURES / "tiny_two_inputs" / "config.yaml")
    (tmp_path / "seen.csv").write_text("sequence\n4\n4\n8\n4\n")
    found = file_distribution(tmp_path / "seen.csv", config)
    assert found.values == ((4,), (8,)) and found.weights == (0.75, 0.25)
    (tmp_path / "seen.json").write_text(json.dumps([{"sequence": 2}, {"sequence": 6}]))
    assert file_distribution(tmp_path / "seen.json", config).values == ((2,), (6,))


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.csv", "sequence\n4\nfour\n", "row 3: expected a positive whole number, got 'four'"),
        ("bad.csv", "sequence\n4\n\n\nfour\n", "row 5: expected a positive whole number, got 'four'"),  # blank lines counted
        ("bad.csv", "sequence\n", "no requests"),
        ("bad.csv", "height\n4\n", ".dims[0]: 'height' is not a dynamic dim"),
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.json", '{"dims": ["sequence"], "requests": [[4], [4, 5]]}', "requests[1]: 2 values"),
    ],
)
def test_observed_shape_file_errors_name_the_file_and_row(tmp_path, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(DeployBenchError) as caught:
        file_distribution(tmp_path / name, load_config(FIXTURES / "tiny_two_inputs" / "config.yaml"))
    assert str(tmp_path / name) in str(caught.value) and problem in str(caught.value)


def test_many_observed_lengths_are_binned_with_a_warning(tmp_path):
    lengths = np.random.default_rng(0).integers(1, 33, 2000)
    (tmp_path / "seen.csv").write_text("sequence\n" + "\n".join(map(str, lengths)) + "\n")
    with pytest.warns(UserWarning, match="binned into"):
        found = file_distribution(tmp_path / "seen.csv", load_config(FIXTURES / "tiny_two_inputs" / "config.yaml"))
    assert len(found.values) <= 24 and found.values[-1] == (32,)
    assert sum(found.weights) == pytest.approx(1.0)


def test_shapes_outside_the_profile_fail_for_tensorrt_and_warn_elsewhere(tmp_path):
    path = write_config(tmp_path, "distribution:\n  dims: [sequence]\n  buckets: {8: 1, 64: 1}\n")  # the profile allows 1..32
    config = load_config(path)
    found = config_distribution(config)
    with pytest.raises(DeployBenchError, match=r"sequence\) = 64, outside 1\.\.32 of .*inputs\[0\]\.shapes\.optimization.*tensorrt cannot"):
        check_profile(found, config, ["onnxruntime-cpu", "tensorrt"], 1)
    with pytest.warns(UserWarning, match="outside 1..32"):
        check_profile(found, config, ["onnxruntime-cpu"], 1)


def test_shape_mix_flags_refuse_what_does_not_apply(capsys):
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-mix", "--shapes", "[(16,16,3)]"])
    assert code == 2 and "give one of them" in capsys.readouterr().err
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-mix"])
    assert code == 2 and "config.yaml has no 'distribution'" in capsys.readouterr().err
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-mix", "--mix-seed", "-1"])
    assert code == 2 and "--mix-seed must be a whole number >= 0, got -1" in capsys.readouterr().err


def test_a_shape_mix_with_nothing_to_measure_fails_before_anything_is_prepared(tmp_path, capsys):
    (tmp_path / "seen.csv").write_text("height,width\n16,16\n")
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-distribution", str(tmp_path / "seen.csv"),
                 "--engines", "pytorch-cpu", "--precisions", "fp16", "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "nothing to measure for --engines pytorch-cpu and --precisions fp16 (pytorch-cpu runs fp32)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "tiny_cnn" / "cache").exists()


def test_end_to_end_on_a_real_model(tmp_path, capsys):
    """tiny_cnn (dynamic height and width) on ONNX Runtime and eager PyTorch, each in its own process."""
    (tmp_path / "seen.csv").write_text("height,width\n16,16\n16,16\n16,16\n32,32\n48,48\n")
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-distribution", str(tmp_path / "seen.csv"),
                 "--engines", "onnxruntime-cpu,pytorch-cpu", "--threads", "1", "--mix-iterations", "500",
                 "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "tiny_cnn" / "shape_mix"
    ort = json.loads((folder / "onnxruntime-cpu__fp32__bs1" / "shape_mix.json").read_text())
    assert ort["status"] == "ok" and [b["value"] for b in ort["buckets"]] == [[16, 16], [32, 32], [48, 48]]
    assert [b["weight"] for b in ort["buckets"]] == pytest.approx([0.6, 0.2, 0.2])
    unpadded = ort["mixes"][0]
    assert unpadded["label"] == "unpadded" and len(unpadded["latencies_ms"]) == len(unpadded["draws"]) == 500
    assert np.array_equal(unpadded["draws"], draw_buckets([0.6, 0.2, 0.2], 500, 0))  # the recorded draws are the seeded ones
    assert all(b["median_ms"] > 0 for b in ort["buckets"])
    assert [s["how"] for s in ort["static"]] == ["fixed-dims ONNX graph"] * 3 and all(s["static_ms"] > 0 for s in ort["static"])
    torch_result = json.loads((folder / "pytorch-cpu__fp32__bs1" / "shape_mix.json").read_text())
    assert torch_result["static"] == [] and "no static form" in torch_result["static_note"]
    text = (folder / "shape_mix.md").read_text()
    for heading in ("### The served mix", "### Static against dynamic", "### Padding", "### Recommended TensorRT profiles", "optimization: {min:"):
        assert heading in text
    assert "onnxruntime-cpu fp32 bs1** (TensorRT was not measured here" in text
    image = (folder / "latency_vs_shape.jpg").read_bytes()
    assert image[:3] == b"\xff\xd8\xff" and len(image) > 10_000
    assert "mix mean" in capsys.readouterr().out
    page = (folder / "report.html").read_text()
    assert "data:image/jpeg;base64" in page  # self-contained: the figure inlined
    assert "<pre># K=1, profile 1 of 1: height x width 16x16..48x48\ninputs:\n  - name: image\n" in page  # snippets verbatim
    from framework.report.document import build_markdown

    report = build_markdown(folder.parent, [])  # the model's report.md includes the section, figure path from the model folder
    assert "## Shapes as served" in report and "](shape_mix/latency_vs_shape.jpg)" in report


def test_ctrl_c_mid_experiment_stops_and_does_not_promise_a_resume(tmp_path):
    """SIGINT while an experiment measures: exit 130, one true line (a shape mix measures everything again)."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "seen.csv").write_text("height,width\n16,16\n32,32\n")
    command = [sys.executable, "-m", "framework.cli", "run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-distribution",
               str(tmp_path / "seen.csv"), "--engines", "onnxruntime-cpu", "--iterations", "100000000",
               "--output", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.Popen(command, cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = tmp_path / "out" / "tiny_cnn" / "shape_mix" / "onnxruntime-cpu__fp32__bs1" / "shape_mix_job.json"
    deadline = time.monotonic() + 120
    while not job.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # the experiment's child is measuring its buckets
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "does not resume" in err and "to resume" not in err and "Traceback" not in err


def test_torch_compile_dynamic_against_static_counts_compiled_graphs(tmp_path, capsys):
    """pytorch-cpu with compile: the dynamic engine (dynamic=True) compiles once and never again in the mix; the
    static form compiles a graph per bucket (dynamic=False), each counted."""
    (tmp_path / "seen.csv").write_text("height,width\n16,16\n16,16\n32,32\n")
    code = main(["run", "tiny_cnn", "--models-dir", str(FIXTURES), "--shape-distribution", str(tmp_path / "seen.csv"),
                 "--engines", "pytorch-cpu", "--option", "compile=default", "--threads", "1", "--mix-iterations", "100",
                 "--output", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "tiny_cnn" / "shape_mix" / "pytorch-cpu__fp32__bs1__compile_default" / "shape_mix.json").read_text())
    assert result["status"] == "ok" and result["options"]["compile_shapes"] == "dynamic"
    assert result["compiles_per_bucket"] >= 1
    assert [m["recompiles"] for m in result["mixes"]] == [0] * len(result["mixes"])  # nothing compiled inside the timed stream
    assert [s["how"] for s in result["static"]] == ["torch.compile(dynamic=False)"] * 2
    assert all(s["compiles"] >= 1 and s["static_ms"] > 0 for s in result["static"])


def test_results_of_an_older_distribution_are_left_out_of_the_report(tmp_path):
    import os

    from framework.results.shape_mix_record import BucketLatency, ShapeMixResult, load_shape_mixes

    def result(engine: str, weights: list[float]) -> ShapeMixResult:
        buckets = tuple(BucketLatency(v, w, linear(v), (linear(v), linear(v)), 10, "converged") for v, w in zip(VALUES, weights))
        return ShapeMixResult("m", engine, "fp32", 1, {}, ("sequence",), buckets=buckets)

    old = result("pytorch-cpu", [0.25] * 4).save(tmp_path / "old")
    os.utime(old, (1, 1))
    result("onnxruntime-cpu", WEIGHTS).save(tmp_path / "new")
    ShapeMixResult("m", "tensorrt", "fp32", 1, {}, ("sequence",), status="failed", reason="no GPU").save(tmp_path / "failed")
    with pytest.warns(UserWarning, match="old measured another distribution"):
        kept = load_shape_mixes(tmp_path)
    assert sorted(r.engine for r in kept) == ["onnxruntime-cpu", "tensorrt"]  # the failed one is shown with its reason


def test_the_report_says_when_the_mix_and_the_bucket_medians_disagree():
    """A bucket 3x slower inside the mix than timed alone (a loaded machine, or switches that cost): the report
    says the recommendations from the bucket medians do not describe the mix; an agreeing mix gets no such line."""
    from framework.report.shape_section import shape_markdown
    from framework.results.shape_mix_record import BucketLatency, MixRun, ShapeMixResult

    buckets = tuple(BucketLatency(v, w, linear(v), (linear(v), linear(v)), 10, "converged") for v, w in zip(VALUES, WEIGHTS))
    draws = tuple(i % 4 for i in range(40))

    def report(slower: float) -> str:
        mix = MixRun("unpadded", 0, draws, tuple(VALUES), tuple(linear(VALUES[d]) * (slower if d == 0 else 1) for d in draws))
        result = ShapeMixResult("m", "onnxruntime-cpu", "fp32", 1, {}, ("sequence",), buckets=buckets, mixes=(mix,))
        return "\n".join(shape_markdown([result], None, None))

    assert "disagree" not in report(1.2)
    assert "| engine | bucket | static form |" not in report(1.2)  # no engine with a static form: no empty table
    assert "Bucket 8 took 24.000 ms (median) inside the mix against 8.000 ms timed alone (3x): switching shapes" in report(3.0)
    assert "(0.25x): the machine was slower while the buckets were timed" in report(0.25)
    single = MixRun("unpadded", 0, (0,) * 20, ((8,),), (24.0,) * 20)
    result = ShapeMixResult("m", "pytorch-cpu", "fp32", 1, {}, ("sequence",), buckets=buckets[:1], mixes=(single,))
    assert "(3x): the machine was slower during the mix (one bucket: no shape switches)" in "\n".join(shape_markdown([result], None, None))
    flat = MixRun("unpadded", 0, draws, tuple(VALUES), (8.0,) * 40)
    two = [dataclasses.replace(result, batch_size=b, buckets=buckets, mixes=(flat,)) for b in (1, 4)]
    assert "| pytorch-cpu fp32 bs4 | none" in "\n".join(shape_markdown(two, None, None))  # batch sizes told apart in every table


def test_example_shapes_outside_the_profile_warn_on_engines_without_one():
    from framework.distribution import warn_outside_profile

    config = load_config(FIXTURES / "tiny_cnn" / "config.yaml")  # profile: height and width 8..64
    with pytest.warns(
        UserWarning, match=r"input 'image' dim 2 \(height\) = 96 outside 8\.\.64, dim 3 \(width\) = 96 .*inputs\[0\]\.shapes\.optimization"
    ):
        warn_outside_profile(config, [[(96, 96, 3)]], ["onnxruntime-cpu"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_outside_profile(config, [[(32, 32, 3)], None], ["onnxruntime-cpu"])  # inside: silent
        warn_outside_profile(config, [[(96, 96, 3)]], ["tensorrt"])  # TensorRT refuses it itself, naming the same field


def test_paired_timing_alternates_and_measures_each_side_exactly():
    from framework.measure.shape_mix import time_paired

    clock, order = FakeClock(), []

    def step(name: str, ms: float):
        def run():
            order.append(name)
            clock.now += int(ms * 1e6)

        return run

    a, b = time_paired(step("dynamic", 3.0), step("static", 2.0), {"warmup": 2, "min_iterations": 5, "min_duration_s": 0.1}, clock=clock)
    assert set(a) == {3_000_000} and set(b) == {2_000_000} and len(a) == len(b) >= 20  # 0.1 s of 5 ms pairs
    assert order[:4] == ["dynamic", "static"] * 2  # warm-up alternates
    assert order[4:12] == ["dynamic", "static", "static", "dynamic"] * 2  # then ABBA: neither always goes second
