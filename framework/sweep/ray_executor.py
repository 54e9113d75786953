"""``--executor ray``: a shape's pending experiments, every batch size at once, as Ray tasks; only this
process (the driver, holding the results lock) writes the results folder.

Each experiment is one task running the same ``Job`` a local child runs (``ray_worker.measure``) in the slot
``cluster.ClusterSettings.task_options`` gives it. The files a job names travel through Ray's object store
(``Shipper``: each once per run), so workers need no shared folder. As each task ends, the driver saves its
result with ``store.save_result`` (atomic, as a local run does) and prints the progress line: done, running,
queued, ETA. A task whose worker process or node dies is retried once by Ray (``max_retries=1``), then
recorded as failed with the reason; ``--timeout`` is applied on the worker exactly as locally. Interrupted,
the driver cancels what still runs; finished experiments are on disk and a rerun keeps them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from framework.errors import DeployBenchError, one_line
from framework.files import write_atomic
from framework.results.record import Result
from framework.results.store import save_result
from framework.results.tables import progress_text
from framework.settings import SweepSettings
from framework.sweep.cluster import CPU_SLOT, NODE, ClusterSettings
from framework.sweep.job import Job
from framework.sweep.ray_worker import Bundle, engines_here, measure, warm_up
from framework.sweep.repeats import merge_repeats

SKIPPED_NAMES = ("__pycache__",)
PROBE_TIMEOUT_S = 300.0  # a probe task waits for a free slot of its device
WAIT_POLL_S = 1.0  # the longest the driver waits in Ray's C++ code before it looks at its signals again
LOCAL_RAY_CPUS = 4  # what a local Ray instance counts: how many idle workers it starts, and at once


def exit_after_interrupt(code: int) -> None:
    """End the process at once after Ctrl-C when Ray is connected: the results are saved by now, and Ray's core
    worker can abort the interpreter's exit (a failed check in its task manager when a cancelled task's reply
    arrives late, seen with Ray 2.60), turning the documented exit status 130 into 1."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def connect(cluster: ClusterSettings):
    """Ray, connected once per process: to ``--address``, or to a local instance started here with one CPU
    slot and one node resource (``cluster``'s slot rule)."""
    try:
        import ray
    except ImportError:
        raise DeployBenchError("--executor ray needs the ray package: pip install 'deploybench[ray]'") from None
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "logging_level": "ERROR"}
    os.environ.setdefault("RAY_worker_niceness", "0")  # a local instance's workers at normal priority (Ray's default: 15)
    try:
        if cluster.address is None:  # "local": a new instance, even where RAY_ADDRESS names a running cluster
            # num_cpus: deploybench's tasks ask for no Ray CPUs (the slots keep them apart); Ray starts one idle
            # Python worker per CPU it counts, 32 at once on a 32-core host, competing with the preparation
            ray.init(address="local", num_cpus=LOCAL_RAY_CPUS, resources={CPU_SLOT: 1, NODE: 1}, include_dashboard=False, **quiet)
        else:
            ray.init(address=cluster.address, **quiet)
    except (ConnectionError, ValueError) as exc:  # ValueError: an address Ray cannot parse, ray:// without ray[client]
        where = f"--address {cluster.address}: cannot connect to a Ray cluster there" if cluster.address else "cannot start a local Ray instance"
        raise DeployBenchError(f"{where} ({one_line(exc)})") from None
    return ray


def prepare_cluster(cluster: ClusterSettings, names: list[str]) -> list[str]:
    """Before a Ray sweep builds anything: connect, ask the cluster about the engines this machine cannot run
    (``probe_engines``), and refuse a cluster that lacks the slots the runnable engines need. Returns the
    engines found on the cluster only."""
    from framework.engines import engine_availability, engine_class

    ray = connect(cluster)
    found = probe_engines(ray, cluster, names)
    devices = set()
    for name in names:
        with contextlib.suppress(ImportError, DeployBenchError):
            if engine_availability(name) is None:
                devices.add(engine_class(name).device)
    missing = cluster.missing_resources(devices, ray.cluster_resources())
    if missing:
        raise DeployBenchError("--executor ray: " + "; ".join(missing))
    warm_up_workers(ray, cluster, devices | {engine_class(name).device for name in found})
    return found


_warming: list = []  # the warm-up tasks, not waited for


def warm_up_workers(ray, cluster: ClusterSettings, devices: set[str]) -> None:
    """One ``warm_up`` task per slot of each device the sweep measures on: the workers' fork servers import
    torch & co. while this process prepares the model, instead of when the first experiment reaches each."""
    slots = cluster.slots(ray.cluster_resources())
    task = ray.remote(max_retries=0, max_calls=0)(warm_up)
    for device in sorted(devices):
        _warming.extend(task.options(**cluster.task_options(device), name="deploybench-warm-up").remote() for _ in range(slots.get(device, 0)))


def probe_engines(ray, cluster: ClusterSettings, names: list[str]) -> list[str]:
    """The engines among ``names`` this machine cannot run but a node of the cluster can (a GPU engine on a
    driver without a GPU): one probe task per device, on a node with that device. The sweep then plans them
    as runnable (``engines.set_cluster_engines``); the ones no node runs stay unavailable with this machine's
    reason. Returns them."""
    from framework.engines import engine_availability, engine_class, set_cluster_engines

    devices: dict[str, list[str]] = {}
    for name in names:
        with contextlib.suppress(ImportError, DeployBenchError):
            if engine_availability(name) is not None:
                devices.setdefault(engine_class(name).device, []).append(name)
    available, found = ray.cluster_resources(), []
    for device, wanted in devices.items():
        if not cluster.missing_resources({device}, available):
            task = ray.remote(max_retries=1)(engines_here).options(**cluster.task_options(device))
            found += [name for name, why in ray.get(task.remote(wanted), timeout=PROBE_TIMEOUT_S).items() if why is None]
    set_cluster_engines(found)
    return found


def measure_on_ray(groups: list[list[Job]], settings: SweepSettings, progress) -> list[Result]:
    """Run every job as a Ray task at once; return one result per group (an experiment's job, or with
    ``--repeats K`` its K processes' jobs, merged as a local run merges them), each saved as soon as its
    group's last task ends, so an interrupted sweep keeps every experiment that finished."""
    if not any(groups):
        return []
    merged = submit(groups, settings, progress)
    return [merged[group[0].run_id] for group in groups]


def submit(groups: list[list[Job]], settings: SweepSettings, progress) -> dict[str, Result]:
    """Every job a Ray task in its slot, at once; each group's result, by its first job's run id."""
    cluster = settings.cluster
    ray = connect(cluster)
    available = ray.cluster_resources()
    jobs = [job for group in groups for job in group]
    missing = cluster.missing_resources({job.device for job in jobs}, available)
    if missing:
        raise DeployBenchError("--executor ray: " + "; ".join(missing))
    # max_calls=0: a worker is reused, with its fork server (torch imported once), even after a GPU task (Ray's
    # default retires it): each experiment still runs in a child of its own, whose exit frees the GPU.
    shipper, task = Shipper(ray), ray.remote(max_retries=1, retry_exceptions=False, max_calls=0)(measure)
    submitted = {}
    for job in jobs:
        job.result_dir.mkdir(parents=True, exist_ok=True)
        job.write(job.result_dir / "job.json")  # `python -m framework.sweep.isolation job.json` reruns it here by hand
        bundles, paths = shipper.job_files(job)
        options = {**cluster.task_options(job.device, job.experiment.device_kind), "name": job.experiment.name}
        submitted[task.options(**options).remote(job.to_json(), bundles, paths, settings.timeout_s, settings.threads is not None)] = job
    slots = cluster.slots(available)
    progress.slots = sum(slots.get(device, 0) for device in {job.device for job in jobs}) or 1
    return collect(ray, submitted, groups, slots, progress, settings.output)


def collect(ray, submitted: dict, groups: list[list[Job]], slots: dict[str, int], progress, output: Path) -> dict[str, Result]:
    """Wait for each task, save its result, report it (with ``--repeats``, each process as one step of its
    experiment); an experiment's result is saved and reported once its group's last task ends. Cancel what
    is left when interrupted."""
    group_of = {job.run_id: group for group in groups for job in group}
    results: dict[str, Result] = {}
    merged: dict[str, Result] = {}
    waiting = dict(submitted)
    try:
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=WAIT_POLL_S)  # a timeout: Ctrl-C is seen within it
            for ref in ready:
                job = waiting.pop(ref)
                results[job.run_id] = settled(ray, ref, job)
                progress.ran(results[job.run_id])
                group, state = group_of[job.run_id], f" [{state_text(waiting.values(), slots)}]"
                process = f"process {int(job.result_dir.name) + 1}/{len(group)}: " if len(group) > 1 else ""
                progress(job.experiment, f"{process}{progress_text(results[job.run_id])}{state}", len(group) == 1)
                if len(group) == 1:
                    merged[job.run_id] = results[job.run_id]
                elif all(other.run_id in results for other in group):
                    merged[group[0].run_id] = result = merge_repeats([results[other.run_id] for other in group])
                    save_result(group[0].experiment.folder(output), result)
                    progress(group[0].experiment, progress_text(result))
    finally:
        # Ctrl-C or an error here: no worker goes on measuring for a driver that stopped. Not force=True: the task
        # gets a KeyboardInterrupt, kills its experiment's child and ends as cancelled; a force-killed worker's
        # late reply could abort this process in Ray 2.60's task manager ("Tried to complete task that was not pending").
        for ref in waiting:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
    return merged


def state_text(waiting: Iterable[Job], slots: dict[str, int]) -> str:
    """'running 2, queued 5': running counts as many of the unfinished experiments as their slots hold."""
    counts: dict[str, int] = {}
    for job in waiting:
        counts[job.device] = counts.get(job.device, 0) + 1
    running = sum(min(n, slots.get(device, 0)) for device, n in counts.items())
    return f"running {running}, queued {sum(counts.values()) - running}"


def settled(ray, ref, job: Job) -> Result:
    """The task's result saved in the experiment's folder (with the child's log); a failed result with the
    reason when Ray lost the task after its retry or the task itself raised."""
    from ray.exceptions import RayError, RayTaskError

    try:
        outcome = ray.get(ref)
    except RayTaskError as exc:
        result = job.pending_result().ended("failed", f"the experiment's Ray task raised: {one_line(exc.cause or exc)}", traceback=str(exc))
    except RayError as exc:
        reason = f"Ray lost the experiment's worker or node, and again when it retried it: {one_line(exc)}"
        result = job.pending_result().ended("failed", reason)
    else:
        result = outcome.result
        if outcome.child_log is not None:
            write_atomic(job.result_dir / "child.log", outcome.child_log)
    save_result(job.result_dir, result)
    return result


class Shipper:
    """Puts the files jobs name into Ray's object store, each once: the model's folder (config, plugin file,
    weights beside them), every ONNX graph with its external data, every batch's npz."""

    def __init__(self, ray) -> None:
        self.ray = ray
        self.bundles: dict[tuple[Path, bool], Bundle] = {}

    def job_files(self, job: Job) -> tuple[list[Bundle], dict[str, list[str]]]:
        """The bundles a job needs, and where each path the job names lands: path -> [bundle key, name]."""
        wanted = [(job.config_path, True), *((path, False) for path in job.graphs.values()), (job.data_file, False)]
        if job.loader.module.startswith("deploybench_models."):  # a plugin file, imported by path on the worker
            wanted.append((Path(job.loader.file), True))
        bundles, paths = {}, {}
        for path, whole_folder in wanted:
            source = Path(path).resolve().parent if whole_folder else Path(path).resolve()
            bundle = self.bundle(source, whole_folder)
            bundles[bundle.key] = bundle
            paths[str(path)] = [bundle.key, Path(path).resolve().relative_to(source).as_posix() if whole_folder else source.name]
        return list(bundles.values()), paths

    def bundle(self, source: Path, whole_folder: bool) -> Bundle:
        if (source, whole_folder) not in self.bundles:
            if whole_folder:
                files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file() and not _hidden(p, source)}
            else:  # the graph and its external data (``<graph>.data``), side by side
                files = {p.name: p for p in [source, *source.parent.glob(source.name + ".data")] if p.is_file()}
            digest, refs = hashlib.sha256(), {}
            for name, path in files.items():
                data = path.read_bytes()
                digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
                refs[name] = self.ray.put(data)
            self.bundles[(source, whole_folder)] = Bundle(digest.hexdigest()[:32], refs)
        return self.bundles[(source, whole_folder)]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") or part in SKIPPED_NAMES for part in path.relative_to(root).parts)
