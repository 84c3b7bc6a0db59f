"""Implicit Neural Teaching: schedules against the values of the public code's rules."""

import itertools
import math

import pytest
import torch

from nerf_loe.data.teaching_sampler import UNSEEN, TeachingConfig, TeachingPixelSampler
from nerf_loe.data.teaching_selection import teaching_weights, top_of_pool, top_of_pool_probability
from nerf_loe.errors import ConfigError
from nerf_loe.training.teaching_schedule import reselects, selection_count, teaching_ratio


def test_step_schedule_gives_the_published_stage_values():
    total = 1000
    stages = [teaching_ratio("step", t, total) for t in range(0, total, 100)]
    assert stages == pytest.approx([0.2, 0.28, 0.36, 0.44, 0.52, 0.6, 0.68, 0.76, 0.84, 0.92])
    # constant within a stage, and the last stage stays below 1
    assert {teaching_ratio("step", t, total) for t in range(100, 200)} == {teaching_ratio("step", 100, total)}
    assert teaching_ratio("step", total - 1, total) == pytest.approx(0.92)


def test_linear_and_cosine_rise_from_the_start_to_one():
    for schedule in ("linear", "cosine"):
        assert teaching_ratio(schedule, 0, 400, start=0.3) == pytest.approx(0.3)
        assert teaching_ratio(schedule, 400, 400, start=0.3) == pytest.approx(1.0)
        values = [teaching_ratio(schedule, t, 400, start=0.3) for t in range(401)]
        assert all(b >= a for a, b in zip(values[:-1], values[1:], strict=True))
    assert teaching_ratio("linear", 100, 400, start=0.2) == pytest.approx(0.4)
    assert teaching_ratio("cosine", 200, 400, start=0.2) == pytest.approx(0.6)  # cos(pi/2) = 0
    assert teaching_ratio("constant", 399, 400, start=0.25) == 0.25


def test_counts_truncate_and_a_ratio_of_one_takes_everything():
    n = 768 * 512  # a Kodak image, as the public code counts it
    assert [selection_count(teaching_ratio("step", t, 1000), n) for t in (0, 100, 500, 999)] == [
        78643,
        110100,
        235929,
        361758,
    ]
    assert selection_count(1.0, 7) == 7 and selection_count(0.99999999999, 7) == 7
    assert selection_count(0.01, 7) == 1  # never an empty selection


def test_incremental_strategy_selects_every_step_then_at_growing_intervals():
    total = 1000
    chosen = [t for t in range(total) if reselects("incremental", t, total)]
    assert chosen[:250] == list(range(250))  # the first quarter: every step
    after = chosen[250:]
    # then five stages of 150 steps, every 10, 20, 30, 40 and 50 steps, on multiples of the interval
    want = (
        list(range(250, 400, 10))
        + list(range(400, 550, 20))
        + [t for t in range(550, 700) if t % 30 == 0]
        + [t for t in range(700, 850) if t % 40 == 0]
        + list(range(850, 1000, 50))
    )
    assert after == want and len(chosen) == 285
    assert all(reselects("dense", t, total) for t in range(total))


def test_bad_schedule_options_are_reported():
    with pytest.raises(ConfigError, match="choose constant, linear, step or cosine"):
        teaching_ratio("exponential", 0, 10)
    with pytest.raises(ConfigError, match="share in"):
        teaching_ratio("step", 0, 10, start=0.0)
    with pytest.raises(ConfigError, match="choose dense or incremental"):
        reselects("sometimes", 0, 10)
    assert math.isfinite(teaching_ratio("cosine", 50, 10))  # past the end: clamped to the end


def _enumerated_top_of_pool(n: int, pool: int, top: int) -> list[float]:
    """Slow reference: over every equally likely pool, how often each ray (ray i outranked by the i
    rays before it) is among the pool's ``top``."""
    pools = list(itertools.combinations(range(n), pool))
    kept = [0] * n
    for members in pools:
        for ray in sorted(members)[:top]:  # lower index = higher rank
            kept[ray] += 1
    return [k / len(pools) for k in kept]


@pytest.mark.parametrize(("n", "pool", "top"), [(8, 4, 2), (9, 5, 1), (7, 7, 3), (10, 3, 3)])
def test_top_of_pool_probability_matches_enumerating_every_pool(n, pool, top):
    got = top_of_pool_probability(torch.arange(n), n, pool, top)
    assert got.tolist() == pytest.approx(_enumerated_top_of_pool(n, pool, top), abs=1e-12)
    assert float(got.sum()) == pytest.approx(top)  # every pool keeps exactly `top`


def test_top_of_pool_keeps_exactly_the_largest_scores():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(1000, generator=generator)
    chosen = top_of_pool(scores, 37, generator)
    assert sorted(chosen.tolist()) == sorted(torch.sort(scores, descending=True).indices[:37].tolist())


@pytest.mark.parametrize(("keep", "taught"), [(24, 24), (40, 16)])
def test_weighted_loss_is_unbiased_for_the_mean_over_all_rays(keep, taught):
    """Batches of uniform rays plus rays drawn from the best of a pool, on a fixed error field: the
    weighted batch mean averages to the mean loss over all rays, the unweighted one does not."""
    generator = torch.Generator().manual_seed(1)
    n, pool, uniform, batches = 500, 100, 8, 20000
    loss = torch.rand(n, generator=generator, dtype=torch.float64) ** 3  # a skewed error field
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.argsort(loss, descending=True)] = torch.arange(n)
    weights = teaching_weights(rank, n, pool, keep, uniform, taught)
    weighted, plain = [], []
    for _ in range(batches):
        members = torch.randperm(n, generator=generator)[:pool]
        kept = members[top_of_pool(loss[members], keep, generator)]
        drawn = kept if taught == keep else kept[torch.randint(keep, (taught,), generator=generator)]
        chosen = torch.cat([drawn, torch.randint(n, (uniform,), generator=generator)])
        weighted.append(float((weights[chosen] * loss[chosen]).mean()))
        plain.append(float(loss[chosen].mean()))
    truth = float(loss.mean())
    assert abs(sum(weighted) / batches - truth) < 0.015 * truth
    assert sum(plain) / batches > 1.5 * truth  # selection concentrates on large errors
    assert torch.allclose(teaching_weights(rank, n, pool, 0, uniform, 0), torch.ones(n, dtype=torch.float64))


def _sampler(**options) -> TeachingPixelSampler:
    from nerfstudio.data.pixel_samplers import PixelSamplerConfig

    teaching = TeachingConfig(enabled=True, **{"total_steps": 1000, **options})
    return TeachingPixelSampler(PixelSamplerConfig(num_rays_per_batch=256), teaching, num_images=3, seed=0)


def _images(mask: bool = False) -> dict:
    batch = {"image": torch.rand(3, 20, 30, 3), "image_idx": torch.arange(3)}
    if mask:
        batch["mask"] = torch.zeros(3, 20, 30, 1, dtype=torch.bool)
        batch["mask"][:, 5:15, 10:20] = True
    return batch


def _fixed_errors(sampler: TeachingPixelSampler, images: dict) -> torch.Tensor:
    """Record an error field whose large errors are all in image 1 (a model wrong on that view)."""
    sampler.sample(images)  # allocates the buffer
    errors = 0.01 * torch.rand(3, 20, 30)
    errors[1] += 1.0 + torch.rand(20, 30)
    c, y, x = (
        t.reshape(-1)
        for t in torch.meshgrid(torch.arange(3), torch.arange(20), torch.arange(30), indexing="ij")
    )
    sampler.record(torch.stack([c, y, x], -1), errors[c, y, x])
    return errors


def test_sampler_keeps_the_top_of_its_pool_and_concentrates_where_the_error_is():
    torch.manual_seed(0)
    sampler, images = _sampler(uniform_share=0.25), _images()
    errors = _fixed_errors(sampler, images)
    sampler.set_step(0)
    batch = sampler.sample(images)
    c, y, x = batch["indices"].unbind(-1)
    assert len(c) == 256
    # the step schedule's first ratio (0.2) of a pool 5x the teaching share (192 rays), all from
    # the ~320 hot rays of the pool
    assert len(sampler.kept) == int(0.2 * 5 * 192)
    kept_scores = errors[sampler.kept[:, 0], sampler.kept[:, 1], sampler.kept[:, 2]]
    assert kept_scores.min() > 1.0
    hot = c == 1
    # the teaching share comes from the hot view; the uniform share (64 rays) lands there a third
    # of the time
    assert hot[:192].all() and 8 < int(hot[192:].sum()) < 36


def test_late_in_training_the_choice_is_nearly_uniform():
    torch.manual_seed(1)
    sampler, images = _sampler(ratio_schedule="cosine", uniform_share=0.0), _images()
    _fixed_errors(sampler, images)
    sampler.set_step(1000)  # cosine: ratio 1, the whole pool is kept
    c, y, x = sampler.sample(images)["indices"].unbind(-1)
    share_hot = float((c == 1).float().mean())
    assert abs(share_hot - 1 / 3) < 0.1


def test_sampler_stays_inside_masks_and_repeats_with_its_seeds():
    def run() -> torch.Tensor:
        torch.manual_seed(2)
        sampler, images = _sampler(), _images(mask=True)
        out = [sampler.sample(images)["indices"] for _ in range(3)]
        return torch.cat(out)

    first = run()
    assert torch.equal(first, run())
    _, y, x = first.unbind(-1)
    assert ((y >= 5) & (y < 15) & (x >= 10) & (x < 20)).all()


def test_reweighted_batches_give_the_uniform_expected_loss():
    """On a fixed model (a fixed error field) the weighted batch loss averages to the mean loss
    over all rays, where unweighted teaching batches overweight the hot region."""
    torch.manual_seed(3)
    sampler, images = _sampler(reweight=True, uniform_share=0.25), _images()
    errors = _fixed_errors(sampler, images)
    loss = errors.square()
    weighted, plain = [], []
    for step in range(400):
        sampler.set_step(step % 50)  # the first stage: ratio 0.2
        batch = sampler.sample(images)
        c, y, x = batch["indices"].unbind(-1)
        weighted.append(float((sampler.last_weights * loss[c, y, x]).mean()))
        plain.append(float(loss[c, y, x].mean()))
    truth = float(loss.mean())
    assert abs(sum(weighted) / len(weighted) - truth) < 0.03 * truth
    assert sum(plain) / len(plain) > 3 * truth


def test_incremental_strategy_reuses_the_kept_rays_between_selections():
    sampler, images = _sampler(strategy="incremental"), _images()
    _fixed_errors(sampler, images)
    sampler.set_step(300)  # a selection step (a multiple of 10 in the first later stage)
    sampler.sample(images)
    kept = sampler.kept.clone()
    sampler.set_step(301)
    sampler.sample(images)
    assert torch.equal(kept, sampler.kept)
    sampler.set_step(310)
    sampler.sample(images)
    assert not torch.equal(kept, sampler.kept)


def test_teaching_options_are_checked():
    with pytest.raises(ConfigError, match="uniform-share 1.0"):
        TeachingConfig(uniform_share=1.0)
    with pytest.raises(ConfigError, match="choose dense or incremental"):
        TeachingConfig(strategy="sparse")


def test_training_records_each_rays_error_and_weights_the_loss(tiny_scene, tmp_path):
    """Through the shipped method config and nerfstudio's trainer: the teaching sampler takes its
    schedule span from the trainer, the pipeline records the trained rays' errors, the batch
    carries loss weights, and the model's loss uses them."""
    from nerf_loe.benchmarks.methods import BenchmarkArgs, setup_trainer, train_step

    overrides = ("hidden_dim=16", "datamanager.teaching.enabled=true", "datamanager.teaching.reweight=true")
    args = BenchmarkArgs(device="cpu", scale_factor=0.5, set=overrides)
    trainer = setup_trainer("mlp-nerf", tiny_scene, args, tmp_path)
    datamanager = trainer.pipeline.datamanager
    sampler = datamanager.teaching
    assert isinstance(sampler, TeachingPixelSampler) and datamanager.train_pixel_sampler is sampler
    for step in range(3):
        train_step(trainer, step)
    assert sampler.total_steps == trainer.config.max_num_iterations
    seen = sampler.errors < UNSEEN
    assert 0 < int(seen.sum()) <= 3 * datamanager.config.train_num_rays_per_batch
    assert float(sampler.errors[seen].max()) <= 3.0  # L1 over three channels in [0, 1]

    ray_bundle, batch = datamanager.next_train(3)
    model = trainer.pipeline.model
    outputs = model(ray_bundle)
    weights = batch["loss_weight"]
    assert weights.shape == (len(batch["indices"]),) and weights.std() > 0
    torch.manual_seed(0)
    weighted = model.get_loss_dict(outputs, batch)["rgb_loss"]
    pred, target = outputs["rgb"], batch["image"][..., :3]
    assert torch.allclose(weighted, ((pred - target) ** 2).mean(-1).mul(weights).mean())


def test_forward_scoring_keeps_the_top_of_the_pools_fresh_errors_not_the_remembered_ones():
    torch.manual_seed(4)
    sampler, images = _sampler(scoring="forward", uniform_share=0.0), _images()
    with pytest.raises(ConfigError, match="scorer"):
        sampler.sample(images)
    fresh = 0.01 * torch.rand(3, 20, 30)
    fresh[2] += 1.0 + torch.rand(20, 30)  # the model now: view 2 is wrong
    calls = []

    def scorer(image_batch, indices):
        calls.append(len(indices))
        assert image_batch is images
        return fresh[indices[:, 0], indices[:, 1], indices[:, 2]]

    sampler.scorer = scorer
    _fixed_errors(sampler, images)  # remembered: view 1 is wrong
    sampler.set_step(0)
    sampler.sample(images)
    pool = calls[-1]
    assert pool == 5 * 256  # the whole pool, rendered once
    kept_scores = fresh[sampler.kept[:, 0], sampler.kept[:, 1], sampler.kept[:, 2]]
    assert (sampler.kept[:, 0] == 2).all() and len(sampler.kept) == int(0.2 * pool)
    # the buffer now holds the fresh scores of the pool: the kept rays are its top by a sort
    c, y, x = sampler.kept.unbind(-1)
    assert torch.equal(sampler.errors[c, y, x], kept_scores)
    with pytest.raises(ConfigError, match="memory or forward"):
        TeachingConfig(scoring="fresh")


def test_the_pipelines_scorer_gives_each_pixels_error_as_a_full_render_shows_it(tiny_scene, tmp_path):
    """The no-grad scorer's errors (rays built from pixel indices) equal |render - image| read off
    whole-image renders of the same cameras (nerfstudio's camera path), in evaluation mode."""
    from nerf_loe.benchmarks.methods import BenchmarkArgs, setup_trainer, train_step

    overrides = ("hidden_dim=16", "datamanager.teaching.enabled=true", "datamanager.teaching.scoring=forward")
    args = BenchmarkArgs(device="cpu", scale_factor=0.5, set=overrides)
    trainer = setup_trainer("mlp-nerf", tiny_scene, args, tmp_path)
    pipeline = trainer.pipeline
    sampler = pipeline.datamanager.teaching
    assert sampler.scorer == pipeline.score_pixels
    for step in range(3):
        train_step(trainer, step)
    image_batch = sampler._image_batch
    generator = torch.Generator().manual_seed(0)
    count, height, width = image_batch["image"].shape[:3]
    pixels = torch.stack(
        [torch.randint(n, (40,), generator=generator) for n in (count, height, width)], dim=-1
    )
    pipeline.eval()
    scores = pipeline.score_pixels(image_batch, pixels)
    cameras = pipeline.datamanager.train_dataset.cameras
    want = []
    with torch.no_grad():
        for local, y, x in pixels.tolist():
            camera = int(image_batch["image_idx"][local])
            render = pipeline.model.get_outputs_for_camera(cameras[camera : camera + 1])["rgb"]
            target = image_batch["image"][local, y, x]
            if target.shape[-1] == 4:
                target = target[:3] * target[3:] + (1.0 - target[3:])
            want.append(float((render[y, x] - target).abs().sum()))
    assert torch.allclose(scores, torch.tensor(want), atol=1e-4)


def test_one_scene_batches_choose_a_scene_then_teach_within_it():
    """A collection's sampler: every batch lies in one scene (drawn uniformly); its teaching share is
    the top of a pool from that scene's images only, so the hot view of another scene is never
    taken, and each scene keeps its own rays between selections."""
    from nerfstudio.data.pixel_samplers import PixelSamplerConfig

    torch.manual_seed(5)
    teaching = TeachingConfig(enabled=True, total_steps=1000, uniform_share=0.25, strategy="incremental")
    sampler = TeachingPixelSampler(
        PixelSamplerConfig(num_rays_per_batch=128), teaching, num_images=6, seed=0, one_scene_per_batch=True
    )
    images = {"image": torch.rand(6, 10, 12, 3), "image_idx": torch.tensor([5, 4, 3, 2, 1, 0])}
    with pytest.raises(ConfigError, match="scene collection"):
        sampler.sample(images)
    sampler.image_scene = torch.tensor([0, 0, 1, 1, 2, 2])  # by dataset index
    sampler.sample(images)  # allocates the buffer
    hot = 3  # dataset image 3 (scene 1) is where the model is wrong; local index 2
    errors = 0.01 * torch.rand(6, 10, 12)
    errors[hot] += 1.0
    grid = torch.meshgrid(torch.arange(6), torch.arange(10), torch.arange(12), indexing="ij")
    pixels = torch.stack([g.reshape(-1) for g in grid], -1)  # dataset image, row, column
    sampler.record(pixels, errors[pixels[:, 0], pixels[:, 1], pixels[:, 2]])
    seen = []
    for step in range(300, 330):  # incremental: selections at 300, 310, 320 only
        sampler.set_step(step)
        indices = sampler.sample(images)["indices"]  # nerfstudio numbers them by dataset image
        scenes = sampler.image_scene[indices[:, 0]]
        assert len(torch.unique(scenes)) == 1
        scene = int(scenes[0])
        seen.append(scene)
        if scene == 1:
            assert (indices[:96, 0] == hot).all()
        assert torch.equal(sampler.kept, sampler._kept_by_scene[scene])
    assert set(seen) == {0, 1, 2}
