"""Tests of twr_jax.lm."""
