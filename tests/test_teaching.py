"""Implicit Neural Teaching: schedules against the values of the public code's rules."""

import itertools
import math

import pytest
import torch

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


def test_weighted_loss_is_unbiased_for_the_mean_over_all_rays():
    """Batches of uniform + top-of-pool rays from a fixed error field: the weighted batch mean
    averages to the mean loss over all rays, the unweighted one does not."""
    generator = torch.Generator().manual_seed(1)
    n, pool, top, uniform, batches = 500, 100, 24, 8, 20000
    loss = torch.rand(n, generator=generator, dtype=torch.float64) ** 3  # a skewed error field
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.argsort(loss, descending=True)] = torch.arange(n)
    weights = teaching_weights(rank, n, pool, top, uniform)
    weighted, plain = [], []
    for _ in range(batches):
        members = torch.randperm(n, generator=generator)[:pool]
        chosen = torch.cat(
            [
                members[top_of_pool(loss[members], top, generator)],
                torch.randint(n, (uniform,), generator=generator),
            ]
        )
        weighted.append(float((weights[chosen] * loss[chosen]).mean()))
        plain.append(float(loss[chosen].mean()))
    truth = float(loss.mean())
    assert abs(sum(weighted) / batches - truth) < 0.01 * truth
    assert sum(plain) / batches > 1.5 * truth  # selection concentrates on large errors
    assert torch.allclose(teaching_weights(rank, n, pool, 0, uniform), torch.ones(n, dtype=torch.float64))
