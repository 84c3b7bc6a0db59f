"""On-demand benchmarks (scripts that print figures; results live in nerf_loe/benchmarks/results)."""

import json
import multiprocessing
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def beside(stem: Path, suffix: str) -> Path:
    """``stem`` with ``suffix`` appended (``Path.with_suffix`` would cut a stem like ``scale_0.1``)."""
    return stem.parent / (stem.name + suffix)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that an interrupted
    benchmark never leaves a half-written stored run for the next one to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = beside(path, ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def save_report(out: Path, text: str, payload: object | None = None) -> None:
    """Write a benchmark's ``<out>.md`` (``text``) and, given a ``payload``, ``<out>.json``, each
    atomically, creating the results folder."""
    write_atomically(beside(out, ".md"), text.encode())
    if payload is not None:
        write_atomically(beside(out, ".json"), json.dumps(payload, indent=1, default=str).encode())


def invocation(program: str) -> str:
    """The command line that ran this benchmark: ``program`` (e.g. ``python -m
    nerf_loe.benchmarks.routing``) and this process's arguments, quoted for a shell."""
    return " ".join([program, shlex.join(sys.argv[1:])]).rstrip()


def report_head(title: str, program: str, detail: str = "") -> list[str]:
    """A results file's first lines: the title and the command that produced it (``detail``
    follows the command on its line: device, threads, repeats)."""
    return [f"# {title}", "", f"Command: `{invocation(program)}`{detail}"]


def _exit_with(parent: int) -> None:
    """In a spawned worker: exit as soon as ``parent`` is gone. A benchmark stopped with
    ``kill`` (SIGTERM reaches only the parent, unlike Ctrl-C) would otherwise leave its run
    training on, unseen, and void the timings of whatever runs next."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def in_fresh_process(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a newly spawned Python process: each run gets its own memory peak
    and no state (seeds, caches, compiled kernels) left by an earlier one. The process ends with
    this one."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)) as pool:
        return pool.submit(function, *args).result()
