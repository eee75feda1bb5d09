"""Tests of twr_jax.dialogue."""
