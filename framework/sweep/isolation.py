"""Each experiment in a fresh child process, so its memory, caches and timings are its own.

Children are forked from a multiprocessing fork server that has imported torch, torchvision and
onnxruntime but never run anything: a child starts in milliseconds instead of the seconds those imports
take, and still shares no allocator, session or thread pool with the parent or with earlier experiments.
The server starts at the beginning of a run (``start_fork_server``), importing while the parent exports.

The parent prepares what the experiments of one shape and batch size share (the ONNX files, the input
tensors and the PyTorch fp32 reference outputs) and writes ``job.json`` into the experiment's folder. The
child (``python -m framework.sweep.isolation JOB``, which also reproduces a run by hand) rebuilds the shape
context from it, runs ``experiment.run_experiment`` and saves the record with ``results.save_experiment``.
Children of ONNX engines never load the PyTorch module.

A child that crashes (segfault, out-of-memory kill, CUDA error) or outlives the timeout is recorded as a
failed experiment with its exit status and the tail of its log (``child.log``); the sweep goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import uuid
from pathlib import Path

import numpy as np

from framework.config import load_config
from framework.results.store import read_record, save_experiment, write_json

LOG_TAIL_LINES = 20
PRELOAD = ("numpy", "torch", "torchvision", "onnxruntime", "framework.sweep.runner")
_context = None


def start_fork_server() -> multiprocessing.context.BaseContext:
    """Start (once per process) the fork server children come from; it imports ``PRELOAD`` in the background."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([m for m in PRELOAD if importlib.util.find_spec(m.split(".")[0])])
        multiprocessing.forkserver.ensure_running()
        _context = context
    return _context


def write_shape_data(path: Path, inputs: list[np.ndarray], reference: dict, varied_reference: dict, dataset_reference: dict) -> Path:
    """Inputs (batch of one), the reference outputs of one batch size and over the dataset (if any), for the
    children to share."""
    arrays = {f"input:{i}": x for i, x in enumerate(inputs)}
    arrays.update({f"dataset_reference:{k}": v for k, v in dataset_reference.items()})
    arrays.update({f"reference:{k}": v for k, v in reference.items()})
    arrays.update({f"varied_reference:{k}": v for k, v in varied_reference.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays)
    tmp.replace(path)
    return path


def run_in_child(job: dict, result_dir: Path, timeout_s: float) -> tuple[dict | None, dict | None]:
    """Run one experiment in a child process: (its record, None), or (None, failure) with the reason, exit
    status and log tail when the child died or timed out before saving a record."""
    result_dir.mkdir(parents=True, exist_ok=True)
    job = {**job, "run_id": uuid.uuid4().hex, "result_dir": str(result_dir)}
    job_path = result_dir / "job.json"
    write_json(job_path, job)
    log_path = result_dir / "child.log"
    child = start_fork_server().Process(target=_child_entry, args=(str(job_path), str(log_path), dict(os.environ)), daemon=True)
    child.start()
    try:
        child.join(timeout_s)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: never leave a child measuring
        child.kill()
        child.join()
        raise
    if child.is_alive():
        child.kill()
        child.join()
        outcome = f"timed out after {timeout_s:g} s (child process killed)"
    else:
        outcome = None if child.exitcode == 0 else _describe_exit(child.exitcode)
    code = child.exitcode
    record = read_record(result_dir)
    if outcome is None and record is not None and record.get("run_id") == job["run_id"]:
        return record, None
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log_path.exists() else []
    outcome = outcome or "child process exited without saving a result"
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    return None, {"reason": outcome + (f": {last}" if last else ""), "exit_status": code, "log_tail": "\n".join(tail)}


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"child process killed by {signal.Signals(-code).name} (exit status {code})"
        except ValueError:
            return f"child process killed by signal {-code}"
    return f"child process exited with status {code}"


def _loader_class(reference: dict) -> type:
    """The plugin class named in the job: by file for ``models/*/load.py`` plugins, by module otherwise."""
    from framework.registry import import_plugin_file

    if reference["module"].startswith("deploybench_models."):
        module = import_plugin_file(Path(reference["file"]))
    else:
        module = importlib.import_module(reference["module"])
    obj = module
    for part in reference["class"].split("."):
        obj = getattr(obj, part)
    return obj


def context_from_job(job: dict):
    """The parent's shape context, rebuilt in the child from the job file and the shared arrays."""
    from framework.engines import ModelArtifacts
    from framework.sweep.experiment import ShapeContext

    config = load_config(Path(job["config_path"]))
    shapes = [tuple(s) for s in job["shapes"]]

    def load_module():
        return _loader_class(job["loader"])(config, shapes).load_pytorch_module().eval()

    artifacts = ModelArtifacts(
        config=config,
        onnx_paths={k: Path(v) for k, v in job["onnx_paths"].items()},
        cache_dir=Path(job["cache_dir"]),
        module_factory=load_module,
    )
    with np.load(job["data_file"]) as data:
        inputs = [data[f"input:{i}"] for i in range(len(config.inputs))]
        reference = {n: data[f"reference:{n}"] for n in config.output_names}
        varied = {n: data[f"varied_reference:{n}"] for n in config.output_names}
        dataset_reference = {n: data[f"dataset_reference:{n}"] for n in config.output_names} if job.get("has_dataset") else None
    batch = job["batch_size"]
    dataset = _loader_class(job["loader"])(config, shapes).load_dataset() if job.get("has_dataset") else None
    return ShapeContext(model=job["model"], tag=job["tag"], shapes=shapes, artifacts=artifacts, inputs=inputs, dataset=dataset,
                        dataset_reference=dataset_reference, references={(batch, False): reference, (batch, True): varied})  # fmt: skip


def _child_entry(job_path: str, log_path: str, environ: dict) -> None:
    """Runs in the forked child: the parent's environment as it is now (the server's dates from its start;
    variables read when a library loads, like OMP_NUM_THREADS, keep the server's values), and everything it
    prints goes to ``child.log`` (its tail explains a crash)."""
    os.environ.clear()
    os.environ.update(environ)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        main([job_path])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv: list[str]) -> int:
    from framework.sweep.experiment import run_experiment
    from framework.settings import SweepSettings

    job = json.loads(Path(argv[0]).read_text())
    context = context_from_job(job)
    settings = SweepSettings(**job["settings"])
    record = run_experiment(context, job["engine"], job["precision"], job["batch_size"], settings, dict(job["record"]))
    record["run_id"] = job["run_id"]
    save_experiment(Path(job["result_dir"]), record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
