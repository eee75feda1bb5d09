"""Tests for twr_jax.tfds_data: TFDS builders and readers without TensorFlow."""

import contextlib
import functools
import hashlib
import http.server
import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from twr_jax import tasks
from twr_jax import tfds_data
from twr_jax.core import text
from twr_jax.lm import data as datasets
from twr_jax.lm import input_pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared' / 'data'


def write_files(directory, files):
  """Writes {name: bytes} into `directory` (created); returns it."""
  directory.mkdir(parents=True, exist_ok=True)
  for name, data in files.items():
    (directory / name).write_bytes(data)
  return directory


def random_lines(rng, n, label=False):
  """`n` random sentences with mixed case and the tokeniser's marks."""
  words = ['The', 'cat', "dog's", 'sat', 'on', 'a', 'mat', '...', ',', 'N',
           '<unk>', 'Runs', 'fast', '!', '?', 'u.s.', 'x']
  lines = []
  for _ in range(n):
    line = ' '.join(rng.choice(words, size=rng.integers(1, 20)))
    if label:
      line = f'{rng.integers(0, 5)}\t{line}'
    lines.append(line)
  return lines


def corpus_files(pattern, label=False, seed=0, sizes=(120, 30, 30)):
  """Split files with all three line terminators, as {name: bytes}."""
  rng = np.random.default_rng(seed)
  files = {}
  for split, n, end in zip(tfds_data.SPLITS, sizes, ('\n', '\r\n', '\r')):
    lines = random_lines(rng, n, label)
    files[pattern.format(split=split)] = end.join(lines).encode() + b'\n'
  return files


@pytest.fixture(scope='module')
def ptb_dir(tmp_path_factory):
  """TFDS data dir with the full PTB prepared from shared/data/ptb."""
  data_dir = tmp_path_factory.mktemp('tfds')
  tfds_data.prepare('ptb', data_dir, SHARED / 'ptb')
  return data_dir


def test_ptb_equals_text_reader(ptb_dir):
  lines = tfds_data.load_lm_lines('ptb', ptb_dir, manual_dir=SHARED / 'ptb')
  expected = text.read_corpus(SHARED / 'ptb')
  assert {k: len(v) for k, v in lines.items()} == {
      'train': 42068, 'valid': 3370, 'test': 3761
  }
  assert lines == expected
  # Once prepared, the manual dir is no longer needed, and plain TFDS finds
  # the registered builder by its name.
  assert tfds_data.load_lm_lines('ptb', ptb_dir, ('valid',)) == {
      'valid': expected['valid']
  }
  source = tfds.data_source('ptb', split='test', data_dir=ptb_dir)
  assert len(source) == 3761
  assert source[3760]['text'].decode() == expected['test'][-1]


@pytest.mark.parametrize('name, pattern, strip_label', [
    ('ptb', '{split}.txt', False),
    ('yahoo', 'yahoo.{split}.txt', False),
    ('yelp', 'yelp.{split}.txt', True),
    ('yelp', 'yelp.{split}.txt', False),
])
def test_tfds_source_gives_the_text_sources_batches(
    tmp_path, name, pattern, strip_label):
  manual = write_files(tmp_path / 'manual',
                       corpus_files(pattern, label=name == 'yelp'))
  config = default.get_config()
  config.data.update(dir=str(manual), file_pattern=pattern,
                     strip_label=strip_label, bucket_size=4)
  from_text = datasets.load(config)
  config.data.update(source='tfds', tfds_name=name,
                     tfds_dir=str(tmp_path / 'tfds'))
  tasks.validate(config)
  from_tfds = datasets.load(config)

  assert from_tfds.vocab.tokens == from_text.vocab.tokens
  for split in tfds_data.SPLITS:
    assert len(from_tfds.splits[split]) == len(from_text.splits[split])
    for a, b in zip(from_tfds.splits[split], from_text.splits[split]):
      np.testing.assert_array_equal(a, b)
  batchers = [
      input_pipeline.Batcher(d.splits['train'], 8, 4, seed=3)
      for d in (from_tfds, from_text)
  ]
  # Two epochs and a bit, so that the per-epoch reshuffle is compared too.
  for step in range(2 * batchers[0].num_batches + 3):
    a, b = (batcher.train_batch(step) for batcher in batchers)
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_yelp_records_and_label_stripping(tmp_path):
  lines = [
      '3\tgreat food , slow service',
      '+1   leading spaces  kept  inside ',
      '-2 x',
  ]
  manual = write_files(tmp_path / 'manual', {
      f'yelp.{split}.txt': '\n'.join(lines).encode() + b'\n'
      for split in tfds_data.SPLITS
  })
  builder = tfds_data.prepare('yelp', tmp_path / 'tfds', manual)
  records = builder.as_data_source(split='valid')
  assert [r['label'] for r in records] == [3, 1, -2]
  assert [r['line'].decode() for r in records] == lines
  assert [r['text'].decode() for r in records] == [
      'great food , slow service', 'leading spaces  kept  inside ', 'x'
  ]
  for strip_label in (True, False):
    assert tfds_data.load_lm_lines(
        'yelp', tmp_path / 'tfds', manual_dir=manual, strip_label=strip_label
    ) == text.read_corpus(
        manual, 'yelp.{split}.txt', strip_label=strip_label
    )
  with pytest.raises(ValueError, match="'ptb' has no label column"):
    tfds_data.load_lm_lines('ptb', tmp_path / 'tfds', strip_label=True)


def test_dailydialog_real_valid_and_test(tmp_path, caplog):
  # No train file: DailyDialog's train split is 6 MB, and a missing split is
  # what this test checks besides.
  manual = tmp_path / 'manual'
  manual.mkdir()
  for split in ('valid', 'test'):
    (manual / f'{split}.utts.txt').symlink_to(
        SHARED / 'dailydialog' / f'{split}.utts.txt')
  with caplog.at_level(logging.WARNING):
    valid = tfds_data.load_dialogues('daily_dialog', tmp_path / 'tfds',
                                     'valid', manual)
  assert re.search(r"no train\.utts\.txt in .*split 'train' is skipped",
                   caplog.text)
  test = tfds_data.load_dialogues('daily_dialog', tmp_path / 'tfds', 'test')
  assert len(valid) == len(test) == 1000
  assert valid[0] == {'utterances': [
      'Good morning , sir . Is there a bank near here ? ',
      ' There is one . 5 blocks away from here ? ',
      " Well , that's too far.Can you change some money for me ? ",
      ' Surely , of course . What kind of currency have you got ? ',
      ' RIB . ',
      ' How much would you like to change ? ',
      ' 1000 Yuan.Here you are . ',
  ]}
  assert sum(len(d['utterances']) for d in test) == (
      (SHARED / 'dailydialog' / 'test.utts.txt').read_text('utf-8').count(
          '__eou__'))
  with pytest.raises(text.DataError, match="no split 'train'.*train.utts.txt"):
    tfds_data.load_dialogues('daily_dialog', tmp_path / 'tfds', 'train')


def test_switchboard_real_valid_and_test(tmp_path, caplog):
  # shared/data/switchboard has no train.jsonl: that split is skipped.
  with caplog.at_level(logging.WARNING):
    valid = tfds_data.load_dialogues('switchboard', tmp_path, 'valid',
                                     SHARED / 'switchboard')
  assert re.search(r"no train\.jsonl in .*split 'train' is skipped",
                   caplog.text)
  test = tfds_data.load_dialogues('switchboard', tmp_path, 'test')
  assert (len(valid), len(test)) == (60, 62)
  first = valid[0]
  assert first['topic'] == '"MUSIC"'
  assert first['callers'][:3] == ['A', 'B', 'A']
  assert first['utterances'][:3] == [
      'favorite type of music or musician or any',
      "i don't really have a favorite type i like a lot of different types"
      ' of music',
      'do you',
  ]
  assert first['acts'][:3] == [
      'open-question', 'statement-non-opinion', 'yes-no-question'
  ]
  for dialogue in valid + test:
    assert len(dialogue['callers']) == len(dialogue['utterances']) == len(
        dialogue['acts'])
  assert [sum(len(d['utterances']) for d in s) for s in (valid, test)] == [
      5225, 5543
  ]


_SW_OK = json.dumps({
    'A': {}, 'B': {}, 'topic': 'T', 'prompt': 'P',
    'utts': [['A', 'hi', ['greeting', [0.0, 1.0, 0.0, 0.0]]]],
}).encode()


@pytest.mark.parametrize('name, file, data, error', [
    ('ptb', 'train.txt', b'a b\n\nc\n', r'train\.txt:2: line is blank'),
    ('ptb', 'test.txt', b'ok\n\xff\n', r'test\.txt:2: invalid UTF-8'),
    ('yelp', 'yelp.valid.txt', b'1\tgood\nfive\tbad\n',
     r'yelp\.valid\.txt:2: expected an integer label'),
    ('yelp', 'yelp.valid.txt', b'1\tgood\n3 \n',
     r'yelp\.valid\.txt:2: line holds a label but no text'),
    ('yelp', 'yelp.train.txt', b'99999999999999999999 x\n',
     r'yelp\.train\.txt:1: label 9+ does not fit in 64 bits'),
    ('switchboard', 'valid.jsonl', _SW_OK + b'\n{"topic": \n',
     r'valid\.jsonl:2: invalid JSON: Expecting value at column 11'),
    ('switchboard', 'test.jsonl', b'[1, 2]\n',
     r'test\.jsonl:1: expected a JSON object, got list'),
    ('switchboard', 'test.jsonl', _SW_OK.replace(b'"topic"', b'"topik"'),
     r"test\.jsonl:1: key 'topic' is missing"),
    ('switchboard', 'test.jsonl', _SW_OK.replace(b'["A"', b'["C"'),
     r'test\.jsonl:1: utts\[0\] = \["C", "hi"'),
    ('daily_dialog', 'valid.utts.txt', b'hi __eou__ there\n',
     r"valid\.utts\.txt:1: text after the last __eou__: ' there'"),
])
def test_malformed_input_names_file_and_line(tmp_path, name, file, data,
                                             error):
  manual = write_files(tmp_path / 'manual', {file: data})
  with pytest.raises(text.DataError, match=re.escape(str(manual)) + '/' +
                     error):
    tfds_data.prepare(name, tmp_path / 'tfds', manual)
  # A failed build leaves nothing that a later call would take as prepared.
  assert not (tmp_path / 'tfds' / name / '1.0.0').exists()


def test_manual_dir_without_files_names_the_dir(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'notes.txt').write_text('not a split file')
  with pytest.raises(text.DataError,
                     match=f'{re.escape(str(empty))}: none of the switchboard'
                     r' files \(train\.jsonl, valid\.jsonl, test\.jsonl\)'):
    tfds_data.load_dialogues('switchboard', tmp_path / 'tfds', 'test', empty)
  with pytest.raises(text.DataError, match='manual directory not found'):
    tfds_data.prepare('ptb', tmp_path / 'tfds', tmp_path / 'missing')
  # The same through plain TFDS, for a corpus that cannot be downloaded.
  builder = tfds_data.Yahoo(data_dir=tmp_path / 'tfds',
                            file_format='array_record')
  with pytest.raises(text.DataError, match=re.escape(str(empty))):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=empty))
  with pytest.raises(ValueError, match="unknown dataset 'wiki'.*'ptb'"):
    tfds_data.load_lm_lines('wiki', tmp_path / 'tfds')
  with pytest.raises(ValueError, match="unknown dataset 'switchboard'"):
    tfds_data.load_lm_lines('switchboard', tmp_path / 'tfds')


def test_changed_source_files_are_prepared_again(tmp_path):
  manual = write_files(tmp_path / 'manual', corpus_files('{split}.txt'))
  first = tfds_data.load_lm_lines('ptb', tmp_path / 'tfds', manual_dir=manual)
  info = tmp_path / 'tfds' / 'ptb' / '1.0.0' / 'dataset_info.json'
  stamp = info.stat().st_mtime_ns
  assert tfds_data.load_lm_lines('ptb', tmp_path / 'tfds',
                                 manual_dir=manual) == first
  assert info.stat().st_mtime_ns == stamp  # Same files: not prepared again.
  with open(manual / 'valid.txt', 'ab') as f:
    f.write(b'one more line\n')
  again = tfds_data.load_lm_lines('ptb', tmp_path / 'tfds', manual_dir=manual)
  assert again['valid'] == first['valid'] + ['one more line']
  assert again == text.read_corpus(manual)
  # Without a manual dir, the data prepared last is read as it is.
  assert tfds_data.load_lm_lines('ptb', tmp_path / 'tfds') == again


@contextlib.contextmanager
def serve(directory):
  """Serves `directory` over HTTP on localhost; yields the base URL."""

  class Handler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
      # Every request would be logged to stderr; keep the test output clean.
      pass

  handler = functools.partial(Handler, directory=str(directory))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f'http://127.0.0.1:{server.server_port}'
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


def sha256(data):
  return hashlib.sha256(data).hexdigest()


def test_ptb_download_is_checked_against_sha256(tmp_path, monkeypatch):
  # The real URLs cannot be reached here: serve small stand-ins locally.
  files = corpus_files('ptb.{split}.txt')
  write_files(tmp_path / 'www', files)
  with serve(tmp_path / 'www') as url:
    monkeypatch.setattr(tfds_data.Ptb, 'URLS', {
        split: f'{url}/ptb.{split}.txt' for split in tfds_data.SPLITS
    })
    monkeypatch.setattr(tfds_data.Ptb, 'SHA256', {
        split: sha256(files[f'ptb.{split}.txt'])
        for split in tfds_data.SPLITS
    })
    lines = tfds_data.load_lm_lines('ptb', tmp_path / 'tfds')
    assert lines == text.read_corpus(tmp_path / 'www', 'ptb.{split}.txt')
    monkeypatch.setitem(tfds_data.Ptb.SHA256, 'valid', '0' * 64)
    with pytest.raises(text.DataError,
                       match="'valid' file has sha256 [0-9a-f]{64}, expected"
                       ' 0{64}'):
      tfds_data.load_lm_lines('ptb', tmp_path / 'tfds2')


def test_dailydialog_download_extracts_the_inner_zips(tmp_path, monkeypatch):
  # The layout of ijcnlp_dailydialog.zip: one zip per split inside it.
  dialogues = {
      'train': b'a __eou__ b __eou__\nc __eou__ d __eou__ e __eou__\n',
      'validation': b'f __eou__ g __eou__\n',
      'test': b'h __eou__ i __eou__ \n',
  }
  archive = tmp_path / 'www' / 'ijcnlp_dailydialog.zip'
  archive.parent.mkdir()
  with zipfile.ZipFile(archive, 'w') as outer:
    for name, data in dialogues.items():
      inner = tmp_path / f'{name}.zip'
      with zipfile.ZipFile(inner, 'w') as z:
        z.writestr(f'{name}/dialogues_{name}.txt', data)
      outer.write(inner, f'ijcnlp_dailydialog/{name}.zip')
  with serve(archive.parent) as url:
    monkeypatch.setattr(tfds_data.DailyDialog, 'URLS',
                        {'archive': f'{url}/{archive.name}'})
    monkeypatch.setattr(tfds_data.DailyDialog, 'SHA256', {
        'train': sha256(dialogues['train']),
        'valid': sha256(dialogues['validation']),
        'test': sha256(dialogues['test']),
    })
    train = tfds_data.load_dialogues('daily_dialog', tmp_path / 'tfds',
                                     'train')
  assert train == [{'utterances': ['a ', ' b ']},
                   {'utterances': ['c ', ' d ', ' e ']}]
  test = tfds_data.load_dialogues('daily_dialog', tmp_path / 'tfds', 'test')
  assert test == [{'utterances': ['h ', ' i ']}]


_WITHOUT_TENSORFLOW = """
import importlib.util
import json
import sys

from twr_jax import tfds_data

data_dir, yelp, dailydialog = sys.argv[1:]
lines = tfds_data.load_lm_lines('yelp', data_dir, manual_dir=yelp,
                                strip_label=True)
dialogues = tfds_data.load_dialogues('daily_dialog', data_dir, 'valid',
                                     dailydialog)
print(json.dumps({
    'lines': lines,
    'num_dialogues': len(dialogues),
    'tensorflow_installed': importlib.util.find_spec('tensorflow') is not None,
    'tensorflow_modules': [m for m in sys.modules
                           if m.partition('.')[0] == 'tensorflow'],
}))
"""


def test_builds_and_reads_without_tensorflow(tmp_path):
  # In a fresh interpreter, so that no other test's imports count.
  yelp = write_files(tmp_path / 'yelp',
                     corpus_files('yelp.{split}.txt', label=True))
  dailydialog = tmp_path / 'dailydialog'
  dailydialog.mkdir()
  (dailydialog / 'valid.utts.txt').symlink_to(
      SHARED / 'dailydialog' / 'valid.utts.txt')
  result = subprocess.run(
      [sys.executable, '-c', _WITHOUT_TENSORFLOW, str(tmp_path / 'tfds'),
       str(yelp), str(dailydialog)],
      capture_output=True, text=True, cwd=REPO, check=False,
      env={**os.environ, 'PYTHONPATH': str(REPO)},
  )
  assert result.returncode == 0, result.stderr
  # TFDS prints progress messages to stdout before the result.
  out = json.loads(result.stdout.splitlines()[-1])
  # The project must run where TensorFlow is absent, so it is not installed
  # here; and where it is installed, building and reading must not load it.
  assert not out['tensorflow_installed']
  assert out['tensorflow_modules'] == []
  assert out['lines'] == text.read_corpus(yelp, 'yelp.{split}.txt',
                                          strip_label=True)
  assert out['num_dialogues'] == 1000


def test_config_checks_require_tfds_name():
  config = default.get_config()
  config.data.source = 'tfds'
  with pytest.raises(ValueError, match='config.data.tfds_name is empty'):
    tasks.validate(config)
  config.data.tfds_name = 'ptb'
  tasks.validate(config)
