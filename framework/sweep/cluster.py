"""``--executor ray``'s settings and its slot rule, with no Ray import: the local path never needs Ray.

Two experiments never share what they measure. Each Ray task asks for:

- a GPU experiment: one whole GPU (``num_gpus=1``; Ray sets ``CUDA_VISIBLE_DEVICES`` to it), of the kind
  it was planned for (Ray's ``accelerator_type:<KIND>`` resource) when ``--devices`` names kinds: one
  experiment per kind, each in a folder of its own;
- a CPU experiment: one ``deploybench_cpu_slot`` of its node. A node offers one slot by default (a local Ray
  instance started by deploybench does; on a cluster, start each node with
  ``ray start ... --resources '{"deploybench_cpu_slot": 1, "deploybench_node": 1}'``); a node given N slots
  (one per NUMA node or per ``--threads`` group of cores) runs N CPU experiments side by side;
- with ``--exclusive-node``, a CPU experiment also takes the whole ``deploybench_node`` resource, and a GPU
  experiment a sliver of it: a CPU experiment then never runs on a node where a GPU experiment's host thread
  runs, nor a GPU experiment beside a CPU one.

Tasks ask for no Ray CPUs (``num_cpus=0``): the slots above are what keeps measurements apart.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from framework.errors import DeployBenchError

EXECUTORS = ("local", "ray")
CPU_SLOT = "deploybench_cpu_slot"
NODE = "deploybench_node"
GPU_SHARE_OF_NODE = 0.001  # what a GPU experiment takes of its node's NODE resource with --exclusive-node
CONNECT_TIMEOUT_S = 5.0  # an --address where nothing answers is refused at once (Ray itself retries for about 12 minutes)
ADDRESS_FORMS = "give 'auto', a ray:// URL or HOST:PORT (or leave it out to start a local Ray instance)"
START_NODE_HINT = f"""start each node with `ray start ... --resources '{{"{CPU_SLOT}": 1, "{NODE}": 1}}'`"""


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how ``--executor ray`` runs the experiments."""

    address: str | None = None  # "auto", "ray://host:10001", "host:port"; None: start a local Ray instance
    exclusive_node: bool = False  # a CPU experiment takes its whole node (no GPU experiment's host thread beside it)
    devices: tuple[str, ...] = ()  # GPU kinds (Ray accelerator types, e.g. H100) GPU experiments may run on

    def validate(self) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise DeployBenchError("--executor ray needs the ray package: pip install 'deploybench[ray]'")
        if self.address is not None and not self.address.strip():
            raise DeployBenchError(f"--address: {ADDRESS_FORMS}")
        self.check_reachable()
        if len({d.upper() for d in self.devices}) != len(self.devices):  # Ray's accelerator types are case-sensitive: h100 is not H100
            raise DeployBenchError(f"--devices {','.join(self.devices)}: a GPU kind is named twice")
        bad = [d for d in self.devices if not d.replace("-", "").replace("_", "").isalnum()]
        if bad:
            raise DeployBenchError(f"--devices {','.join(self.devices)}: a GPU kind is a Ray accelerator type such as H100 or L4, got {bad}")

    def host_port(self) -> tuple[str, int] | None:
        """``--address``'s host and port (None: auto, a ray:// URL without a port, or no address)."""
        if self.address is None or self.address.strip() == "auto":
            return None
        client = self.address.strip().startswith("ray://")
        host, colon, port = self.address.strip().removeprefix("ray://").rpartition(":")
        if client and not colon:
            return None
        host = host.removeprefix("[").removesuffix("]")  # [::1]:6379
        if not host or any(c in host for c in "/ @") or not port.isdigit() or not 0 < int(port) < 65536:
            raise DeployBenchError(f"--address {self.address}: {ADDRESS_FORMS}")
        return host, int(port)

    def check_reachable(self) -> None:
        """Refuse an ``--address`` where nothing accepts a connection, in seconds rather than Ray's minutes of retries."""
        target = self.host_port()
        if target is None:
            return
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            start = f"--ray-client-server-port={target[1]}" if self.address.strip().startswith("ray://") else f"--port={target[1]}"
            raise DeployBenchError(f"--address {self.address}: nothing answers at {target[0]}:{target[1]} ({exc.strerror or exc}): "
                                   f"start the cluster there (`ray start --head {start}`) or give the address "
                                   f"`ray start --head` printed") from None  # fmt: skip

    def fingerprint_fields(self, device: str, kind: str | None = None) -> dict:
        """What changes the figures of an experiment on ``device`` (cpu or cuda): a GPU experiment's GPU kind
        (``kind``, the one of ``--devices`` it was planned for; a CPU experiment's figures do not depend on it;
        the executor does not matter either, so a sweep resumed with the other executor keeps what the first
        measured)."""
        return {"devices": [kind or self.devices[0]]} if self.devices and device == "cuda" else {}

    def task_options(self, device: str, kind: str | None = None) -> dict:
        """The Ray task options that give an experiment on ``device`` (cpu or cuda) its exclusive slot, on a
        GPU of ``kind`` (or of the one kind ``--devices`` names; any GPU when it names several and no kind is
        given: probes and warm-ups)."""
        if device == "cuda":
            options: dict = {"num_cpus": 0, "num_gpus": 1}
            kind = kind or (self.devices[0] if len(self.devices) == 1 else None)
            if kind:
                options["accelerator_type"] = kind
            if self.exclusive_node:
                options["resources"] = {NODE: GPU_SHARE_OF_NODE}
            return options
        return {"num_cpus": 0, "num_gpus": 0, "resources": {CPU_SLOT: 1, **({NODE: 1} if self.exclusive_node else {})}}

    def missing_resources(self, devices: set[str], available: dict) -> list[str]:
        """Why the cluster (``ray.cluster_resources()``) can never run experiments on ``devices``; empty if it can."""
        missing = []
        if "cpu" in devices and available.get(CPU_SLOT, 0) < 1:
            missing.append(f"CPU experiments need the custom resource {CPU_SLOT!r} on some node: {START_NODE_HINT}")
        if "cuda" in devices and available.get("GPU", 0) < 1:
            missing.append("GPU experiments need a node with a GPU, and the cluster has none")
        for kind in self.devices if "cuda" in devices else ():
            if available.get(f"accelerator_type:{kind}", 0) <= 0:
                kinds = sorted(k.split(":", 1)[1] for k in available if k.startswith("accelerator_type:"))
                missing.append(f"--devices {kind}: no node of that GPU kind (the cluster has {', '.join(kinds) or 'none'})")
        if self.exclusive_node and available.get(NODE, 0) < 1:
            missing.append(f"--exclusive-node needs the custom resource {NODE!r} on every node: {START_NODE_HINT}")
        return missing

    def slots(self, available: dict) -> dict[str, int]:
        """How many experiments of each device can run at once (what the progress line calls running)."""
        return {"cuda": int(available.get("GPU", 0)), "cpu": int(available.get(CPU_SLOT, 0))}
