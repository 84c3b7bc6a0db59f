"""Wall-clock timing for the benchmarks, correct on CUDA: a block's time includes the kernels it
queued (CUDA runs them asynchronously, so the clock waits for the device at both ends)."""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """Adds up the seconds spent inside every ``with`` block timed with it.

    Example::

        >>> watch = Stopwatch(cuda=False)
        >>> with watch:
        ...     _ = sum(range(1000))
        >>> watch.seconds > 0
        True
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        if self.cuda:
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._start


def time_to(curve: list[tuple[int, float, float]], target: float) -> float | None:
    """Training seconds at which the curve first reaches ``target`` (linear in PSNR between the
    evaluations around the crossing; from zero time for the first), None if it never does.

    Example:
        >>> time_to([(100, 10.0, 20.0), (200, 20.0, 24.0)], 22.0)
        15.0
    """
    previous_s, previous_psnr = 0.0, None
    for _, seconds, psnr in curve:
        if psnr >= target:
            if previous_psnr is None or psnr == previous_psnr:
                return seconds
            share = (target - previous_psnr) / (psnr - previous_psnr)
            return previous_s + max(share, 0.0) * (seconds - previous_s)
        previous_s, previous_psnr = seconds, psnr
    return None
