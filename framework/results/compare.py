"""Compare two result folders: is B faster, slower, or not significantly different from A?

Experiments are matched on (model, shape, engine, precision, batch size). Per pair: the ratio of medians
B/A with a 99% bootstrap confidence interval from the raw samples (device time for GPU engines, host time
otherwise). The verdict follows asv's rule: "slower" only when the difference is significant AND the ratio
reaches the effect factor (default 1.1), "faster" symmetrically, otherwise "no significant difference".

Significance: when both sides were run with ``--repeats`` (several processes each), the test is
Mann-Whitney U on the per-process medians at p < 0.002, as asv does: samples of one process are not
independent of each other, processes are. This needs at least 7 processes per side (with 6, the smallest
possible two-sided p is 2/924 = 0.0022). Otherwise the bootstrap interval must exclude 1.

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

from framework.errors import DeployBenchError
from framework.results.record import Result
from framework.results.store import LATENCIES, load_results

P_THRESHOLD = 0.002


@dataclass(frozen=True)
class Pair:
    key: tuple
    median_a: float
    median_b: float
    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    p_value: float | None = None  # Mann-Whitney U on per-process medians, when both sides have them


def results_by_key(root: Path) -> dict[tuple, Result]:
    """Every experiment under ``root`` (a results folder or one model's folder), keyed for matching."""
    return {r.experiment.key: r for r in load_results(root)}


def bootstrap_ratio_ci(a: np.ndarray, b: np.ndarray, confidence: float = 0.99, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of median(b) / median(a), resampling each side independently."""
    rng = np.random.default_rng(seed)
    med_a = np.median(rng.choice(a, size=(resamples, a.size)), axis=1)
    med_b = np.median(rng.choice(b, size=(resamples, b.size)), axis=1)
    ratios = med_b / med_a
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
    """asv's rule: significant (Mann-Whitney p < 0.002 if given, else the CI excludes 1) and beyond ``factor``."""
    significant_up = p_value < P_THRESHOLD if p_value is not None else low > 1
    significant_down = p_value < P_THRESHOLD if p_value is not None else high < 1
    if significant_up and ratio >= factor:
        return "slower"
    if significant_down and ratio <= 1 / factor:
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


def damaged_samples(result: Result, root: Path, side: str) -> str | None:
    """Why ``result``'s raw samples cannot be compared (none, or not as many as its summary counted), or None."""
    samples, stats = result.headline_samples_ms(), result.headline
    if samples and (stats is None or len(samples) == stats.n):
        return None
    counted = f", summary.json counts {stats.n}" if stats is not None else ""
    problem = f"{LATENCIES} holds {len(samples)} samples{counted}"
    folder = result.experiment.folder(root)
    path = folder if folder.is_dir() else result.experiment.folder(Path(root).parent)
    warnings.warn(f"not compared: {path / LATENCIES}: {problem} (damaged or truncated)", stacklevel=3)
    return f"{side}: {problem}"


def compare(root_a: Path, root_b: Path, factor: float = 1.1) -> tuple[list[Pair], list[str]]:
    """Pairs with verdicts, and notes on what could not be compared."""
    check_factor(factor)
    a, b = results_by_key(root_a), results_by_key(root_b)
    pairs, notes = [], []
    for key in sorted(set(a) & set(b), key=str):
        unusable = [f"{side}: {r.status}" if r.status != "ok" else f"{side}: invalid ({'; '.join(r.invalid_reasons)})"
                    for side, r in (("A", a[key]), ("B", b[key])) if not r.is_valid]  # fmt: skip
        if not unusable:
            unusable = [p for p in (damaged_samples(a[key], root_a, "A"), damaged_samples(b[key], root_b, "B")) if p]
        if unusable:
            notes.append(f"{_name(key)}: not compared, {', '.join(unusable)}")
            continue
        sa, sb = np.asarray(a[key].headline_samples_ms()), np.asarray(b[key].headline_samples_ms())
        ratio = float(np.median(sb) / np.median(sa))
        low, high = bootstrap_ratio_ci(sa, sb)
        p_value = None
        medians_a, medians_b = process_medians(a[key]), process_medians(b[key])
        if medians_a and medians_b:
            ratio = float(np.median(medians_b) / np.median(medians_a))
            p_value = mann_whitney_u(medians_b, medians_a)[1]
        elif medians_a or medians_b:
            notes.append(f"{_name(key)}: only one side has --repeats; verdict from the pooled samples' bootstrap interval")
        pairs.append(Pair(key, float(np.median(sa)), float(np.median(sb)), ratio, low, high,
                          verdict(ratio, low, high, factor, p_value), p_value))  # fmt: skip
    for key in sorted(set(a) ^ set(b), key=str):
        notes.append(f"{_name(key)}: only in {'A' if key in a else 'B'}")
    return pairs, notes


def geometric_mean(ratios: list[float]) -> float:
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else float("nan")


def format_report(pairs: list[Pair], notes: list[str], env_diffs: list[str], factor: float) -> str:
    lines = []
    if env_diffs:
        lines.append("WARNING: the two runs come from different environments:")
        lines += [f"  {d}" for d in env_diffs]
        lines.append("")
    lines.append(f"{'experiment':58s} {'A median ms':>11s} {'B median ms':>11s} {'B/A':>6s} {'99% CI':>15s} {'MWU p':>8s}  verdict (factor {factor})")
    for p in pairs:
        p_text = f"{p.p_value:8.4f}" if p.p_value is not None else f"{'n/a':>8s}"
        lines.append(
            f"{_name(p.key):58s} {p.median_a:11.3f} {p.median_b:11.3f} {p.ratio:6.3f} [{p.ci_low:5.3f}, {p.ci_high:5.3f}] {p_text}  {p.verdict}"
        )
    if pairs:
        lines.append(f"geometric mean of B/A over {len(pairs)} pairs: {geometric_mean([p.ratio for p in pairs]):.3f}")
    lines += notes
    return "\n".join(lines)


def _name(key: tuple) -> str:
    model, shape, engine, precision, batch = key
    return f"{model} {shape} {engine} {precision} bs{batch}"
