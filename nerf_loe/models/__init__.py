"""nerfstudio Models of this package."""
