"""The original code's training arithmetic as options (SPEC A.2/A.4), and
reconstruction from z."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from twr_jax import train
from twr_jax.core import losses
from twr_jax.core import metric_log
from twr_jax.core import prng
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline
from twr_jax.lm import losses as lm_losses
from twr_jax.lm import model as models
from twr_jax.lm import reconstruction
from twr_jax.lm import task as lm_task

from tests.train_test import tiny_config


def _seqs(lengths):
  return [np.array([text.BOS] + [4 + i % 5] * (n - 2) + [text.EOS], np.int32)
          for i, n in enumerate(lengths)]


def test_sorted_batcher_is_the_originals_fixed_order():
  lengths = [5, 3, 9, 3, 7, 4, 6]
  b = input_pipeline.SortedBatcher(_seqs(lengths), batch_size=3, bucket_size=4)
  assert b.num_batches == 3
  # Stable sort by length: indices 1, 3 (len 3), 5 (4), 0 (5), 6 (6), 4, 2.
  first = b.train_batch(0)
  np.testing.assert_array_equal(first['index'], [1, 3, 5])
  np.testing.assert_array_equal(first['lengths'], [3, 3, 4])
  np.testing.assert_array_equal(first['enc_lengths'], [4, 4, 4])
  assert first['tokens'].shape == (3, 4)
  np.testing.assert_array_equal(b.train_batch(1)['index'], [0, 6, 4])
  last = b.train_batch(2)  # One real row, two weight-0 rows.
  np.testing.assert_array_equal(last['weights'], [1, 0, 0])
  np.testing.assert_array_equal(last['enc_lengths'], [9, 9, 9])
  assert last['tokens'].shape == (3, 12)
  # Same order every epoch, no shuffling.
  for step in range(3):
    for k, v in b.train_batch(step).items():
      np.testing.assert_array_equal(v, b.train_batch(step + 3)[k])


def test_batcher_enc_lengths_is_the_longest_real_row():
  b = input_pipeline.Batcher(_seqs([5, 3, 9, 3, 7, 4, 6]), 2, 4, 0)
  for step in range(b.num_batches):
    batch = b.train_batch(step)
    real = batch['lengths'][batch['weights'] > 0]
    np.testing.assert_array_equal(batch['enc_lengths'], real.max())


def _loss_parts(config, batch):
  data = datasets.load(config)
  model = models.model_from_config(config, len(data.vocab))
  params = lm_task.init_params(model, jax.random.key(0))
  keys = prng.example_keys(jax.random.key(1), batch['index'], 0)
  _, aux = lm_losses.lm_loss(model, config, params, batch, keys, 1.0,
                         jnp.float32(len(batch['index'])))
  noise = models.example_noise(keys, batch['tokens'].shape[1], model.emb_dim,
                               model.latent, model.dropout, train=True)
  out = model.apply({'params': params}, batch['tokens'], batch['lengths'],
                    noise)
  return aux, out


def _mixed_batch():
  # Two real rows of different lengths in one batch: T_b = 6.
  tokens = np.zeros((2, 8), np.int32)
  tokens[0, :4] = [text.BOS, 5, 6, text.EOS]
  tokens[1, :6] = [text.BOS, 5, 6, 7, 8, text.EOS]
  return dict(tokens=tokens, lengths=np.array([4, 6], np.int32),
              weights=np.ones(2, np.float32), index=np.arange(2, dtype=np.int32),
              enc_lengths=np.array([6, 6], np.int32))


def test_kl_over_padded_length_averages_pad_steps_too():
  batch = _mixed_batch()
  own, out = _loss_parts(tiny_config(), batch)
  padded, _ = _loss_parts(tiny_config(**{'model.kl_length': 'padded'}), batch)
  kl_t = np.asarray(losses.gaussian_kl(out['mu'], out['logvar']))  # [B, T]
  # Hand computation: row 0 averages its 4 own steps, or all T_b = 6.
  np.testing.assert_allclose(own['kl'], [kl_t[0, :4].mean(),
                                         kl_t[1, :6].mean()], rtol=1e-5)
  np.testing.assert_allclose(padded['kl'], kl_t[:, :6].mean(1), rtol=1e-5)
  # The row as long as T_b is unaffected; the shorter one is not.
  assert not np.isclose(own['kl'][0], padded['kl'][0])


def test_z_at_padded_last_position():
  batch = _mixed_batch()
  config = tiny_config(**{'model.z_length': 'padded'})
  aux, out = _loss_parts(config, batch)
  mu, logvar = np.asarray(out['mu']), np.asarray(out['logvar'])
  # The Gaussian z follows is q at step T_b - 1 = 5 for both rows.
  want = losses.gaussian_kl(mu[:, 5], logvar[:, 5])
  np.testing.assert_allclose(aux['kl_z'], want, rtol=1e-5)
  own, _ = _loss_parts(tiny_config(), batch)
  np.testing.assert_allclose(own['kl_z'][0],
                             losses.gaussian_kl(mu[0, 3], logvar[0, 3]),
                             rtol=1e-5)


def test_compat_variant_sets_all_three_factors_and_trains(tmp_path):
  config = tiny_config('twr_compat')
  assert (config.data.train_order, config.model.kl_length,
          config.model.z_length) == ('sorted', 'padded', 'padded')
  config.train.num_steps = 6
  results = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(results['test']['nll_elbo'])
  # Reconstruction at the final evaluation only (eval.reconstruction).
  assert 0.0 <= results['test']['recon_acc'] <= 1.0
  mid = [r for r in metric_log.read_metrics(str(tmp_path))
         if r['split'] == 'valid' and r['step'] < 6]
  assert mid and all('recon_acc' not in r for r in mid)


def test_unknown_train_order_is_rejected():
  config = tiny_config(**{'data.train_order': 'random'})
  with pytest.raises(ValueError, match="train_order.*'shuffled', 'sorted'"):
    train.train_and_evaluate(config, '/nonexistent/never/written')


def test_vae_no_anneal_is_the_originals_baseline():
  c = tiny_config('vae_no_anneal')
  assert c.model.kl_window == 'last'
  assert c.train.kl_schedule.kind == 'constant'
  assert c.train.kl_schedule.beta == 1.0
  assert 'vae_no_anneal' in default.VARIANTS


# --- reconstruction -------------------------------------------------------


def test_token_accuracy_by_hand():
  refs = [[5, 6, 7, text.EOS], [8, text.EOS]]
  hyps = [[5, 9, 7], [8, text.EOS, 4]]
  # Row 0: 2 of 4 (the missing EOS counts wrong); row 1: 2 of 2.
  assert reconstruction.token_accuracy(refs, hyps) == pytest.approx(4 / 6)


def test_scores_are_one_for_perfect_and_low_for_constant_output():
  refs = [[5 + i, 6 + i, 7 + i, 8 + i, 9 + i, text.EOS] for i in range(5)]
  perfect = reconstruction.scores(refs, refs)
  assert perfect == {'bleu4': pytest.approx(1.0), 'token_accuracy': 1.0}
  constant = reconstruction.scores(refs, [refs[0]] * 5)
  # Row 0 matches all 6 positions, the others only their EOS.
  assert constant['token_accuracy'] == pytest.approx((6 + 4 * 1) / 30)
  # By hand: clipped n-gram precisions over the corpus 15/25, 10/20, 6/15,
  # 3/10; brevity penalty 1.
  assert constant['bleu4'] == pytest.approx((0.6 * 0.5 * 0.4 * 0.3) ** 0.25)


def test_bleu_without_any_matching_ngram_is_zero_and_quiet():
  refs = [[5, 6, 7, 8, text.EOS]]
  assert reconstruction.scores(refs, [[9, 10, 11, 12, text.EOS]])['bleu4'] == 0


def test_reconstruct_returns_every_sentence_once():
  config = tiny_config()
  data = datasets.load(config)
  model = models.model_from_config(config, len(data.vocab))
  params = lm_task.init_params(model, jax.random.key(0))
  seqs = data.splits['test']
  out = reconstruction.reconstruct(
      model, params, input_pipeline.Batcher(seqs, 16, 8, 0))
  assert sorted(out['index'].tolist()) == list(range(len(seqs)))
  for i, ref in zip(out['index'], out['references']):
    assert ref == seqs[i][1:].tolist()  # Words then EOS.
  s = reconstruction.scores(out['references'], out['hypotheses'])
  assert 0.0 <= s['token_accuracy'] <= 1.0 and 0.0 <= s['bleu4'] <= 1.0
