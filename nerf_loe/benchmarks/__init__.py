"""On-demand benchmarks (scripts that print figures; results live in nerf_loe/benchmarks/results)."""
