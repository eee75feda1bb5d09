"""Tests of twr_jax.core."""
