"""nerfstudio 1.1.5 fixes: checkpoints load with weights_only=True; LPIPS never downloads."""

import math
import warnings

import numpy as np
import pytest
import torch

from nerf_loe.compat import install
from nerf_loe.compat import lpips as lpips_module
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
