"""The explicit package list in pyproject.toml covers every sub-package (else installs break)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"nerf_loe"} | {
        "nerf_loe." + ".".join(p.parent.relative_to(ROOT / "nerf_loe").parts)
        for p in (ROOT / "nerf_loe").rglob("__init__.py")
        if p.parent != ROOT / "nerf_loe"
    }
    found |= {"nerf_loe.method_configs", "nerf_loe.data_scripts"}
    assert found == listed
