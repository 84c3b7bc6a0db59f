"""nerfstudio 1.1.5 fixes: checkpoints load with weights_only=True; LPIPS never downloads; resume
folders are checked."""

import math
import os
import shutil
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nerf_loe.compat import install, nerfacc_kernels
from nerf_loe.compat import lpips as lpips_module
from nerf_loe.errors import ConfigError
from nerf_loe.rendering import backend as backend_module
from nerf_loe.training.schedulers import FloatExponentialDecaySchedulerConfig


def test_our_scheduler_state_loads_with_weights_only(tmp_path):
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=1e-2)
    scheduler = FloatExponentialDecaySchedulerConfig(lr_final=1e-4, warmup_steps=2, max_steps=10).setup()
    sched = scheduler.get_scheduler(optimizer, lr_init=1e-2)
    for _ in range(5):
        optimizer.step()
        sched.step()
    lr = optimizer.param_groups[0]["lr"]
    assert type(lr) is float
    expected = math.exp(math.log(1e-2) * (1 - 3 / 8) + math.log(1e-4) * 3 / 8)
    assert lr == pytest.approx(expected)
    path = tmp_path / "ckpt.pt"
    torch.save({"optimizers": optimizer.state_dict(), "schedulers": sched.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)  # no allow-list needed
    assert loaded["optimizers"]["param_groups"][0]["lr"] == pytest.approx(expected)


def test_numpy_learning_rates_of_builtin_methods_load_after_install(tmp_path):
    path = tmp_path / "nerfacto_like.ckpt"
    torch.save({"optimizers": {"fields": {"param_groups": [{"lr": np.float64(0.01)}]}}}, path)
    install()
    loaded = torch.load(path, weights_only=True)
    assert loaded["optimizers"]["fields"]["param_groups"][0]["lr"] == 0.01


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_learning_rates_load_whichever_numpy_wrote_them(tmp_path, numpy_module):
    # numpy < 2 pickles a float64 through numpy.core.multiarray.scalar, numpy 2 through
    # numpy._core.multiarray.scalar: the checkpoint is rewritten to name the one under test
    import zipfile

    source = tmp_path / "written.ckpt"
    torch.save({"lr": np.float64(0.01)}, source)
    path = tmp_path / "renamed.ckpt"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray\nscalar" in data
                data = data.replace(b"numpy.core.multiarray", numpy_module.encode())
            zout.writestr(item, data)
    torch.serialization.clear_safe_globals()
    with pytest.raises(Exception, match="scalar"):
        torch.load(path, weights_only=True)
    install()
    assert torch.load(path, weights_only=True)["lr"] == 0.01


def test_lpips_offline_warns_once_and_returns_nan(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    monkeypatch.setattr(lpips_module, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = lpips_module.OfflineLPIPS()
        lpips_module.OfflineLPIPS()
    messages = [str(w.message) for w in caught if "LPIPS unavailable" in str(w.message)]
    assert len(messages) == 1 and str(tmp_path) in messages[0]
    assert math.isnan(first(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).item())


def test_nerfstudio_builtin_model_builds_offline(monkeypatch, tmp_path):
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no cached backbone
    install()
    box = SceneBox(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = NerfactoModelConfig(implementation="torch").setup(scene_box=box, num_train_data=2)
    assert isinstance(model.lpips, lpips_module.OfflineLPIPS) and model.lpips.metric is None


# --- nerfacc's CUDA kernels: the CUDA 13 build fix and the fallback when they cannot be built -----

CUB_EQUALITY_USE = """#include <cub/cub.cuh>
__host__ __device__ bool same(int a, int b) { return cub::Equality()(a, b); }
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA toolkit) to compile")
def test_cub_equality_shim_lets_nerfaccs_use_of_cub_equality_compile(tmp_path):
    """nerfacc 0.5.2's scan.cu calls cub::Equality(); with the shim force-included it compiles on any
    CUB (CUDA 13's CCCL 3 removed the functor; older CUBs keep theirs and the shim adds nothing)."""
    source = tmp_path / "use.cu"
    source.write_text(CUB_EQUALITY_USE)
    env = {**os.environ, "NVCC_PREPEND_FLAGS": f'-include "{nerfacc_kernels.CUB_EQUALITY_SHIM}"'}
    cmd = ["nvcc", "-c", str(source), "-o", str(tmp_path / "use.o")]
    built = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


class _FakeBackend:
    """Stands in for ``nerfacc.cuda._backend``: records the nvcc flags in force when ``_C`` is read."""

    def __init__(self, kernels):
        self.kernels, self.flags_seen = kernels, None

    @property
    def _C(self):
        self.flags_seen = os.environ.get("NVCC_PREPEND_FLAGS")
        return self.kernels


def test_nerfacc_build_sees_the_shim_and_the_environment_is_restored(monkeypatch):
    monkeypatch.setenv("NVCC_PREPEND_FLAGS", "-O2")
    for kernels, expected in ((object(), None), (None, "no CUDA toolkit (nvcc) to build them")):
        fake = _FakeBackend(kernels)
        monkeypatch.setitem(sys.modules, "nerfacc.cuda._backend", fake)
        assert nerfacc_kernels.nerfacc_kernels_unavailable.__wrapped__() == expected
        assert fake.flags_seen == f'-O2 -include "{nerfacc_kernels.CUB_EQUALITY_SHIM}"'
        assert os.environ["NVCC_PREPEND_FLAGS"] == "-O2"
    monkeypatch.setitem(sys.modules, "nerfacc.cuda._backend", None)  # the import itself fails
    assert nerfacc_kernels.nerfacc_kernels_unavailable.__wrapped__().startswith("ModuleNotFoundError")
    assert os.environ["NVCC_PREPEND_FLAGS"] == "-O2"
    build_log = "Error building 'nerfacc_cuda': [1/2] nvcc -c scan.cu\nscan.cu(28): error: no Equality\nninja"
    assert nerfacc_kernels._short(RuntimeError(build_log)) == "RuntimeError: scan.cu(28): error: no Equality"


def test_auto_backend_uses_torch_on_cuda_when_nerfaccs_kernels_are_unavailable(monkeypatch):
    cuda_like = SimpleNamespace(is_cuda=True)  # resolve_backend only asks where the tensors live
    monkeypatch.setattr(backend_module, "nerfacc_kernels_unavailable", lambda: None)
    assert backend_module.resolve_backend("auto", cuda_like) == "nerfacc"
    monkeypatch.setattr(backend_module, "nerfacc_kernels_unavailable", lambda: "RuntimeError: no cub")
    with pytest.warns(UserWarning, match="no cub.*PyTorch"):
        assert backend_module.resolve_backend("auto", cuda_like) == "torch"
    with pytest.raises(ConfigError, match="nerfacc.*unavailable.*no cub"):
        backend_module.resolve_backend("nerfacc", cuda_like)
    assert backend_module.resolve_backend("torch", cuda_like) == "torch"
    assert backend_module.resolve_backend("auto", torch.zeros(1)) == "torch"


_FREED_STAYS = """
import os, sys
import numpy as np
from nerf_loe.compat.allocator import tune_cpu_allocator

def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

tuned = tune_cpu_allocator()
a = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
before_free = resident_mib()
del a
print(tuned, before_free - resident_mib())
"""


@pytest.mark.parametrize(
    ("env", "tuned"),
    [({}, True), ({"NERF_LOE_MALLOC": "default"}, False), ({"MALLOC_TRIM_THRESHOLD_": "131072"}, False)],
)
def test_cpu_allocator_keeps_freed_blocks_unless_the_user_chose(env, tuned):
    """glibc alone unmaps a freed 64 MiB block (resident memory drops by it); tuned, the block stays
    in the heap for the next step's tensors. A user's own malloc settings or the opt-out win."""
    if sys.platform != "linux" or not os.path.exists("/proc/self/statm"):
        pytest.skip("glibc's malloc on Linux only")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "NERF_LOE_MALLOC"))}
    result = subprocess.run(
        [sys.executable, "-c", _FREED_STAYS], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    reported, released = result.stdout.split()
    assert reported == str(tuned)
    if tuned:
        assert float(released) < 8  # MiB handed back: none of the block
    else:
        assert float(released) > 56  # the block went back to the kernel


def test_resume_folder_without_checkpoints_says_what_to_pass(tmp_path):
    # nerfstudio parsed a step out of every file name: IndexError on an empty folder, ValueError on a
    # run's folder (config.yml), both after the pipeline was built
    from nerfstudio.engine.trainer import Trainer

    from nerf_loe.compat.resume import checkpoint_step

    install()
    assert Trainer._load_checkpoint.__nerf_loe_patched__
    run = tmp_path / "run"
    models = run / "nerfstudio_models"
    models.mkdir(parents=True)
    (run / "config.yml").write_text("")
    for step in (99, 1999, 299):
        (models / f"step-{step:09d}.ckpt").write_bytes(b"")
    (models / ".DS_Store").write_bytes(b"")  # a stray file: nerfstudio's parse failed on it too
    assert checkpoint_step(models, None) == 1999  # the latest by number, not by name
    assert checkpoint_step(models, 299) == 299
    with pytest.raises(
        ConfigError, match=r"--load-step 5: .*nerfstudio_models holds the steps 99, 299, 1999"
    ):
        checkpoint_step(models, 5)
    with pytest.raises(
        ConfigError, match=rf"--load-dir {run} holds no step-\*.ckpt checkpoint: pass --load-dir {models}"
    ):
        checkpoint_step(run, None)
    with pytest.raises(
        ConfigError, match=r"holds no step-\*.ckpt checkpoint: give a run's nerfstudio_models folder"
    ):
        checkpoint_step(tmp_path, None)
    with pytest.raises(ConfigError, match=r"nope does not exist: give a run's nerfstudio_models folder"):
        checkpoint_step(tmp_path / "nope", None)
