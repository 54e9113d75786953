"""Compare two result folders: is B faster, slower, or not significantly different from A?

Experiments are matched on (model, shape, engine, precision, batch size); the latency compared is device
time for GPU engines, the host clock otherwise. Only processes are independent of each other: the samples
of one process share its memory layout, clocks and neighbours, so a test on them overclaims (two identical
runs came out "slower"). Hence, per pair:

- Both sides run with ``--repeats`` (several processes each): the estimate is the ratio of the medians of
  the per-process medians, B/A, and its 99% interval is a percentile bootstrap of that same ratio that
  resamples processes (never samples). The verdict follows asv's rule: "slower" only when the difference is
  significant AND the ratio reaches the effect factor (default 1.1), "faster" symmetrically, otherwise "no
  significant difference". Significant: Mann-Whitney U on the per-process medians gives p < 0.002, as asv
  uses, and the interval excludes 1 (so the table never shows a verdict its interval contradicts). This needs
  at least 7 processes per side (``MIN_PROCESSES``): with n a side and no ties the smallest two-sided p is
  2 / C(2n, n): 2/252 = 0.0079 with 5, 2/924 = 0.0022 with 6, 2/3432 = 0.00058 with 7. Fewer processes get
  the estimate and interval but no verdict.
- Otherwise (one process a side, or ``--repeats`` on one side only, which is noted): the ratio of the
  samples' medians with a bootstrap interval over the samples, and no verdict (``NEEDS_REPEATS``): that
  interval says how precisely one process measured, not how another process would measure.

The bootstrap draws each resample's median directly from its exact distribution (``bootstrap_medians``),
so it costs the same for 7 process medians as for 100,000 samples. The percentile interval contains the
estimate: each side's resampled median is at most its sample median in about half of the resamples and at
least it in about half, so about a quarter of the ratios lie on each side of the estimate, far more than the
0.5% each tail leaves out.

Invalid or failed results are never compared, nor are damaged ones: an unreadable summary.json is skipped and a
latencies.csv holding another number of samples than its summary.json counted (a truncated file) is not compared, each
with a warning naming the file. Results from different machines or library versions are flagged (``strict``
refuses them).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.errors import DeployBenchError, ResultFileError
from framework.results.record import Result, options_text
from framework.results.store import LATENCIES, SUMMARY, experiment_folders, load_result

P_THRESHOLD = 0.002
MIN_PROCESSES = 7  # per side: the fewest with which Mann-Whitney U can reach p < 0.002 (see above)
NEEDS_REPEATS = f"needs --repeats (>= {MIN_PROCESSES} per side) for a verdict"
CONFIDENCE = 0.99
RESAMPLES = 10_000


@dataclass(frozen=True)
class Pair:
    key: tuple
    median_a: float  # with --repeats on both sides: the median of the per-process medians
    median_b: float
    ratio: float  # median_b / median_a
    ci_low: float  # 99% percentile bootstrap interval of ``ratio``: over processes with --repeats, else samples
    ci_high: float
    verdict: str
    p_value: float | None = None  # Mann-Whitney U on per-process medians, when both sides have them
    processes: tuple[int, int] = (1, 1)  # processes measured on each side


@dataclass(frozen=True)
class Side:
    """One experiment's result as compare reads it: summary.json, and its headline samples from latencies.csv
    (ms; empty when none were read) in ``folder``."""

    result: Result
    samples_ms: np.ndarray
    folder: Path


def load_sides(root: Path, samples: bool = True) -> dict[tuple, Side]:
    """Every experiment under ``root`` (a results folder or one model's folder), keyed for matching: the files
    ``store.load_results`` reads, skipped with the same warnings, but only the headline column of latencies.csv
    is parsed, by numpy (20 times faster than the csv module); none with ``samples=False``."""
    sides = {}
    for folder in experiment_folders(root):
        try:
            side = _read_side(folder, samples)
        except ResultFileError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
            continue
        sides[side.result.experiment.key] = side
    return sides


def results_by_key(root: Path) -> dict[tuple, Result]:
    """Every experiment's summary under ``root``, keyed for matching (its samples are not read)."""
    return {key: side.result for key, side in load_sides(root, samples=False).items()}


def _read_side(folder: Path, samples: bool) -> Side:
    path = folder / SUMMARY
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None
    result = Result.from_json(data, where=str(path))
    if not samples or not (folder / LATENCIES).is_file():
        return Side(result, np.empty(0), folder)
    try:
        return Side(result, _headline_column(folder / LATENCIES, result), folder)
    except (OSError, ValueError):  # empty cells (a GPU run's shorter column), damage: the exact reader decides
        full = load_result(folder)
        return Side(full, np.asarray(full.headline_samples_ms(), dtype=float), folder)


def _headline_column(path: Path, result: Result) -> np.ndarray:
    """``Result.headline_samples_ms`` read straight from latencies.csv: device time when the result has it."""
    with path.open() as handle:
        header = handle.readline().strip().split(",")
        column = header.index("latency_model_ms" if result.latency_model and "latency_model_ms" in header else "latency_ms")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a header without rows: numpy warns that it read no data
            return np.loadtxt(handle, delimiter=",", usecols=(column,), ndmin=1, dtype=float)


def bootstrap_medians(values, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The medians of ``resamples`` resamples of ``values`` (with replacement, each as long as ``values``),
    distributed exactly as ``np.median(rng.choice(values, (resamples, n)), axis=1)`` but in O(resamples): the
    sorted indices of n uniform draws from 0..n-1 are floor(n U_(k)), U_(k) the order statistics of n
    uniforms on (0, 1); the lower middle one, k = ceil(n/2), is Beta(k, n - k + 1), and the next one is
    U_(k) + (1 - U_(k)) Beta(1, n - k) (the smallest of the n - k above it)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    k = (n + 1) // 2
    lower = rng.beta(k, n - k + 1, size=resamples)
    index = lambda u: np.minimum((n * u).astype(np.int64), n - 1)
    if n % 2:
        return x[index(lower)]
    upper = lower + (1 - lower) * rng.beta(1, n - k, size=resamples)
    return (x[index(lower)] + x[index(upper)]) / 2


def bootstrap_ratio_ci(a, b, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of median(b) / median(a), resampling each side independently."""
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(b, resamples, rng) / bootstrap_medians(a, resamples, rng)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def mann_whitney_u(a, b) -> tuple[float, float]:
    """(U of ``a``, two-sided p). Exact distribution without ties and up to 50 per side; else the normal
    approximation with tie and continuity corrections."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = a.size, b.size
    combined = np.concatenate([a, b])
    ranks = _average_ranks(combined)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u_small = min(u1, n1 * n2 - u1)
    has_ties = np.unique(combined).size < combined.size
    if not has_ties and max(n1, n2) <= 50:
        counts = _u_distribution(n1, n2)
        p = 2 * counts[: int(u_small) + 1].sum() / counts.sum()
        return u1, min(1.0, float(p))
    _, tie_counts = np.unique(combined, return_counts=True)
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - float((tie_counts**3 - tie_counts).sum()) / (n * (n - 1)))
    if variance <= 0:
        return u1, 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return u1, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _u_distribution(n1: int, n2: int) -> np.ndarray:
    """Number of orderings giving each U = 0..n1*n2: c(i, j) = c(i-1, j) shifted by j + c(i, j-1)."""
    table = [[None] * (n2 + 1) for _ in range(n1 + 1)]
    for i in range(n1 + 1):
        for j in range(n2 + 1):
            counts = np.zeros(i * j + 1)
            if i == 0 or j == 0:
                counts[0] = 1
            else:
                counts[j : j + (i - 1) * j + 1] += table[i - 1][j]
                counts[: i * (j - 1) + 1] += table[i][j - 1]
            table[i][j] = counts
    return table[n1][n2]


def verdict(ratio: float, low: float, high: float, factor: float, p_value: float | None = None) -> str:
    """asv's rule: significant and beyond ``factor``. Significant: the interval excludes 1 and, when given, the
    Mann-Whitney p < 0.002."""
    significant = p_value is None or p_value < P_THRESHOLD
    if significant and low > 1 and ratio >= factor:
        return "slower"
    if significant and high < 1 and ratio <= 1 / factor:
        return "faster"
    return "no significant difference"


def process_medians(result: Result) -> tuple[float, ...] | None:
    medians = result.headline_process_medians()
    return medians if medians and len(medians) >= 2 else None


def environment_differences(root_a: Path, root_b: Path) -> list[str]:
    """What differs between the machines and libraries that produced A and B: every matched pair of results
    compared on the machine it records; results written before results recorded it fall back on the folders'
    environment.json."""
    a, b = results_by_key(root_a), results_by_key(root_b)
    matched = sorted(set(a) & set(b), key=str)
    found: dict[str, int] = {}
    for key in matched:
        for text in _differences(a[key].machine, b[key].machine):
            found[text] = found.get(text, 0) + 1
    diffs = [f"{text} ({count} of {len(matched)} experiments)" for text, count in found.items()]
    if all(a[k].machine and b[k].machine for k in matched) and matched:
        return diffs
    env_a, env_b = (_environment(Path(root)) for root in (root_a, root_b))
    if not env_a or not env_b:
        return diffs + ["environment.json missing or unreadable on one side: cannot tell whether the machines match"]
    machine_a, machine_b = ({"cpu_model": env.get("cpu_model"), "packages": env.get("packages", {}),
                             "gpus": [[g.get("name"), g.get("driver")] for g in env.get("gpus", []) if isinstance(g, dict)]}
                            for env in (env_a, env_b))  # fmt: skip
    folder = [f"python: {env_a.get('python')!r} vs {env_b.get('python')!r}"] if env_a.get("python") != env_b.get("python") else []
    return diffs + folder + [d for d in _differences(machine_a, machine_b) if d not in found]


def _differences(a: dict, b: dict) -> list[str]:
    if not a or not b:
        return []
    diffs = [f"cpu_model: {a.get('cpu_model')!r} vs {b.get('cpu_model')!r}"] if a.get("cpu_model") != b.get("cpu_model") else []
    if a.get("gpus") != b.get("gpus"):
        diffs.append(f"GPUs/driver: {a.get('gpus')} vs {b.get('gpus')}")
    packages_a, packages_b = a.get("packages") or {}, b.get("packages") or {}
    for name in sorted(set(packages_a) | set(packages_b)):
        if packages_a.get(name) != packages_b.get(name):
            diffs.append(f"{name}: {packages_a.get(name)} vs {packages_b.get(name)}")
    return diffs


def _environment(root: Path) -> dict:
    """The first environment.json under ``root``; {} (with a warning naming it) when it is unreadable."""
    files = sorted(root.rglob("environment.json"))
    if not files:
        return {}
    try:
        env = json.loads(files[0].read_text())
    except (OSError, ValueError) as exc:
        warnings.warn(f"skipped: {files[0]}: unreadable ({type(exc).__name__}: {exc})", stacklevel=3)
        return {}
    if not isinstance(env, dict) or not all(isinstance(env.get(k, {}), t) for k, t in (("packages", dict), ("gpus", list))):
        warnings.warn(f"skipped: {files[0]}: not a deploybench environment record", stacklevel=3)
        return {}
    return env


def check_factor(factor: float) -> None:
    """The effect factor must be a finite number >= 1 (1.1: a 10% change); ``DeployBenchError`` naming it if not."""
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) or factor < 1:
        raise DeployBenchError(f"--factor {factor!r}: must be a finite number >= 1, e.g. 1.1 for a 10% change")


def damaged_samples(side: Side, name: str) -> str | None:
    """Why ``side``'s raw samples cannot be compared (none, or not as many as its summary counted), or None."""
    count, stats = side.samples_ms.size, side.result.headline
    if count and (stats is None or count == stats.n):
        return None
    counted = f", summary.json counts {stats.n}" if stats is not None else ""
    problem = f"{LATENCIES} holds {count} samples{counted}"
    warnings.warn(f"not compared: {side.folder / LATENCIES}: {problem} (damaged or truncated)", stacklevel=3)
    return f"{name}: {problem}"


def compare(root_a: Path, root_b: Path, factor: float = 1.1) -> tuple[list[Pair], list[str]]:
    """Pairs with estimates, intervals and verdicts, and notes on what could not be compared or judged."""
    check_factor(factor)
    a, b = load_sides(root_a), load_sides(root_b)
    pairs, notes = [], []
    for key in sorted(set(a) & set(b), key=str):
        unusable = [f"{name}: {s.result.status}" if s.result.status != "ok" else f"{name}: invalid ({'; '.join(s.result.invalid_reasons)})"
                    for name, s in (("A", a[key]), ("B", b[key])) if not s.result.is_valid]  # fmt: skip
        if not unusable:
            unusable = [p for p in (damaged_samples(a[key], "A"), damaged_samples(b[key], "B")) if p]
        if not unusable:  # a zero or negative latency is no measurement: a ratio of it means nothing
            unusable = [f"{name}: latencies not all positive" for name, s in (("A", a[key]), ("B", b[key])) if not _positive(s)]
        if unusable:
            notes.append(f"{_name(key)}: not compared, {', '.join(unusable)}")
            continue
        pair = compare_pair(key, a[key], b[key], factor)
        pairs.append(pair)
        configurations = [_configuration(s.result) for s in (a[key], b[key])]
        if configurations[0] != configurations[1]:  # e.g. a --tune run against a plain one
            notes.append(f"{_name(key)}: measured in different configurations: A {configurations[0]}, B {configurations[1]}")
        if 1 in pair.processes and pair.processes != (1, 1):
            notes.append(f"{_name(key)}: only one side has --repeats ({pair.processes[0]} vs {pair.processes[1]} processes): "
                         f"estimate and interval from the pooled samples, no verdict")  # fmt: skip
    for key in sorted(set(a) ^ set(b), key=str):
        notes.append(f"{_name(key)}: only in {'A' if key in a else 'B'}")
    return pairs, notes


def compare_pair(key: tuple, a: Side, b: Side, factor: float) -> Pair:
    """Both sides with --repeats: medians of the process medians, bootstrap over processes, Mann-Whitney U,
    and a verdict from ``MIN_PROCESSES`` a side. Otherwise: the samples' medians and bootstrap, no verdict."""
    medians_a, medians_b = process_medians(a.result), process_medians(b.result)
    processes = (len(medians_a or (0,)), len(medians_b or (0,)))
    if medians_a and medians_b:
        xa, xb = np.asarray(medians_a, dtype=float), np.asarray(medians_b, dtype=float)
    else:
        xa, xb = a.samples_ms, b.samples_ms
    median_a, median_b = float(np.median(xa)), float(np.median(xb))
    ratio = median_b / median_a
    low, high = bootstrap_ratio_ci(xa, xb)
    if not (medians_a and medians_b):
        return Pair(key, median_a, median_b, ratio, low, high, NEEDS_REPEATS, None, processes)
    p_value = mann_whitney_u(xb, xa)[1]
    judged = verdict(ratio, low, high, factor, p_value) if min(processes) >= MIN_PROCESSES else NEEDS_REPEATS
    return Pair(key, median_a, median_b, ratio, low, high, judged, p_value, processes)


def _configuration(result: Result) -> str:
    return options_text(result.configuration) or "default options"


def _positive(side: Side) -> bool:
    medians = process_medians(side.result)
    values = np.asarray(medians if medians else side.samples_ms, dtype=float)
    return bool(values.size) and bool(np.all(np.isfinite(values))) and float(np.min(values)) > 0


def geometric_mean(ratios: list[float]) -> float:
    usable = [r for r in ratios if r > 0 and math.isfinite(r)]
    return math.exp(sum(math.log(r) for r in usable) / len(usable)) if usable else float("nan")


def format_report(pairs: list[Pair], notes: list[str], env_diffs: list[str], factor: float) -> str:
    lines = []
    if env_diffs:
        lines.append("WARNING: the two runs come from different environments:")
        lines += [f"  {d}" for d in env_diffs]
        lines.append("")
    lines.append(f"{'experiment':58s} {'A median ms':>11s} {'B median ms':>11s} {'B/A':>6s} {'99% CI':>15s} {'procs':>7s} {'MWU p':>8s}"
                 f"  verdict (factor {factor})")  # fmt: skip
    for p in pairs:
        p_text = f"{p.p_value:8.4f}" if p.p_value is not None else f"{'n/a':>8s}"
        procs = f"{p.processes[0]}/{p.processes[1]}"
        lines.append(f"{_name(p.key):58s} {p.median_a:11.3f} {p.median_b:11.3f} {p.ratio:6.3f} [{p.ci_low:5.3f}, {p.ci_high:5.3f}] "
                     f"{procs:>7s} {p_text}  {p.verdict}")  # fmt: skip
    if pairs:
        lines.append(f"geometric mean of B/A over {len(pairs)} pairs: {geometric_mean([p.ratio for p in pairs]):.3f}")
    if any(1 in p.processes for p in pairs):
        lines.append(f"pairs without --repeats on both sides: B/A is the ratio of the samples' medians and its interval resamples "
                     f"one process's samples, which are not independent: it shows that process's precision, not another "
                     f"run's; measure both with --repeats {MIN_PROCESSES} or more for a verdict")  # fmt: skip
    lines += notes
    return "\n".join(lines)


def _name(key: tuple) -> str:
    """``Experiment.key`` as ``Experiment.name`` writes it: its GPU kind last, where ``--devices`` named one."""
    model, shape, engine, precision, batch, *kind = key
    return f"{model} {shape} {engine} {precision} bs{batch}" + "".join(f" on {k}" for k in kind)
