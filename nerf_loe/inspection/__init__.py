"""Looking at trained fields: maps of where their experts and cells are, exports."""
