"""Slow reference of nerfacc 0.5.2's grid traversal, written from its CUDA kernel's walk.

One ray at a time, in Python floats: sort the level boxes' entry/exit distances, take each
segment's level as the kernel does, walk the segment's cells with a 3-D DDA (next face crossing
per axis), and step through occupied cells / skip free ones exactly as ``traverse_grids_kernel``
(nerfacc/cuda/csrc/grid.cu) does. It shares no code with ``nerf_loe.rendering.marching``.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-6


def _box_hit(o, d, box):
    """nerfacc's slab test: (t_min, t_max) or None; a box behind the ray (t_max <= 0) misses."""
    t_min, t_max = -math.inf, math.inf
    for axis in range(3):
        inv = 1.0 / d[axis] if d[axis] != 0 else math.copysign(math.inf, d[axis])
        a = (box[axis] - o[axis]) * inv
        b = (box[axis + 3] - o[axis]) * inv
        lo, hi = (a, b) if inv >= 0 else (b, a)
        if math.isnan(lo) or math.isnan(hi):  # origin on the slab's face, parallel ray
            lo, hi = -math.inf, math.inf
        if t_min > hi or lo > t_max:
            return None
        t_min, t_max = max(t_min, lo), min(t_max, hi)
    return None if t_max <= 0 else (t_min, t_max)


def march_one_ray(o, d, binaries, aabbs, near, far, step, cone):
    """Samples ``[(t_start, t_end), ...]`` of one ray (lists of floats in, floats out)."""

    def dt_at(t):
        return min(max(t * cone, step), 1e10)

    levels, res = len(aabbs), len(binaries[0])
    hits = [_box_hit(o, d, box) for box in aabbs]
    events = []  # (t, is_entering, level); a missed level sorts last at +inf
    for level, hit in enumerate(hits):
        t_min, t_max = hit if hit is not None else (math.inf, math.inf)
        events += [(t_min, True, level), (t_max, False, level)]
    if levels > 1:
        events.sort(key=lambda e: e[0])

    samples = []
    t_last, continuous = near, False
    for i in range(len(events) - 1):
        t_here, entering, level = events[i]
        if hits[level] is None:
            continue
        if not entering:
            t_next_event, next_entering, next_level = events[i + 1]
            if next_entering or hits[next_level] is None:
                continue
            level = next_level
        seg_min, seg_max = max(events[i][0], near), min(events[i + 1][0], far)
        if seg_min >= seg_max:
            continue
        if not continuous:
            dt = dt_at(t_last)
            while t_last + dt * 0.5 < seg_min:
                t_last += dt

        box = aabbs[level]
        voxel = [(box[a + 3] - box[a]) / res for a in range(3)]
        start = [o[a] + d[a] * (seg_min + EPS) for a in range(3)]
        end = [o[a] + d[a] * (seg_max - EPS) for a in range(3)]
        index = [min(max(int((start[a] - box[a]) / voxel[a]), 0), res - 1) for a in range(3)]
        final = [min(max(int((end[a] - box[a]) / voxel[a]), 0), res - 1) for a in range(3)]
        sign = [0 if d[a] == 0 else (1 if d[a] > 0 else -1) for a in range(3)]
        tdist, delta = [], []
        for a in range(3):
            if d[a] == 0:
                tdist.append(seg_max)
                delta.append(seg_max)
            else:
                face = box[a] + (index[a] + (1 if d[a] > 0 else 0)) * voxel[a]
                tdist.append((face - start[a]) / d[a] + seg_min)
                delta.append(voxel[a] / d[a] * sign[a])
        overflow = [final[a] + sign[a] for a in range(3)]

        while True:
            t_traverse = min(min(tdist), seg_max)
            if not binaries[level][index[0]][index[1]][index[2]]:
                dt = dt_at(t_last)
                while t_last + dt * 0.5 < t_traverse:
                    t_last += dt
                continuous = False
            else:
                while True:
                    dt = dt_at(t_last)
                    if t_last + dt * 0.5 >= t_traverse:
                        break
                    t_next = t_last + dt
                    samples.append((t_last, t_next))
                    continuous = True
                    t_last = t_next
                    if t_next >= t_traverse:
                        break
            # step the DDA along the axis whose next face is nearest (the kernel's tie order)
            if tdist[0] < tdist[1] and tdist[0] < tdist[2]:
                axis = 0
            elif tdist[1] < tdist[2]:
                axis = 1
            else:
                axis = 2
            index[axis] += sign[axis]
            tdist[axis] += delta[axis]
            if index[axis] == overflow[axis]:
                break
    return samples


def reference_march(grid, rays_o, rays_d, near_planes, far_planes, step, cone):
    """Packed ``(ray_indices, t_starts, t_ends)`` of every ray, by :func:`march_one_ray`."""
    binaries = grid.binaries.tolist()
    aabbs = grid.aabbs.tolist()
    ray_indices, starts, ends = [], [], []
    for r in range(len(rays_o)):
        for t0, t1 in march_one_ray(
            rays_o[r].tolist(),
            rays_d[r].tolist(),
            binaries,
            aabbs,
            float(near_planes[r]),
            float(far_planes[r]),
            step,
            cone,
        ):
            ray_indices.append(r)
            starts.append(t0)
            ends.append(t1)
    return (
        torch.tensor(ray_indices, dtype=torch.long),
        torch.tensor(starts, dtype=torch.float64),
        torch.tensor(ends, dtype=torch.float64),
    )
