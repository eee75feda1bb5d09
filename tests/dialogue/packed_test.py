"""Packed dialogue training batches (dialogue_data.pack_batch) and the packed
train step (dialogue_model.packed_forward): same values as the padded step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twr_jax.core import prng
from twr_jax.dialogue import data as dd
from twr_jax.dialogue import losses as dialogue_losses
from twr_jax.dialogue import model as dm
from tests.dialogue import model_test as mt

# Rows with 1..4 context turns and responses of 2..7 tokens, so that lanes
# hold several items and some slots are empty.
BATCH = mt.make_batch([1, 4, 3, 2, 4, 1], [3, 7, 5, 2, 6, 7], seed=3)


def test_pack_lanes_best_fit_decreasing():
  # By hand, width 6: 5 -> new lane 0; 4 -> new lane 1; 3 fits nowhere ->
  # new lane 2; 2 -> lane 1 (2 free, the tightest fit), at offset 4.
  lane, offset, n = dd.pack_lanes(np.array([5, 3, 4, 2]), 6)
  np.testing.assert_array_equal(lane, [0, 2, 1, 1])
  np.testing.assert_array_equal(offset, [0, 0, 0, 4])
  assert n == 3
  with pytest.raises(ValueError, match=r'1\.\.6'):
    dd.pack_lanes(np.array([3, 7]), 6)


def test_lane_buckets():
  np.testing.assert_array_equal(dd.lane_buckets(1.5)[:7],
                                [8, 16, 24, 40, 64, 96, 144])
  np.testing.assert_array_equal(dd.lane_buckets(1.15)[:9],
                                [8, 16, 24, 32, 40, 48, 56, 64, 80])
  with pytest.raises(ValueError, match='growth'):
    dd.lane_buckets(1.0)


@pytest.mark.parametrize('shards', [1, 2, 3])
def test_pack_batch_places_every_token(shards):
  """Each block's lanes hold exactly its rows' real tokens, where the
  positions say; nothing else but padding."""
  packed = dd.pack_batch(BATCH, shards)
  rows, slots, width = BATCH['context'].shape
  per = rows // shards
  num_ctx = packed['ctx_tokens'].shape[0] // shards
  num_res = packed['res_inputs'].shape[0] // shards
  assert num_ctx in dd.lane_buckets(1.5) and num_res in dd.lane_buckets(1.15)
  for name in dd.PACKED_ROW_FIELDS:
    np.testing.assert_array_equal(packed[name], BATCH[name])
  ctx_real = res_real = 0
  for s in range(shards):
    block = slice(s * per, (s + 1) * per)
    tokens = packed['ctx_tokens'][s * num_ctx:(s + 1) * num_ctx].ravel()
    item = packed['ctx_item'][s * num_ctx:(s + 1) * num_ctx].ravel()
    inputs = packed['res_inputs'][s * num_res:(s + 1) * num_res].ravel()
    targets = packed['res_targets'][s * num_res:(s + 1) * num_res].ravel()
    row_of = packed['res_row'][s * num_res:(s + 1) * num_res].ravel()
    for r in range(per):
      g = s * per + r  # Row in the batch; r is its row in the block.
      for t in range(BATCH['num_turns'][g]):
        n = BATCH['context_lens'][g, t]
        last = packed['ctx_last'][block][r, t]
        np.testing.assert_array_equal(tokens[last - n + 1:last + 1],
                                      BATCH['context'][g, t, :n])
        assert np.all(item[last - n + 1:last + 1] == r * slots + t)
        ctx_real += n
      m = BATCH['response_len'][g]
      last = packed['res_last'][block][r]
      np.testing.assert_array_equal(inputs[last - m + 2:last + 1],
                                    BATCH['response'][g, :m - 1])
      np.testing.assert_array_equal(targets[last - m + 2:last + 1],
                                    BATCH['response'][g, 1:m])
      assert np.all(row_of[last - m + 2:last + 1] == r)
      res_real += m - 1
  assert (packed['ctx_item'] >= 0).sum() == ctx_real
  assert (packed['ctx_tokens'][packed['ctx_item'] < 0] == dd.PAD).all()
  assert (packed['res_row'] >= 0).sum() == res_real
  assert (packed['res_targets'][packed['res_row'] < 0] == dd.PAD).all()
  with pytest.raises(ValueError, match='4 blocks'):
    dd.pack_batch(BATCH, 4)


def test_dropout_keep_rate_and_values():
  keys = jax.random.split(jax.random.key(0), 50)
  slot = jnp.zeros(50, jnp.int32)
  keep = dm.dropout_keep(keys, 0, slot, slot, 400, 0.25)
  assert set(np.unique(np.asarray(keep))) == {0.0, np.float32(1 / 0.75)}
  assert abs(float(np.mean(keep > 0)) - 0.75) < 0.01  # 20,000 draws.
  # Another position of the same example draws another mask.
  other = dm.dropout_keep(keys, 0, slot, slot + 1, 400, 0.25)
  assert np.mean(np.asarray(keep) != np.asarray(other)) > 0.2


@functools.cache
def _loss_and_grads(kl_mask, train, packed):
  batch = dd.pack_batch(BATCH) if packed else BATCH
  keys = prng.example_keys(jax.random.key(11), BATCH['index'])
  model = mt.make_model(kl_mask)

  def per_example(params):
    _, aux = dialogue_losses.dialogue_loss(model, params, batch, keys, 0.3,
                                           train)
    return aux

  aux = jax.jit(per_example)(mt.init_params())
  # Each example's gradient of its own loss, rec + 0.3 kl: [B, ...] leaves.
  grads = jax.jit(jax.jacrev(
      lambda p: per_example(p)['rec'] + 0.3 * per_example(p)['kl']))(
          mt.init_params())
  return jax.device_get(aux), jax.device_get(grads)


@pytest.mark.parametrize('kl_mask', ['valid', 'padded'])
@pytest.mark.parametrize('train', [False, True])
def test_packed_step_equals_padded_step(kl_mask, train):
  """Per-example losses and gradients of the packed batch equal the padded
  batch's, with dropout (the same masks at every real token) and without."""
  padded_aux, padded_grads = _loss_and_grads(kl_mask, train, False)
  packed_aux, packed_grads = _loss_and_grads(kl_mask, train, True)
  for name in ('rec', 'kl', 'kl_z', 'tokens'):
    np.testing.assert_allclose(packed_aux[name], padded_aux[name], rtol=2e-6,
                               atol=1e-6, err_msg=name)
  assert np.all(packed_aux['rec'] > 0)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
      packed_grads, padded_grads)
  # Dropout changes the values, i.e. the masks were really applied.
  if train:
    plain, _ = _loss_and_grads(kl_mask, False, True)
    assert not np.allclose(plain['rec'], packed_aux['rec'])


def test_packed_example_does_not_depend_on_its_batch():
  """A row packed alone gets the losses it gets in the full batch (same
  key): lanes never mix items, and masks follow the example, not the lane."""
  keys = prng.example_keys(jax.random.key(11), BATCH['index'])
  model = mt.make_model()
  loss = jax.jit(lambda b, k: dialogue_losses.dialogue_loss(
      model, mt.init_params(), b, k, 0.3, True)[1])
  full = loss(dd.pack_batch(BATCH), keys)
  for b in (1, 3):
    row = dd.pack_batch({k: v[b:b + 1] for k, v in BATCH.items()})
    alone = loss(row, keys[b:b + 1])
    for name in ('rec', 'kl'):
      np.testing.assert_allclose(alone[name][0], full[name][b], rtol=2e-6)
