"""Tests for twr_jax.summary, read back with TensorBoard's own readers."""

import math
import os
import tempfile
import time

from absl.testing import absltest
import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

from twr_jax import summary


def _scalars(logdir):
  """{tag: [(step, value), ...]} as TensorBoard's accumulator sees them."""
  acc = event_accumulator.EventAccumulator(logdir)
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()['scalars']}


class Crc32cTest(absltest.TestCase):

  def test_check_value(self):
    self.assertEqual(summary.crc32c(b'123456789'), 0xE3069283)
    self.assertEqual(summary.crc32c(b''), 0)

  def test_masked_crc_matches_tensorboard(self):
    rng = np.random.default_rng(0)
    for size in (1, 8, 31, 200):
      data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
      self.assertEqual(summary._masked_crc32c(data),
                       pywrap_tensorflow.masked_crc32c(data))


class SummaryWriterTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Not self.create_tempdir(): that needs absl flags, unparsed under pytest.
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.logdir = tmp.name

  def test_scalars_read_back_by_tensorboard(self):
    written = {
        'train/loss': [(0, 3.25), (10, 0.1), (2**40, -7e-8)],
        'valid/ppl': [(5, 1e40), (6, -math.inf), (7, 123456.789)],
    }
    with summary.SummaryWriter(self.logdir) as writer:
      for tag, points in written.items():
        for step, value in points:
          writer.scalar(tag, value, step)
    # 1e40 is past float32's range and comes back as inf.
    expected = {'train/loss': [3.25, 0.1, -7e-8],
                'valid/ppl': [math.inf, -math.inf, 123456.789]}
    read = _scalars(self.logdir)
    self.assertEqual(sorted(read), sorted(written))
    for tag, points in written.items():
      self.assertEqual([s for s, _ in read[tag]], [s for s, _ in points])
      np.testing.assert_array_equal(np.float32([v for _, v in read[tag]]),
                                    np.float32(expected[tag]))

  def test_event_fields(self):
    with summary.SummaryWriter(self.logdir) as writer:
      writer.scalar('test/nll', np.float64(2.5), np.int64(3))
      writer.scalar('test/nan', math.nan, -1)
    name = os.path.basename(writer.path)
    self.assertEqual(os.listdir(self.logdir), [name])
    self.assertRegex(name, r'^events\.out\.tfevents\.\d+\.')
    first, nll, nan = event_file_loader.LegacyEventFileLoader(
        writer.path).Load()
    self.assertEqual(first.file_version, 'brain.Event:2')
    self.assertEqual((nll.step, nll.summary.value[0].tag), (3, 'test/nll'))
    self.assertEqual(nll.summary.value[0].simple_value, 2.5)
    self.assertAlmostEqual(nll.wall_time, time.time(), delta=60)
    self.assertEqual(nan.step, -1)
    self.assertTrue(math.isnan(nan.summary.value[0].simple_value))

  def test_flush_makes_records_readable_before_close(self):
    writer = summary.SummaryWriter(self.logdir)
    writer.scalar('train/kl', 1.0, 1)
    writer.flush()
    self.assertEqual(_scalars(self.logdir), {'train/kl': [(1, 1.0)]})
    writer.close()
    writer.close()  # Idempotent.

  def test_second_writer_in_same_logdir_keeps_first_writers_scalars(self):
    for step in (1, 2):
      with summary.SummaryWriter(self.logdir) as writer:
        writer.scalar('train/loss', float(step), step)
    self.assertEqual(_scalars(self.logdir),
                     {'train/loss': [(1, 1.0), (2, 2.0)]})


if __name__ == '__main__':
  absltest.main()
