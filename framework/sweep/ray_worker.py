"""The worker side of ``--executor ray``: one experiment in a Ray task, on a node that shares no folder with
the driver.

The driver ships every file a ``Job`` names (the model's folder, the ONNX graphs, the batch's npz) as bytes
in Ray's object store, grouped in ``Bundle``s; the task writes each bundle once per node under
``<tmp>/deploybench-ray/files/<content hash>/``, points the job's paths there, and runs the job as a local
sweep does (``isolation.run_in_child``: a fresh child process, the same ``--timeout``, a crash becomes a
failed result with the log's tail). Caches (TensorRT engines, compiled kernels) stay on the node, one
folder per GPU kind, never shipped. The task writes no results: it returns the ``Result`` (raw samples and
resource timeline included) and the child's log as data, and the driver saves them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from framework.files import safe_component
from framework.results.record import Result
from framework.sweep.job import Job

WORK_ROOT_VARIABLE = "DEPLOYBENCH_RAY_WORK_DIR"  # where a node keeps shipped files and caches (default: <tmp>/deploybench-ray)


@dataclass(frozen=True)
class Bundle:
    """Files that travel together (a model's folder; a graph and its external data), by content hash."""

    key: str  # sha256 of the names and bytes: the folder they land in on every node
    refs: dict  # relative name -> Ray ObjectRef of its bytes


@dataclass(frozen=True)
class Outcome:
    """What a task returns: the result as the worker saw it, the child's log, and where it ran."""

    result: Result
    child_log: str | None
    node: dict


def work_root() -> Path:
    return Path(os.environ.get(WORK_ROOT_VARIABLE) or Path(tempfile.gettempdir()) / "deploybench-ray")


def materialise(bundle: Bundle, root: Path) -> Path:
    """The bundle's folder on this node, written once (whole, then renamed: tasks side by side may race)."""
    import ray

    target = root / "files" / bundle.key
    if target.is_dir():
        return target
    staging = root / "files" / f".{bundle.key}.{uuid.uuid4().hex}"
    for name, ref in bundle.refs.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(ray.get(ref))
    staging.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(target)
    except OSError:  # another task got there first: its copy has the same bytes
        shutil.rmtree(staging, ignore_errors=True)
    return target


def measure(job_data: dict, bundles: list[Bundle], paths: dict[str, list[str]], timeout_s: float, fixed_threads: bool) -> Outcome:
    """The Ray task: run one experiment here, in a fresh child process, and return what it gave."""
    from framework import environment
    from framework.sweep.isolation import run_in_child

    task_start = time.perf_counter()
    niceness = normal_priority()  # before the fork server starts: its children inherit it
    root = work_root()
    folders = {bundle.key: materialise(bundle, root) for bundle in bundles}
    node = node_facts()
    job = localised(Job.from_json(job_data), {orig: folders[key] / name for orig, (key, name) in paths.items()}, root, node, fixed_threads)
    shutil.rmtree(job.result_dir, ignore_errors=True)  # a killed attempt's leftovers, when Ray retries it on this node
    try:
        result = run_in_child(job, timeout_s, rerun_main=False)  # the child need not import Ray again (Ray's worker is __main__)
        result = dataclasses.replace(
            result,
            machine={**environment.fingerprint_fields(), "node": {**node, "niceness": niceness}},  # this node's
            stages_s={**result.stages_s, "task": round(time.perf_counter() - task_start, 4)},
        )  # the task, files included
        if niceness > 0 and result.status == "ok":
            result = dataclasses.replace(result, warnings=(*result.warnings, f"measured at niceness {niceness} (Ray's default for workers): "
                                                           f"start the node with RAY_worker_niceness=0"))  # fmt: skip
        log = job.result_dir / "child.log"
        child_log = log.read_text(errors="replace") if log.exists() else None
    finally:
        shutil.rmtree(job.result_dir, ignore_errors=True)
    return Outcome(result, child_log, node)


def warm_up() -> int:
    """The task ``ray_executor.warm_up_workers`` sends while the driver prepares the model: this worker's fork
    server starts importing torch & co. now (in the background: the slot is free at once, so experiments are
    placed as without it), and the next task here (Ray reuses the idle worker that ran last) finds it ready. The PID."""
    from framework.sweep.isolation import start_fork_server

    normal_priority()  # before the fork server starts: its children inherit it
    start_fork_server()
    return os.getpid()


def engines_here(names: list[str]) -> dict[str, str | None]:
    """The probe task: whether this node can run each engine (None) or why not."""
    from framework.engines import engine_availability

    return {name: engine_availability(name) for name in names}


def normal_priority() -> int:
    """Ray starts its workers at niceness 15, below every ordinary process: back to 0 where allowed (root, or
    ``RAY_worker_niceness=0`` on the node); the niceness the experiment runs at."""
    if os.nice(0) > 0:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    return os.nice(0)


def localised(job: Job, moved: dict[str, Path], root: Path, node: dict, fixed_threads: bool) -> Job:
    """The driver's job with its files where this node holds them, its cache and scratch folders on this node
    (the cache one per GPU kind), and, unless the user fixed ``--threads``, this node's thread count (``node_threads``)."""
    where = lambda path: moved.get(str(path), path)  # noqa: E731
    kind = safe_component(node.get("gpu") or "cpu")
    scratch = root / "runs" / job.run_id
    measure = job.measure
    if not fixed_threads:
        measure = dataclasses.replace(measure, engine_options={**measure.engine_options, "threads": node_threads(job.device)})
    return dataclasses.replace(
        job, config_path=where(job.config_path), loader=dataclasses.replace(job.loader, file=str(where(job.loader.file))),
        graphs={name: where(path) for name, path in job.graphs.items()}, data_file=where(job.data_file),
        cache_dir=root / "cache" / safe_component(job.experiment.model) / safe_component(job.experiment.shape_tag) / kind,
        result_dir=scratch, model_dir=scratch, measure=measure, extra={**job.extra, "node": node},
    )  # fmt: skip


def node_threads(device: str) -> int:
    """An experiment's threads on this node unless ``--threads`` fixed them: its cores, and for a GPU experiment
    its share of them, since the node's GPUs each run one experiment at once (host threads of two experiments
    side by side would each use every core)."""
    from framework.machine_check import default_threads

    cores = default_threads()
    return max(1, cores // max(1, len(_gpus()))) if device == "cuda" else cores


@functools.cache
def _gpus() -> tuple[dict, ...]:
    """This node's GPUs, read through NVML once per worker process (a worker runs many tasks)."""
    from framework import environment

    return tuple(environment.gpus())


def node_facts() -> dict:
    """The node, and the GPU Ray gave this task (its model and driver), for the result's ``machine.node``."""
    import ray

    context = ray.get_runtime_context()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    gpu = next((g for g in _gpus() if str(g["index"]) == visible), None) if visible else None
    return {"hostname": socket.gethostname(), "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "worker_pid": os.getpid(), "gpu": gpu["name"] if gpu else None, "gpu_driver": gpu["driver"] if gpu else None,
            "cuda_visible_devices": visible or None, "work_root": str(work_root())}  # fmt: skip
