"""The methods' optimiser: fused Adam with the reference update, and a learning-rate schedule that
follows the rate a user sets on the command line."""

import copy
import math

import pytest
import torch
from nerfstudio.engine.optimizers import Optimizers

from nerf_loe.errors import ConfigError
from nerf_loe.method_configs.asmr import asmr_nerf
from nerf_loe.method_configs.common import MAX_STEPS
from nerf_loe.method_configs.loe import loe_nerf, mlp_nerf
from nerf_loe.training.schedulers import FloatExponentialDecaySchedulerConfig


@pytest.mark.parametrize(("spec", "warmup"), [(loe_nerf, 0), (asmr_nerf, 100)], ids=["loe-nerf", "asmr-nerf"])
def test_a_rate_set_on_the_command_line_decays_to_a_twentieth_of_itself(spec, warmup):
    """loe-nerf starts at the full rate; asmr-nerf ramps it up linearly over 100 steps."""
    config = copy.deepcopy(spec.config)  # the registered spec stays as shipped
    config.optimizers["fields"]["optimizer"].lr = 1e-3  # as --optimizers.fields.optimizer.lr 1e-3 does
    param = torch.nn.Parameter(torch.zeros(2))
    optimizers = Optimizers(config.optimizers, {"fields": [param]})  # nerfstudio's own set-up
    factor = optimizers.schedulers["fields"].lr_lambdas[0]
    assert factor(MAX_STEPS) * 1e-3 == pytest.approx(5e-5)  # 1e-3 / 20, not the shipped rate's end
    halfway = warmup + (MAX_STEPS - warmup) // 2
    assert factor(halfway) == pytest.approx(1 / math.sqrt(20), rel=1e-3)  # log-linear: geometric mean
    if warmup:
        assert factor(warmup // 2) == pytest.approx(0.5, rel=1e-3)  # linear warm-up
    else:
        assert factor(0) == pytest.approx(1.0)


def test_a_ratio_overrides_a_fixed_end_rate_and_must_be_positive():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=2e-2)
    cfg = FloatExponentialDecaySchedulerConfig(lr_final=1.0, lr_final_ratio=0.5, max_steps=10)
    assert cfg.setup().get_scheduler(optimizer, lr_init=2e-2).lr_lambdas[0](10) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="lr_final_ratio"):
        FloatExponentialDecaySchedulerConfig(lr_final_ratio=0.0).setup().get_scheduler(
            optimizer, lr_init=2e-2
        )


@pytest.mark.parametrize("spec", [loe_nerf, mlp_nerf, asmr_nerf], ids=lambda s: s.config.method_name)
def test_the_methods_step_with_fused_adam_and_its_update_is_torchs_reference_adam(spec):
    torch.manual_seed(0)
    shapes = [(64, 128, 128), (128, 63), (128,)]  # a bank tensor, a matrix, a bias
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    optimizers = Optimizers(copy.deepcopy(spec.config.optimizers), {"fields": ours})
    fused = optimizers.optimizers["fields"]
    assert fused.defaults["fused"] is True
    lr = spec.config.optimizers["fields"]["optimizer"].lr
    fused.param_groups[0]["lr"] = lr  # the schedule starts at its warm-up rate; compare at the full one
    # torch's single-tensor loop: the implementation the fused kernel must reproduce
    loop = torch.optim.Adam(reference, lr=lr, eps=1e-15, foreach=False, fused=False)
    for _ in range(5):
        for a, b in zip(ours, reference, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        fused.step()
        loop.step()
    for a, b in zip(ours, reference, strict=True):
        assert (a - b).abs().max().item() < 1e-6
        assert (a - b).abs().max().item() < 1e-3 * (b.detach() - b.detach().mean()).abs().mean().item()


def test_a_resumed_run_keeps_the_configured_implementation():
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.ones(3)
    saved = torch.optim.Adam([param], lr=1e-3)  # a checkpoint of torch's default implementation
    saved.step()
    config = copy.deepcopy(loe_nerf.config.optimizers["fields"]["optimizer"])
    resumed = config.setup([param])
    resumed.load_state_dict(saved.state_dict())
    assert resumed.param_groups[0]["fused"] is True
    resumed.step()  # the loaded step count serves the fused kernel
    assert resumed.state[param]["step"].item() == 2
    config.fused = False  # the other way round: --optimizers.fields.optimizer.fused False on resume
    unfused = config.setup([param])
    unfused.load_state_dict(resumed.state_dict())
    assert not unfused.param_groups[0]["fused"]
