"""decoding.argmax (lax.top_k) gives jnp.argmax's ids, ties and NaN included."""

import jax
import jax.numpy as jnp
import numpy as np

from twr_jax.core import decoding


def test_argmax_equals_jnp_argmax_with_ties_nan_and_inf():
  x = np.asarray(jax.random.normal(jax.random.key(0), (3, 5, 257)))
  x = np.round(x, 1)  # Many ties: the lowest index must win.
  x[0, 0, [11, 200]] = 9.0  # A tie at the maximum.
  x[0, 1, [7, 150]] = np.nan  # argmax ranks NaN first, the first NaN wins.
  x[0, 2] = -np.inf  # All equal: index 0.
  x[0, 3, 256] = np.inf  # +inf at the last index.
  x[1, 0] = 0.0
  got = jax.jit(decoding.argmax)(jnp.asarray(x))
  want = jnp.argmax(jnp.asarray(x), axis=-1)
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got[0, :4], [11, 7, 0, 256])
