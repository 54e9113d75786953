"""The "Shapes as served" section: per-bucket medians, the served mix (expected latency and p99), static against
dynamic, padding and the recommended TensorRT profiles with a ready ``config.yaml`` snippet, from every
``shape_mix.json`` under ``<model>/shape_mix/``. Written as ``shape_mix/shape_mix.md`` (+ ``report.html``), and
included in the model's report.md when there is one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from framework.config import load_config
from framework.files import write_atomic
from framework.report.shape_chart import draw_shape_chart, value_text
from framework.results.profiles import DEFAULT_OPT_PENALTY, expected_latency, padding_choices, recommend_profiles
from framework.results.shape_mix_record import ShapeMixResult, load_shape_mixes

FOLDER, MARKDOWN, FIGURE = "shape_mix", "shape_mix.md", "latency_vs_shape.jpg"
PROFILE_SOURCES = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "pytorch-cuda", "onnxruntime-cpu", "pytorch-cpu")


def write_shape_report(model_dir: Path) -> tuple[Path | None, Path | None, str]:
    """The figure and shape_mix.md from the saved shape-mix results; returns their paths (None when there are no
    results, or no figure) and the markdown (``sweep.shape_study`` also writes it as HTML)."""
    folder = Path(model_dir) / FOLDER
    results = load_shape_mixes(folder)
    if not results:
        return None, None, ""
    figure = draw_shape_chart(results, folder / FIGURE, Path(model_dir).name)
    text = "\n".join(shape_markdown(results, f"{FIGURE}" if figure else None, _config_path(model_dir, results))) + "\n"
    write_atomic(folder / MARKDOWN, text)
    return figure, folder / MARKDOWN, text


def section_for_report(model_dir: Path) -> list[str]:
    """The section as report.md includes it (image paths relative to the model folder); [] without results."""
    path = Path(model_dir) / FOLDER / MARKDOWN
    if not path.exists():
        return []
    return [line.replace(f"]({FIGURE})", f"]({FOLDER}/{FIGURE})") for line in path.read_text().splitlines()] + [""]


def _config_path(model_dir: Path, results: list[ShapeMixResult]) -> Path | None:
    """The model's config.yaml, as a shape-mix job names it (for the snippets' fixed dims)."""
    import json

    for job in sorted((Path(model_dir) / FOLDER).glob("*/shape_mix_job.json")):
        try:
            return Path(json.loads(job.read_text())["config_path"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def shape_markdown(results: list[ShapeMixResult], figure: str | None, config_path: Path | None) -> list[str]:
    ok = [r for r in results if r.status == "ok" and r.buckets]
    lines = ["## Shapes as served", ""]
    if ok:
        dims = " x ".join(ok[0].dims)
        lines += [f"Distribution over {dims}: {len(ok[0].buckets)} bucket{'s' if len(ok[0].buckets) != 1 else ''}. Latencies are the host clock "
                  "around each call "
                  "(GPU engines: host input to host output, copies and synchronisation included), warm-up excluded. Each bucket "
                  "is measured alone (median), then a mixed stream draws every request's bucket from the distribution "
                  "(seeded; the draws are in shape_mix.json), so shape switches are paid as a server pays them.", ""]  # fmt: skip
    if figure:
        lines += [f"![latency against {dims if ok else 'shape'}]({figure})", ""]
    lines += _failed(results)
    if not ok:
        return lines
    lines += _bucket_table(ok) + _mix_table(ok) + _mix_against_buckets(ok) + _static_table(ok) + _padding_table(ok)
    lines += profile_section(ok, config_path)
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _failed(results: list[ShapeMixResult]) -> list[str]:
    failed = [r for r in results if r.status != "ok"]
    return [f"- {r.label} bs{r.batch_size}: FAILED: {r.reason}" for r in failed] + ([""] if failed else [])


def _bucket_table(ok: list[ShapeMixResult]) -> list[str]:
    names = [f"{r.label} bs{r.batch_size}" for r in ok]
    lines = ["### Median latency per bucket (ms)", "", "| bucket | share | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    lines = _per_bucket_rows(ok, lines, "median_ms")
    if len(ok[0].buckets) < 2 or all(b.switch_median_ms is None for r in ok for b in r.buckets):
        return lines
    lines += ["### First call after a shape switch (median ms)", "",
              "The buckets are timed in rounds, a block of each in turn; the first call of a block follows another shape. It "
              "is left out of the medians above and shown here: what switching to this shape costs the runtime (ONNX "
              "Runtime's CUDA convolutions search their algorithm again, memory is re-planned, a graph is re-captured).", "",
              "| bucket | share | " + " | ".join(f"{r.label} bs{r.batch_size}" for r in ok) + " |", "|---|---:|" + "---:|" * len(ok)]  # fmt: skip
    return _per_bucket_rows(ok, lines, "switch_median_ms")


def _per_bucket_rows(ok: list[ShapeMixResult], lines: list[str], field: str) -> list[str]:
    for i, bucket in enumerate(ok[0].buckets):
        cells = [_ms(getattr(r.buckets[i], field)) if i < len(r.buckets) else "n/a" for r in ok]
        lines.append(f"| {value_text(bucket.value)} | {100 * bucket.weight:.1f}% | " + " | ".join(cells) + " |")
    return lines + [""]


def _mix_table(ok: list[ShapeMixResult]) -> list[str]:
    lines = ["### The served mix", "",
             "Expected latency from the bucket medians (sum of share x median), then the mixed stream as measured: its mean "
             "(the measured expected latency), median and p99 (given from 459 requests on: fewer cannot bound a p99).", "",
             "| engine | batch | expected from buckets (ms) | mix mean (ms) | mix median (ms) | mix p99 (ms) | requests | seed | "
             "torch.compile graphs (load and buckets / in the mix) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in ok:
        mix = r.mixes[0]
        expected = expected_latency([b.weight for b in r.buckets], [b.median_ms for b in r.buckets])
        compiles = f"{r.compiles_per_bucket} / {mix.recompiles}" if mix.recompiles is not None else "n/a (not compiled)"
        lines.append(f"| {r.label} | {r.batch_size} | {_ms(expected)} | {_ms(mix.mean_ms)} | {_ms(mix.median_ms)} | {_ms(mix.p99_ms)} | "
                     f"{len(mix.latencies_ms)} | {mix.seed} | {compiles} |")  # fmt: skip
    return lines + [""]


DISAGREE = 1.5  # a bucket's median inside the mix this many times above or below its own median: said so
MIN_DRAWN = 10  # ... for a bucket drawn at least this often in the mix


def _mix_against_buckets(ok: list[ShapeMixResult]) -> list[str]:
    """Where a bucket's median inside the mixed stream is far from its median timed alone, the expected latency,
    the padding and the profiles (all from the bucket medians) do not describe the mix: say so, and which way."""
    notes = []
    for r in ok:
        drawn = np.bincount(r.mixes[0].draws, minlength=len(r.buckets))
        pairs = [(b, m) for b, m, n in zip(r.buckets, r.mixes[0].bucket_medians(len(r.buckets)), drawn) if m and b.median_ms > 0 and n >= MIN_DRAWN]
        if not pairs:
            continue
        bucket, inside = max(pairs, key=lambda p: abs(math.log(p[1] / p[0].median_ms)))
        ratio = inside / bucket.median_ms
        if 1 / DISAGREE < ratio < DISAGREE:
            continue
        why = ("the machine was slower during the mix (one bucket: no shape switches)" if ratio > 1 and len(r.buckets) == 1 else
               "switching shapes costs that much (see the first call after a switch) or the machine was slower during the mix"
               if ratio > 1 else "the machine was slower while the buckets were timed (switching shapes does not make a call faster)")  # fmt: skip
        notes.append(f"- **{r.label} bs{r.batch_size}: the mix and the buckets disagree.** Bucket {value_text(bucket.value)} took "
                     f"{_ms(inside)} ms (median) inside the mix against {_ms(bucket.median_ms)} ms timed alone ({ratio:.2g}x): {why}. "
                     "The expected latency, padding and profiles computed from the bucket medians do not describe this mix; "
                     "measure again on a quiet machine (`--require-quiet`).")  # fmt: skip
    return notes + [""] if notes else []


def _static_table(ok: list[ShapeMixResult]) -> list[str]:
    lines = ["### Static against dynamic", "",
             "Each bucket on an engine built for exactly its shape against the dynamic engine, the two called in alternation "
             "(so a drifting machine slows both alike; these dynamic figures are from that paired run, not the bucket table's); "
             "the ratio is dynamic / static (above 1: dynamism costs that factor).", "",
             "| engine | bucket | static form | static (ms) | dynamic (ms) | dynamic / static | graphs compiled (static) |",
             "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    if not any(r.static for r in ok):  # no engine has a static form: the notes alone, no empty table
        lines = lines[:1]
    notes = []
    for r in ok:
        if not r.static:
            notes.append(f"- {r.label} bs{r.batch_size}: {r.static_note}")
        for s in r.static:
            ratio = f"{s.ratio:.2f}" if s.ratio else f"n/a ({s.error})" if s.error else "n/a"
            compiles = "n/a" if s.compiles is None else str(s.compiles)
            lines.append(f"| {r.label} bs{r.batch_size} | {value_text(s.value)} | {s.how} | {_ms(s.static_ms)} | {_ms(s.dynamic_ms)} | "
                         f"{ratio} | {compiles} |")  # fmt: skip
    return lines + [""] + notes + ([""] if notes else [])


PAD_MARGIN = 0.02  # a padding within this share of no padding's expected latency is not worth recommending


def _padding_table(ok: list[ShapeMixResult]) -> list[str]:
    lines = ["### Padding (engines without profiles)", "",
             "Each bucket run at a padded size: expected latency from the bucket medians (a padded size that was not measured "
             "read off the measured curve over size, past the largest bucket extrapolated along its last segment, marked *), and "
             "the mixed stream measured with the best padding other than none by those medians. A padding is recommended "
             f"only {100 * PAD_MARGIN:g}% or more below no padding: the medians are measured to about that precision.", "",
             "| engine | padding | expected from buckets (ms) | measured mix mean (ms) | measured mix p99 (ms) |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in ok:
        measured = {m.label: m for m in r.mixes}
        measured["none"] = r.mixes[0]
        choices = padding_choices([b.value for b in r.buckets], [b.weight for b in r.buckets], [b.median_ms for b in r.buckets])
        unpadded = next(p for p in choices if p.label == "none")
        best = choices[0] if choices[0].expected_ms < unpadded.expected_ms * (1 - PAD_MARGIN) else unpadded
        for p in choices:
            mix = measured.get(p.label)
            mark = " **(recommended)**" if p is best else ""
            lines.append(f"| {r.label} bs{r.batch_size} | {p.label}{mark} | {_ms(p.expected_ms)}{'*' if p.interpolated else ''} | "
                         f"{_ms(mix.mean_ms) if mix else '-'} | {_ms(mix.p99_ms) if mix else '-'} |")  # fmt: skip
    return lines + [""]


def profile_section(ok: list[ShapeMixResult], config_path: Path | None) -> list[str]:
    """TensorRT profiles for K = 1, 2, 3 from the best available per-bucket latencies, and config snippets."""
    source = min(ok, key=lambda r: (PROFILE_SOURCES.index(r.engine) if r.engine in PROFILE_SOURCES else 99, r.precision != "fp32", r.batch_size))
    values, weights, medians = [b.value for b in source.buckets], [b.weight for b in source.buckets], [b.median_ms for b in source.buckets]
    measured_trt = source.engine in ("tensorrt", "onnxruntime-tensorrt")
    lines = ["### Recommended TensorRT profiles", "",
             f"From the per-bucket medians of **{source.label} bs{source.batch_size}**"
             + ("." if measured_trt else " (TensorRT was not measured here: its latencies stand in for TensorRT's).")
             + f" Latency model: a bucket runs at its measured latency x (1 + {DEFAULT_OPT_PENALTY:g} x |log2(size / opt size)|), "
             "as TensorRT tunes kernels for opt; the buckets, sorted, are split into K contiguous profiles by dynamic "
             "programming, min/max the profile's smallest/largest bucket (one dim: each min the previous max + 1, and the first "
             "snippet keeps the config's min where lower, so no length in between is refused), opt the bucket minimising its "
             "expected latency. "
             "More profiles mean one engine (or one optimization profile) per range.", "",
             "| K | profiles (min / opt / max) | modelled expected latency (ms) |", "|---:|---|---:|"]  # fmt: skip
    splits = {k: recommend_profiles(values, weights, medians, k) for k in range(1, min(3, len(values)) + 1)}
    for k, split in splits.items():
        text = "; ".join(f"{value_text(p.min)} / {value_text(p.opt)} / {value_text(p.max)}" for p in split.profiles)
        lines.append(f"| {k} | {text} | {_ms(split.expected_ms)} |")
    lines += ["", "Ready `config.yaml` snippets (one profile per engine; the K = 1 block replaces the inputs' `optimization`):", ""]
    for k, split in splits.items():
        lines += ["```yaml"] + [line for i, p in enumerate(split.profiles) for line in _snippet(config_path, source.dims, p, i, k)] + ["```", ""]
    return lines


def _snippet(config_path: Path | None, dims: tuple[str, ...], profile, index: int, k: int) -> list[str]:
    lines = [f"# K={k}, profile {index + 1} of {k}: {' x '.join(dims)} {value_text(profile.min)}..{value_text(profile.max)}"]
    config = load_config(config_path) if config_path and Path(config_path).exists() else None
    if config is None:
        return lines + [f"# {d}: min {lo}, opt {o}, max {hi}" for d, lo, o, hi in zip(dims, profile.min, profile.opt, profile.max)]
    lines.append("inputs:")
    for spec in config.inputs:
        shapes = {}
        for key, value in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
            base = list(getattr(spec.optimization, key)) if spec.optimization else [max(d, 1) for d in spec.runtime]
            for d, v in zip(dims, value):
                if d in spec.dims_names:
                    axis = spec.dims_names.index(d)
                    keep_lower = key == "min" and index == 0 and spec.optimization is not None  # shorter than the smallest bucket
                    base[axis] = min(v, base[axis]) if keep_lower else v
            shapes[key] = base
        lines += [
            f"  - name: {spec.name}",
            "    shapes:",
            f"      optimization: {{min: {shapes['min']}, opt: {shapes['opt']}, max: {shapes['max']}}}",
        ]
    return lines
