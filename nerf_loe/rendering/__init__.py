"""Ray marching through an occupancy grid and packed volume rendering (torch and nerfacc backends)."""
