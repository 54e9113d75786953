"""``--executor ray`` on a real two-node Ray cluster on this machine (``ray start --head`` and ``ray start
--address``, each node with its own work folder so no file is shared but through Ray): the same results as
the local executor, a worker killed mid-experiment loses nothing, an interrupted driver's rerun measures
nothing twice. Driver runs are ``deploybench run`` subprocesses, so this process never imports Ray."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from framework.cli import main
from framework.errors import DeployBenchError
from framework.sweep.cluster import CPU_SLOT, NODE, ClusterSettings
from framework.sweep.ray_worker import WORK_ROOT_VARIABLE
from tests.test_faults import REPO, make_model, records

RUN = ["--engines", "pytorch-cpu,onnxruntime-cpu", "--batch-sizes", "1,2,4", "--iterations", "3", "--warmup", "0",
       "--min-duration", "0", "--threads", "1", "--sample-interval-ms", "0"]  # fmt: skip
EXPERIMENTS = 6  # 2 engines x fp32 x 3 batch sizes
# A local test cluster without Ray's token authentication (on by default since Ray 2.5x), and no RAY_ADDRESS of the caller's.
RAY_ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}
SLOW_IN_EXPERIMENTS = (
    "if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment':\n"
    "                    time.sleep({seconds})\n"
    "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))"
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine, one CPU slot each, each with its own work folder; stopped afterwards."""
    pytest.importorskip("ray", reason="needs the ray package (pip install 'deploybench[ray]')")
    ray_cli = str(Path(sys.executable).parent / "ray")
    root = Path(tempfile.mkdtemp(prefix="dbray", dir="/tmp"))  # short: Ray's socket paths live under it
    port, resources = _free_port(), json.dumps({CPU_SLOT: 1, NODE: 1})
    common = ["--num-cpus=1", "--num-gpus=0", f"--resources={resources}", "--object-store-memory=200000000", "--disable-usage-stats"]
    nodes = [root / "node-head", root / "node-second"]
    try:
        head_start = [ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={root / 'ray'}", *common]
        head = subprocess.run(head_start, env={**RAY_ENV, WORK_ROOT_VARIABLE: str(nodes[0])}, check=True, capture_output=True, text=True, timeout=180)
        address = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr).group(1)
        subprocess.run([ray_cli, "start", f"--address={address}", *common],
                       env={**RAY_ENV, WORK_ROOT_VARIABLE: str(nodes[1])}, check=True, capture_output=True, timeout=180)  # fmt: skip
        yield address, nodes, lambda name: subprocess.run([ray_cli, "start", f"--address={address}", *common], check=True, capture_output=True,
                                                          env={**RAY_ENV, WORK_ROOT_VARIABLE: str(root / name)}, timeout=180)  # fmt: skip
    finally:
        _stop_nodes(root)
        shutil.rmtree(root, ignore_errors=True)


def _stop_nodes(root: Path) -> None:
    """Kill this fixture's Ray processes only: those whose work folder or open files lie under ``root`` (a Ray
    agent's retitled process may hide its environment, not its log files); ``ray stop --force`` would also
    kill a user's own cluster or a sweep running beside the tests."""
    import psutil

    ours = [process for process in psutil.process_iter() if _under(process, str(root))]
    for process in ours:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(ours, timeout=30)


def _under(process, root: str) -> bool:
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        if process.environ().get(WORK_ROOT_VARIABLE, "").startswith(root):
            return True
        fds = Path(f"/proc/{process.pid}/fd")
        return any(os.readlink(fd).startswith(root) for fd in fds.iterdir())
    return False


def _driver(models: Path, name: str, out: Path, address: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "framework.cli", "run", name, "--models-dir", str(models), "--output", str(out), *RUN,
               "--executor", "ray", "--address", address, *extra]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_driver(models: Path, name: str, out: Path, address: str, *extra: str) -> tuple[int, str]:
    driver = _driver(models, name, out, address, *extra)
    output, _ = driver.communicate(timeout=300)
    return driver.returncode, output


def _run_ids(out: Path, name: str) -> dict:
    return {key: record["run_id"] for key, record in records(out, name).items()}


@pytest.mark.slow
def test_a_ray_sweep_gives_the_results_the_local_executor_gives(cluster, tmp_path):
    address, nodes, _ = cluster
    models = make_model(tmp_path / "models", "same_set")
    assert main(["run", "same_set", "--models-dir", str(models), "--output", str(tmp_path / "local"), "--quiet", *RUN]) == 0
    code, output = _run_driver(models, "same_set", tmp_path / "ray", address)
    assert code == 0, output
    local, remote = records(tmp_path / "local", "same_set"), records(tmp_path / "ray", "same_set")
    assert len(remote) == EXPERIMENTS and set(remote) == set(local)
    assert {k: (r["status"], r["validity"]) for k, r in remote.items()} == {k: (r["status"], r["validity"]) for k, r in local.items()}
    assert all(r["latency"]["n"] >= 3 and r["agreement"]["worst"]["max_abs_error"] < 1e-4 for r in remote.values())
    assert len({r["machine"]["node"]["node_id"] for r in remote.values()}) == 2  # both nodes measured
    assert {r["machine"]["node"]["niceness"] for r in remote.values()} == {0}  # not Ray's 15
    assert not any("niceness" in " ".join(r["warnings"]) for r in remote.values())
    for node in nodes:  # each node got the files through Ray, into its own folder, and left no scratch behind
        assert any((node / "files").rglob("config.yaml")) and not any((node / "runs").iterdir())
    folder = tmp_path / "ray" / "same_set" / "16x16x3" / "pytorch-cpu__fp32__bs2"
    assert {"summary.json", "latencies.csv", "job.json", "child.log"} <= {p.name for p in folder.iterdir()}
    assert "running" in output and "queued" in output and "ETA" in output
    code, output = _run_driver(models, "same_set", tmp_path / "ray", address)  # resume: nothing measured again
    assert code == 0 and output.count("kept from an earlier run") == EXPERIMENTS
    assert {k: r["run_id"] for k, r in records(tmp_path / "ray", "same_set").items()} == {k: r["run_id"] for k, r in remote.items()}


@pytest.mark.slow
def test_a_worker_killed_mid_experiment_is_retried_and_nothing_is_lost(cluster, tmp_path):
    address, _, _ = cluster
    marker = tmp_path / "first-attempt.pid"
    hang_once = (f"if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment' and not os.path.exists({str(marker)!r}):\n"
                 f"                    open({str(marker)!r}, 'w').write(f'{{os.getpid()}} {{image.shape[0]}}'); time.sleep(60)\n"
                 "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))")  # fmt: skip
    models = make_model(tmp_path / "models", "killed", forward=hang_once, extra="import time")
    driver = _driver(models, "killed", tmp_path / "out", address, "--timeout", "120")
    deadline = time.monotonic() + 120
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), driver.communicate()[0]
    import psutil

    pid, batch = map(int, marker.read_text().split())
    child = psutil.Process(pid)  # the experiment's process <- fork server <- Ray worker
    worker = child.parent().parent()
    assert "ray::" in " ".join(worker.cmdline()) or "default_worker" in " ".join(worker.cmdline()), worker.cmdline()
    worker.send_signal(signal.SIGKILL)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    found = records(tmp_path / "out", "killed")
    assert len(found) == EXPERIMENTS and all(r["status"] == "ok" for r in found.values()), output
    assert found[("pytorch-cpu", "fp32", batch)]["machine"]["node"]["worker_pid"] != worker.pid  # measured by the retry


@pytest.mark.slow
@pytest.mark.parametrize("repeats", [1, 2])  # with --repeats, an experiment whose processes all ended is saved at once, not with the shape's last
def test_an_interrupted_driver_reruns_and_measures_nothing_twice(cluster, tmp_path, repeats):
    address, _, _ = cluster
    models = make_model(tmp_path / "models", "interrupted", forward=SLOW_IN_EXPERIMENTS.format(seconds=0.3), extra="import time")
    out = tmp_path / "out"
    driver = _driver(models, "interrupted", out, address, "--repeats", str(repeats))
    deadline = time.monotonic() + 180
    while not records(out, "interrupted") and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    before = _run_ids(out, "interrupted")
    assert driver.returncode == 130 and "finished experiments are kept" in output, output
    assert 1 <= len(before) < EXPERIMENTS, output
    code, output = _run_driver(models, "interrupted", out, address, "--repeats", str(repeats))
    after = _run_ids(out, "interrupted")
    assert code == 0 and len(after) == EXPERIMENTS, output
    assert {k: after[k] for k in before} == before and output.count("kept from an earlier run") == len(before)
    code, output = _run_driver(models, "interrupted", out, address, "--repeats", str(repeats))
    assert code == 0 and _run_ids(out, "interrupted") == after and output.count("kept from an earlier run") == EXPERIMENTS


@pytest.mark.slow
def test_repeats_on_ray_are_separate_processes_merged_as_locally(cluster, tmp_path):
    address, _, _ = cluster
    models = make_model(tmp_path / "models", "repeated")
    code, output = _run_driver(models, "repeated", tmp_path / "out", address, "--engines", "onnxruntime-cpu", "--batch-sizes", "1", "--repeats", "3")
    assert code == 0, output
    (record,) = records(tmp_path / "out", "repeated").values()
    assert record["repeats"] == 3 and len(record["process_medians_ms"]) == 3 and record["status"] == "ok"
    folder = tmp_path / "out" / "repeated" / "16x16x3" / "onnxruntime-cpu__fp32__bs1"
    assert sorted(p.name for p in (folder / "repeats").iterdir()) == ["0", "1", "2"] and "process 3/3" in output


@pytest.mark.slow
def test_a_node_lost_mid_experiment_hands_its_experiment_to_the_others(cluster, tmp_path):
    address, _, add_node = cluster
    add_node("node-lost")  # a third node, killed below (last of the cluster's tests that need it)
    marker = tmp_path / "on-the-lost-node.pid"
    # On the third node, the first experiment writes the marker and hangs until the node is killed; on the others,
    # experiments wait for the marker, so their slots stay busy and an experiment surely reaches the third node
    # (however slowly its worker starts on a loaded machine).
    hang_there = (f"lost = os.environ.get({WORK_ROOT_VARIABLE!r}, '').endswith('node-lost')\n"
                  f"                if os.environ.get('DEPLOYBENCH_ROLE') == 'experiment' and lost and not os.path.exists({str(marker)!r}):\n"
                  f"                    open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)\n"
                  f"                deadline = time.monotonic() + 60\n"
                  f"                while os.environ.get('DEPLOYBENCH_ROLE') == 'experiment' and not lost and not os.path.exists({str(marker)!r}) "
                  f"and time.monotonic() < deadline:\n"
                  f"                    time.sleep(0.1)\n"
                  "                return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))")  # fmt: skip
    models = make_model(tmp_path / "models", "node_lost", forward=hang_there, extra="import time")
    driver = _driver(models, "node_lost", tmp_path / "out", address, "--engines", "pytorch-cpu", "--timeout", "240")
    deadline = time.monotonic() + 120
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), driver.communicate()[0]
    import psutil

    raylet = next(p for p in psutil.Process(int(marker.read_text())).parents() if p.name() == "raylet")
    raylet.send_signal(signal.SIGKILL)  # the whole node goes: its raylet, and with it its workers
    output, _ = driver.communicate(timeout=300)
    found = records(tmp_path / "out", "node_lost")
    assert driver.returncode == 0 and len(found) == 3 and all(r["status"] == "ok" for r in found.values()), output
    assert not any(r["machine"]["node"]["work_root"].endswith("node-lost") for r in found.values())  # measured again elsewhere


PROBE = """
import sys
import framework.engines as engines
from framework.sweep.cluster import ClusterSettings
from framework.sweep.ray_executor import prepare_cluster
here = engines._availability_here
engines._availability_here = lambda name: "not on the driver" if name == "onnxruntime-cpu" else here(name)  # as a driver without it
found = prepare_cluster(ClusterSettings(address=sys.argv[1]), ["onnxruntime-cpu", "pytorch-cpu", "tensorrt"])
print(found, engines.engine_availability("onnxruntime-cpu"), engines.engine_availability("tensorrt") is not None)
"""


@pytest.mark.slow
def test_an_engine_the_driver_cannot_run_is_asked_of_the_cluster(cluster):
    address, _, _ = cluster
    probe = subprocess.run([sys.executable, "-c", PROBE, address], check=False, cwd=REPO, env=RAY_ENV, capture_output=True, text=True, timeout=180)
    assert probe.stdout.strip().splitlines()[-1] == "['onnxruntime-cpu'] None True", probe.stdout + probe.stderr


@pytest.mark.slow
def test_no_address_starts_a_local_instance_even_where_ray_address_names_a_cluster(cluster, tmp_path):
    address, nodes, _ = cluster
    models = make_model(tmp_path / "models", "own_instance")
    command = [sys.executable, "-m", "framework.cli", "run", "own_instance", "--models-dir", str(models), "--output", str(tmp_path / "out"), *RUN,
               "--engines", "onnxruntime-cpu", "--batch-sizes", "1", "--executor", "ray"]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, env={**RAY_ENV, "RAY_ADDRESS": address}, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = records(tmp_path / "out", "own_instance").values()
    assert record["status"] == "ok" and record["machine"]["node"]["work_root"] not in {str(node) for node in nodes}


@pytest.mark.slow
def test_a_cpu_experiment_measured_on_ray_with_a_gpu_kind_is_kept_by_a_local_rerun(cluster, tmp_path):
    address, _, _ = cluster
    models, out = make_model(tmp_path / "models", "kept_cpu"), tmp_path / "out"
    code, output = _run_driver(models, "kept_cpu", out, address, "--engines", "onnxruntime-cpu", "--batch-sizes", "1", "--devices", "L4")
    assert code == 0, output
    before = _run_ids(out, "kept_cpu")
    argv = ["run", "kept_cpu", "--models-dir", str(models), "--output", str(out), *RUN, "--engines", "onnxruntime-cpu", "--batch-sizes", "1"]
    assert main([*argv, "--quiet"]) == 0 and _run_ids(out, "kept_cpu") == before  # --devices: no part of a CPU experiment's fingerprint


def test_the_local_executor_never_imports_ray(tmp_path):
    models = make_model(tmp_path / "models", "local_only")
    argv = ["run", "local_only", "--models-dir", str(models), "--output", str(tmp_path / "out"), *RUN, "--engines", "onnxruntime-cpu", "--quiet"]
    code = f"import sys; from framework.cli import main; code = main({argv!r}); print(code, 'ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()[-2:] == ["0", "False"]


def test_the_slot_rule_gives_gpus_whole_and_cpu_experiments_a_slot_of_their_own():
    plain, exclusive = ClusterSettings(), ClusterSettings(exclusive_node=True, devices=("H100",))
    assert plain.task_options("cuda") == {"num_cpus": 0, "num_gpus": 1}
    assert plain.task_options("cpu") == {"num_cpus": 0, "num_gpus": 0, "resources": {CPU_SLOT: 1}}
    assert exclusive.task_options("cpu")["resources"] == {CPU_SLOT: 1, NODE: 1}
    gpu = exclusive.task_options("cuda")
    assert gpu["accelerator_type"] == "H100" and 0 < gpu["resources"][NODE] < 1  # no CPU experiment fits beside it
    missing = exclusive.missing_resources({"cpu", "cuda"}, {"GPU": 2.0, "accelerator_type:L4": 1.0})
    assert any(CPU_SLOT in m and "ray start" in m for m in missing) and any("--devices H100" in m and "L4" in m for m in missing)
    assert ClusterSettings().missing_resources({"cpu"}, {CPU_SLOT: 2.0}) == []
    assert exclusive.fingerprint_fields("cuda") == {"devices": ["H100"]} and exclusive.fingerprint_fields("cpu") == {}


def test_a_gpu_experiment_on_a_node_of_several_gpus_gets_its_share_of_the_cores(monkeypatch):
    from framework.machine_check import default_threads
    from framework.sweep import ray_worker

    cores = default_threads()
    monkeypatch.setattr(ray_worker, "_gpus", lambda: ({"index": 0}, {"index": 1}))  # the node's GPUs, as NVML lists them
    assert ray_worker.node_threads("cuda") == max(1, cores // 2) and ray_worker.node_threads("cpu") == cores
    monkeypatch.setattr(ray_worker, "_gpus", lambda: ())
    assert ray_worker.node_threads("cuda") == cores


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--executor", "ray", "--in-process"], "--executor ray does not support --in-process"),
     (["--executor", "ray", "--tune"], "--executor ray does not support --tune"),
     (["--executor", "ray", "--devices", "H100,H100"], "a GPU kind is named twice"),
     (["--address", "auto"], "--address: only with --executor ray"),
     (["--executor", "ray", "--shape-mix"], "do not run on --executor ray yet"),
     (["--executor", "ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: nothing answers at 127.0.0.1:1"),  # not Ray's 12 minutes of retries
     (["--executor", "ray", "--address", "not a host"], "--address not a host: give 'auto', a ray:// URL or HOST:PORT"),
     (["--executor", "ray", "--address", "head:99999"], "--address head:99999: give 'auto'")],
)  # fmt: skip
def test_what_the_ray_executor_cannot_do_is_refused_before_anything_runs(flags, message, tmp_path, capsys):
    pytest.importorskip("ray", reason="needs the ray package (pip install 'deploybench[ray]')")
    models = make_model(tmp_path / "models", "refused")
    assert main(["run", "refused", "--models-dir", str(models), "--output", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out" / "refused").exists()
    with pytest.raises(DeployBenchError, match="ray://"):
        ClusterSettings(address=" ").validate()
