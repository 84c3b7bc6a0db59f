"""LoE layers give more capacity than an equal-MAC MLP: fitting a photo (2-D, seeded, CPU)."""

import numpy as np
import skimage.data
import torch
from nerfstudio.field_components.encodings import NeRFEncoding

from nerf_loe.components.tiled_mlp import TiledMLP
from nerf_loe.components.tiling import Tiling


def fit_psnr(banks, steps=300, size=128, seed=0):
    torch.manual_seed(seed)
    image = skimage.data.astronaut()[:256:2, 128:384:2].astype(np.float32) / 255.0  # 128x128 crop
    target = torch.from_numpy(image[:size, :size]).reshape(-1, 3)
    axis = (torch.arange(size) + 0.5) / size
    x = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    encoding = NeRFEncoding(2, num_frequencies=8, min_freq_exp=-1.0, max_freq_exp=6.0, include_input=True)
    features = encoding(x)
    mlp = TiledMLP(encoding.get_out_dim(), 128, 3, Tiling(banks))
    optimizer = torch.optim.Adam(mlp.parameters(), lr=2e-3)
    for _ in range(steps):
        loss = (torch.sigmoid(mlp(features, x)) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mse = (torch.sigmoid(mlp(features, x)) - target).square().mean()
    return (-10 * torch.log10(mse)).item(), mlp.macs_per_sample()


def test_loe_beats_equal_mac_mlp_by_3db():
    loe_psnr, loe_macs = fit_psnr([(2, 2), (4, 4), (4, 4), (4, 4)])
    mlp_psnr, mlp_macs = fit_psnr([(1, 1)] * 4)
    assert loe_macs == mlp_macs
    assert loe_psnr >= mlp_psnr + 3.0, (loe_psnr, mlp_psnr)
