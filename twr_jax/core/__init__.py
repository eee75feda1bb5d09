"""Task-agnostic pieces: devices, checkpoints, optimiser, schedules, logging,
shared layers and losses, text basics and loading a run. Never imports a task
(`twr_jax.lm`, `twr_jax.dialogue`) or the training loop."""
