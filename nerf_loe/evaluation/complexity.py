"""MACs per sample and parameter counts, by part, as every field of this package reports them."""

from __future__ import annotations


def format_complexity(name: str, parts: dict[str, tuple[int, int]]) -> str:
    """One line per part and a total: ``part: MACs/sample, params``."""
    lines = [f"{name} complexity (MACs per sample, parameters):"]
    for part, (macs, params) in parts.items():
        lines.append(f"  {part:<12} {macs:>12,d} MACs  {params:>12,d} params")
    total_macs = sum(m for m, _ in parts.values())
    total_params = sum(p for _, p in parts.values())
    lines.append(f"  {'total':<12} {total_macs:>12,d} MACs  {total_params:>12,d} params")
    return "\n".join(lines)
