"""Training utilities: schedulers and callbacks shared by this package's methods."""
