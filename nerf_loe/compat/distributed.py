"""Multi-device training on the CPU (gloo), which nerfstudio 1.1.5 launches but cannot run.

``ns-train --machine.num-devices N --machine.device-type cpu`` spawns N processes and picks gloo,
then (1) its worker asserts that CUDA is present and has N devices, and (2) its pipeline wraps the
model in ``DistributedDataParallel(device_ids=[local_rank])``, which torch refuses for a CPU
module. :func:`patch_nerfstudio_distributed` replaces the worker with one that sets up the same
process groups without the CUDA checks on the CPU (CUDA runs go to nerfstudio's own worker), and
gives the pipeline a DDP that drops device ids for CPU modules. Nothing changes for one process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def cpu_capable_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_devices_per_machine: int,
    machine_rank: int,
    dist_url: str,
    config: Any,
    timeout: timedelta = timedelta(minutes=30),
    device_type: str = "cuda",
) -> Any:
    """nerfstudio's ``_distributed_worker`` (same arguments), without its CUDA checks on the CPU."""
    import nerfstudio.scripts.train as train
    from nerfstudio.utils import comms

    if device_type == "cuda":
        original = _ORIGINAL_WORKER if _ORIGINAL_WORKER is not None else train._distributed_worker
        if original is cpu_capable_worker:
            raise RuntimeError("nerfstudio's distributed worker was lost while patching it")
        machine = (num_devices_per_machine, machine_rank, dist_url)
        return original(local_rank, main_func, world_size, *machine, config, timeout, device_type)
    patch_nerfstudio_distributed()  # a spawned process imported nerfstudio afresh
    global_rank = machine_rank * num_devices_per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    for machine in range(world_size // num_devices_per_machine):  # each machine's local group
        ranks = list(range(machine * num_devices_per_machine, (machine + 1) * num_devices_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    # every rank's trainer writes dataparser_transforms.json, creating the run folder when it does not
    # exist yet (mkdir without exist_ok): two ranks at once raise FileExistsError in one of them
    config.get_base_dir().mkdir(parents=True, exist_ok=True)
    output = main_func(local_rank, world_size, config, global_rank)
    comms.synchronize()
    dist.destroy_process_group()
    return output


class DeviceAwareDDP(DistributedDataParallel):
    """``DistributedDataParallel`` that passes ``device_ids`` only for a CUDA module (a class, as
    nerfstudio's pipeline also tests ``isinstance(model, DDP)``)."""

    def __init__(self, module: nn.Module, device_ids: list[int] | None = None, **kwargs: Any) -> None:
        on_cuda = any(p.is_cuda for p in module.parameters())
        super().__init__(module, device_ids=device_ids if on_cuda else None, **kwargs)


_ORIGINAL_WORKER: Callable | None = None


def patch_nerfstudio_distributed() -> None:
    """Install :class:`DeviceAwareDDP`, and :func:`cpu_capable_worker` once nerfstudio's training
    module has finished loading (this plugin is loaded while ``ns-train`` imports that module, which
    defines its worker afterwards; the final config's construction calls this again). Idempotent."""
    global _ORIGINAL_WORKER
    import sys

    import nerfstudio.pipelines.base_pipeline as base_pipeline

    base_pipeline.DDP = DeviceAwareDDP
    train = sys.modules.get("nerfstudio.scripts.train")
    worker = getattr(train, "_distributed_worker", None)
    if worker is None or worker is cpu_capable_worker:
        return
    _ORIGINAL_WORKER = worker
    train._distributed_worker = cpu_capable_worker
