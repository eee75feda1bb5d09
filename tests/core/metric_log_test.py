"""Tests for twr_jax.core.metric_log."""

import json
import math
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np
from tensorboard.backend.event_processing import event_accumulator

from twr_jax import errors
from twr_jax.core import metric_log


def _strict_json(line):
  """json.loads that rejects NaN/Infinity, which are not JSON."""
  def reject(constant):
    raise ValueError(f'non-standard JSON constant {constant}')
  return json.loads(line, parse_constant=reject)


class MetricLogTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Not self.create_tempdir(): that needs absl flags, unparsed under pytest.
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.workdir = tmp.name
    self.path = os.path.join(self.workdir, 'metrics.jsonl')

  def _lines(self):
    with open(self.path, encoding='utf-8') as f:
      return f.read().splitlines()

  def test_writes_plain_json_lines(self):
    with metric_log.MetricLog(self.workdir) as log:
      log.write({'step': np.int64(10), 'split': 'train',
                 'loss': np.float32(0.5), 'tokens': np.int32(7),
                 'kl': jnp.float32(1.25), 'lr': 1e-4})
      log.write({'step': 20, 'split': 'valid', 'ppl': 99.5})
    self.assertEqual(
        [_strict_json(line) for line in self._lines()],
        [{'step': 10, 'split': 'train', 'loss': 0.5, 'tokens': 7,
          'kl': 1.25, 'lr': 1e-4},
         {'step': 20, 'split': 'valid', 'ppl': 99.5}])
    self.assertEqual(metric_log.read_metrics(self.workdir),
                     [_strict_json(line) for line in self._lines()])
    self.assertIsInstance(metric_log.read_metrics(self.workdir)[0]['step'], int)

  def test_non_finite_values_round_trip_as_strings(self):
    with metric_log.MetricLog(self.workdir) as log:
      log.write({'step': 1, 'split': 'test', 'a': math.nan,
                 'b': np.float32('inf'), 'c': -math.inf})
    self.assertEqual(
        _strict_json(self._lines()[0]),
        {'step': 1, 'split': 'test', 'a': 'nan', 'b': 'inf', 'c': '-inf'})
    (record,) = metric_log.read_metrics(self.workdir)
    self.assertTrue(math.isnan(record['a']))
    self.assertEqual((record['b'], record['c']), (math.inf, -math.inf))
    self.assertEqual(record['split'], 'test')

  def test_numeric_fields_go_to_tensorboard(self):
    log = metric_log.MetricLog(self.workdir)
    log.write({'step': 5, 'split': 'train', 'loss': 2.5, 'tokens': 40})
    log.write({'step': 9, 'split': 'train', 'loss': 0.1, 'tokens': 41})
    log.write({'step': 9, 'split': 'valid', 'loss': math.nan})
    log.close()  # tensorboardX writes from a thread; close() drains it.
    acc = event_accumulator.EventAccumulator(
        os.path.join(self.workdir, 'tensorboard'))
    acc.Reload()
    self.assertCountEqual(acc.Tags()['scalars'],
                          ['train/loss', 'train/tokens', 'valid/loss'])
    train_loss = acc.Scalars('train/loss')
    self.assertEqual([e.step for e in train_loss], [5, 9])
    np.testing.assert_array_equal([e.value for e in train_loss],
                                  np.float32([2.5, 0.1]))
    self.assertEqual([e.value for e in acc.Scalars('train/tokens')], [40, 41])
    self.assertTrue(math.isnan(acc.Scalars('valid/loss')[0].value))
    self.assertLen(metric_log.read_metrics(self.workdir), 3)

  def test_a_second_log_in_the_same_second_keeps_the_first_ones_scalars(self):
    # tensorboardX names event files by the second: freeze the clock.
    with mock.patch('time.time', return_value=1.7e9):
      for step in (1, 2):
        with metric_log.MetricLog(self.workdir) as log:
          log.write({'step': step, 'split': 'train', 'loss': float(step)})
    acc = event_accumulator.EventAccumulator(
        os.path.join(self.workdir, 'tensorboard'))
    acc.Reload()
    self.assertEqual([(e.step, e.value) for e in acc.Scalars('train/loss')],
                     [(1, 1.0), (2, 2.0)])

  def test_truncate_after_drops_later_steps_then_appends(self):
    with metric_log.MetricLog(self.workdir) as log:
      for step in range(1, 6):
        log.write({'step': step, 'split': 'train', 'loss': float(step)})
        log.write({'step': step, 'split': 'valid', 'loss': -float(step)})
      log.truncate_after(3)
      log.write({'step': 4, 'split': 'train', 'loss': 40.0})
    records = metric_log.read_metrics(self.workdir)
    self.assertEqual([(r['step'], r['split']) for r in records],
                     [(1, 'train'), (1, 'valid'), (2, 'train'), (2, 'valid'),
                      (3, 'train'), (3, 'valid'), (4, 'train')])
    self.assertEqual(records[-1]['loss'], 40.0)
    # The rewrite went through a temporary file that is gone.
    self.assertCountEqual(os.listdir(self.workdir),
                          ['metrics.jsonl', 'tensorboard'])

  def test_partial_last_line_is_dropped_with_a_warning(self):
    with metric_log.MetricLog(self.workdir) as log:
      log.write({'step': 1, 'split': 'train', 'loss': 1.0})
      log.write({'step': 2, 'split': 'train', 'loss': 2.0})
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write('{"step": 3, "split": "tr')  # A crash mid-write.

    with self.assertLogs('absl', 'WARNING') as logs:
      self.assertEqual([r['step'] for r in metric_log.read_metrics(
          self.workdir)], [1, 2])
    self.assertIn('partial last line', logs.output[0])

    # Resuming repairs the file, so the next record starts on its own line.
    with self.assertLogs('absl', 'WARNING'):
      log = metric_log.MetricLog(self.workdir)
    log.write({'step': 3, 'split': 'train', 'loss': 3.0})
    log.close()
    self.assertEqual([_strict_json(line)['step'] for line in self._lines()],
                     [1, 2, 3])

  def test_truncate_after_tolerates_partial_last_line(self):
    log = metric_log.MetricLog(self.workdir)
    log.write({'step': 1, 'split': 'train', 'loss': 1.0})
    log.write({'step': 2, 'split': 'train', 'loss': 2.0})
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write('{"step": 3, "split": "tr')
    with self.assertLogs('absl', 'WARNING'):
      log.truncate_after(5)
    log.write({'step': 3, 'split': 'train', 'loss': 3.0})
    log.close()
    self.assertEqual([_strict_json(line)['step'] for line in self._lines()],
                     [1, 2, 3])

  def test_corrupt_complete_line_is_an_error(self):
    with open(self.path, 'w', encoding='utf-8') as f:
      f.write('{"step": 1, "split": "train"}\n{"step": 2, "spl\n')
    # A user error (one block from the launchers), naming file and line.
    with self.assertRaisesRegex(errors.RunError,
                                r'metrics\.jsonl:2: corrupt.*not JSON'):
      metric_log.read_metrics(self.workdir)

  def test_bad_records_write_nothing(self):
    bad = [
        ({'split': 'train', 'loss': 1.0}, ValueError, 'step and split'),
        ({'step': 1, 'split': 'eval'}, ValueError, "'eval'"),
        ({'step': 1.0, 'split': 'train'}, TypeError, "'step'"),
        ({'step': 1, 'split': 'train', 'x': 'a'}, TypeError, "'x'"),
        ({'step': 1, 'split': 'train', 'x': [1.0]}, TypeError, "'x'"),
        ({'step': 1, 'split': 'train', 'x': True}, TypeError, "'x'"),
    ]
    with metric_log.MetricLog(self.workdir) as log:
      for record, error, message in bad:
        with self.assertRaisesRegex(error, message):
          log.write(record)
    self.assertEqual(self._lines(), [])
    acc = event_accumulator.EventAccumulator(
        os.path.join(self.workdir, 'tensorboard'))
    acc.Reload()
    self.assertEqual(acc.Tags()['scalars'], [])


if __name__ == '__main__':
  absltest.main()
