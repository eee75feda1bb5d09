"""launch.generate / launch.interpolate on tiny trained runs (issue 16 item 5,
issue 13 case 4): responses to contexts of your own, sentences and pairs from
files, decoding options checked before any work."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.dialogue import task_test as dtt
from tests import train_test
from twr_jax import errors
from twr_jax import tasks
from twr_jax import train
from twr_jax.core import decoding
from twr_jax.core import metric_log
from twr_jax.dialogue import data as dialogue_data
from twr_jax.dialogue import decoding as dialogue_decoding
from twr_jax.dialogue import generate as dialogue_generate
from twr_jax.dialogue import metrics as dialogue_metrics
from twr_jax.dialogue import report as dialogue_eval
from twr_jax.lm import generate
from twr_jax.lm import interpolate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(module, *args, stdin=None):
  """Runs a launcher; returns (exit code, stdout, stderr)."""
  out = subprocess.run(
      [sys.executable, '-m', f'launch.{module}', *args], cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=ROOT), input=stdin, capture_output=True,
      text=True)
  return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope='module')
def dd_run(tmp_path_factory):
  """A tiny DailyDialog-format run (20 steps: responses end with </s>)."""
  folder = tmp_path_factory.mktemp('dd_gen')
  data_dir = dtt.write_dailydialog(str(folder / 'data'))
  workdir = str(folder / 'run')
  config = dtt.tiny_config(data_dir, **{'train.num_steps': 20,
                                        'train.eval_every_steps': 20})
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope='module')
def lm_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('lm_gen') / 'run')
  # One bucket: fewer programs, and multihost_test's single-process run is
  # this same config (its programs come from the compilation cache).
  train.train_and_evaluate(train_test.tiny_config(**train_test.ONE_BUCKET),
                           workdir)
  return workdir


# --- contexts ---------------------------------------------------------------


def test_read_contexts_strings_floors_and_stdin(tmp_path, monkeypatch):
  path = tmp_path / 'c.jsonl'
  path.write_text('["Hi!", "fine"]\n\n'
                  '[{"text": "a", "floor": 1}, {"text": "b", "floor": 1}]\n')
  assert dialogue_generate.read_contexts(str(path)) == [
      [('Hi!', None), ('fine', None)], [('a', 1), ('b', 1)]]
  monkeypatch.setattr(sys, 'stdin', __import__('io').StringIO('["x"]\n'))
  assert dialogue_generate.read_contexts('-') == [[('x', None)]]


@pytest.mark.parametrize('line, message', [
    ('["a"', ':2: invalid JSON'),
    ('[]', ':2: expected a non-empty JSON list'),
    ('"a b"', ':2: expected a non-empty JSON list'),
    ('[3]', ':2: turn 0 is a int'),
    ('[{"txt": "a"}]', ":2: turn 0 has unknown keys ['txt']"),
    ('[{"text": "a", "floor": 2}]', ':2: turn 0 has floor 2'),
    ('[{"text": "a", "floor": true}]', ':2: turn 0 has floor True'),
    ('[{"text": "a", "floor": 0}, "b"]', ':2: floors on some turns only'),
])
def test_read_contexts_errors_name_file_and_line(tmp_path, line, message):
  path = tmp_path / 'c.jsonl'
  path.write_text('["fine"]\n' + line + '\n')
  with pytest.raises(errors.DataError, match=re.escape(f'{path}{message}')):
    dialogue_generate.read_contexts(str(path))


def test_read_contexts_empty_file(tmp_path):
  path = tmp_path / 'c.jsonl'
  path.write_text('\n')
  with pytest.raises(errors.DataError, match='no context'):
    dialogue_generate.read_contexts(str(path))


def test_contexts_become_the_evaluators_examples(dd_run):
  """A test dialogue's first j turns, given as a context, is the evaluation
  example of response turn j + 1: same turns, lengths and floors, with the
  window cutting long contexts (window 5: at most 4 turns, bod dropped)."""
  run = tasks.load_run(dd_run)
  dialogues = dialogue_data.read_split(run.config, 'test')
  examples = dialogue_data.eval_examples(dialogues, run.vocab, 5, 12)
  long = next(d for d, dialogue in enumerate(dialogues)
              if len(dialogue.utterances) >= 6)
  checked = 0
  for ex in examples:
    if ex.dialogue != long:
      continue
    turns = list(dialogues[long].utterances[:ex.turn - 1])
    for floors in (None, dialogues[long].floors[:ex.turn - 1]):
      context = ([(t, None) for t in turns] if floors is None
                 else list(zip(turns, floors)))
      [mine] = dialogue_generate.context_examples([context], run.vocab, 5, 12)
      np.testing.assert_array_equal(mine.context, ex.context)
      np.testing.assert_array_equal(mine.context_lens, ex.context_lens)
      np.testing.assert_array_equal(mine.floors, ex.floors)
      checked += 1
  assert checked >= 8  # Short and cut (> 4 turns) contexts, both floor kinds.


def test_respond_greedy_and_sampled(dd_run):
  run = tasks.load_run(dd_run)
  contexts = [[('hello how are you', None)],
              [('i like tea', 0), ('do you want some', 1)]]
  greedy = dialogue_generate.respond(run, contexts, num=3, max_len=8, seed=1)
  assert [len(r['responses']) for r in greedy] == [3, 3]
  # The model's view of the context: bod turn, then the tokenised turns.
  assert greedy[1]['context'] == ['<d>', 'i like tea', 'do you want some']
  # Greedy = the evaluator's decoding of the same examples and key.
  examples = dialogue_generate.context_examples(contexts, run.vocab, 5, 12)
  tokens, _ = dialogue_decoding.sample_examples(
      run.model, run.params, examples, run.vocab, jax.random.key(1),
      num_samples=3, max_len=8, batch_size=2, window=5, max_utt_len=12)
  assert greedy[0]['responses'] == [' '.join(run.vocab.decode(t))
                                    for t in tokens[0]]
  # A context's responses do not depend on the other contexts.
  assert dialogue_generate.respond(run, contexts[:1], num=3, max_len=8,
                          seed=1) == greedy[:1]
  sampled = dialogue_generate.respond(run, contexts, num=3, decoder='sample',
                                      max_len=8, temperature=1.0, seed=1)
  assert sampled == dialogue_generate.respond(
      run, contexts, num=3, decoder='sample', max_len=8, temperature=1.0,
      seed=1)
  assert sampled != greedy
  for r in sampled:
    assert all('<pad>' not in s and '<s>' not in s for s in r['responses'])
  # Temperature 0 is greedy.
  assert dialogue_generate.respond(run, contexts, num=3, decoder='sample',
                                   max_len=8, temperature=0.0,
                                   seed=1) == greedy
  assert dialogue_generate.respond(run, contexts, num=0) == []


def test_decode_responses_tail_and_prefix(dd_run):
  """Full-length greedy decoding equals sample_responses up to </s>, and
  keeps the decoder's own tokens after it (the original's, SPEC B.6)."""
  run = tasks.load_run(dd_run)
  examples = dialogue_data.eval_examples(
      dialogue_data.read_split(run.config, 'test'), run.vocab, 5, 12)[:8]
  batch = dialogue_data.make_batch(examples, run.vocab, 8, window=5,
                                   max_utt_len=12)
  key, ids = jax.random.key(4), dict(bos_id=run.vocab.bos_id,
                                     eos_id=run.vocab.eos_id)
  short, short_len = dialogue_decoding.sample_responses(run.model, run.params,
                                                     batch, key, 3, 10, **ids)
  tail, tail_len = dialogue_decoding.decode_responses(
      run.model, run.params, batch, key, 3, 10, keep_tail=True, **ids)
  cut, _ = dialogue_decoding.decode_responses(run.model, run.params, batch, key,
                                          3, 10, **ids)
  np.testing.assert_array_equal(short, cut)
  np.testing.assert_array_equal(short_len, tail_len)
  tail, short = np.asarray(tail), np.asarray(short)
  eos = run.vocab.eos_id
  ended = np.cumsum(np.cumsum(short == eos, -1), -1) > 1  # After first </s>.
  assert ended.any()
  np.testing.assert_array_equal(tail[~ended], short[~ended])
  assert (tail[ended] != dialogue_data.PAD).any()


def test_evaluator_gives_the_paper_metrics_full_decodes(dd_run, monkeypatch,
                                                       tmp_path):
  """Audit (SPEC B.7): the paper metrics receive every decoded token, </s>
  and, when the BOW metrics are computed, the post-</s> tail included;
  before, `vocab.decode` cut each hypothesis at </s> and dropped <pad>/<s>,
  so paper BLEU lost its </s> unigram and paper BOW scored cut decodes."""
  run = tasks.load_run(dd_run)
  vectors = tmp_path / 'vectors.txt'
  vectors.write_text(''.join(f'{w} 0.5 {i % 3 - 1}\n'
                             for i, w in enumerate(run.vocab.tokens[4:])))
  seen = {}
  real = dialogue_metrics.score_responses

  def spy(hypotheses, references, *args, **kwargs):
    seen.update(hypotheses=hypotheses, references=references)
    return real(hypotheses, references, *args, **kwargs)

  monkeypatch.setattr(dialogue_metrics, 'score_responses', spy)
  result = dialogue_eval.evaluate_run(dd_run, 'test', num_samples=3,
                                      max_len=10, max_contexts=8,
                                      word_vectors=str(vectors))
  assert result['paper_tail'] is True
  examples = dialogue_data.eval_examples(
      dialogue_data.read_split(run.config, 'test'), run.vocab, 5, 12)[:8]
  key = jax.random.fold_in(jax.random.key(run.config.seed), 3)
  tokens, _ = dialogue_decoding.sample_examples(
      run.model, run.params, examples, run.vocab, key, num_samples=3,
      max_len=10, batch_size=run.config.eval.sample_batch_size, window=5,
      max_utt_len=12, keep_tail=True)
  want = [[[run.vocab.tokens[i] for i in s] for s in c] for c in tokens]
  assert seen['hypotheses'] == want
  assert all(len(h) == 10 for c in seen['hypotheses'] for h in c)
  assert any('</s>' in h[:-1] for c in seen['hypotheses'] for h in c)
  # References: the response words, as the original's (OOV -> <unk>).
  assert seen['references'] == [run.vocab.decode(ex.response)
                                for ex in examples]


# --- options ----------------------------------------------------------------


# A launcher takes seconds to start (it imports every task), so one
# subprocess per launcher and kind of check shows that the options are
# checked before the workdir is read; the other values' messages are checked
# in-process, in the functions the launchers call with their flags.
@pytest.mark.parametrize('module, args, message', [
    ('generate', ['--num=-1'], 'num=-1: must be an integer >= 0'),
    ('generate', ['--contexts_file=x', '--decode=beam'],
     "decode='beam': must be one of greedy, sample"),
    ('interpolate', ['--points=1'], 'points=1: must be an integer >= 2'),
])
def test_bad_options_are_rejected_before_loading(tmp_path, module, args,
                                                 message):
  # The workdir does not exist: the option is checked first. Which decoders
  # a run offers depends on its task: that needs (only) its config.json.
  workdir = tmp_path / 'none'
  if '--contexts_file=x' in args:
    from configs import dailydialog  # pylint: disable=g-import-not-at-top
    workdir.mkdir()
    (workdir / 'config.json').write_text(
        dailydialog.get_config('tiny').to_json())
  code, _, err = launch(module, f'--workdir={workdir}', *args)
  assert code != 0 and message in err


@pytest.mark.parametrize('kwargs, message', [
    (dict(max_len=0), 'max_len=0: must be an integer >= 1'),
    (dict(temperature=-0.5), 'temperature=-0.5: must be a finite number >= 0'),
    (dict(temperature=float('nan')),
     'temperature=nan: must be a finite number >= 0'),
    (dict(beam_size=0), 'beam_size=0: must be an integer >= 1'),
])
def test_bad_decoding_options_name_the_option(kwargs, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    decoding.check_options(**kwargs)


@pytest.mark.parametrize('option, value, message', [
    ('num_pairs', 0, 'pairs=0: must be an integer >= 1'),
    ('max_len', 0, 'max_len=0: must be an integer >= 1'),
    ('show', -1, 'show=-1: must be an integer >= 0'),
])
def test_bad_interpolation_options_name_the_flag(option, value, message):
  options = dict(num_pairs=1, num_points=2, max_len=1, max_sentence_len=None,
                 show=0)
  options[option] = value
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    interpolate.check_options(**options)


def test_num_zero_prints_nothing(lm_run):
  # One launcher start (seconds); both modes in-process.
  code, out, _ = launch('generate', f'--workdir={lm_run}', '--mode=reconstruct',
                        '--num=0')
  assert code == 0 and out == ''
  run = tasks.load_run(lm_run)
  for mode in ('prior', 'reconstruct'):
    assert generate.generate(run, lm_run, mode, num=0) == []


def test_lm_sentences_file_sample_at_zero_and_beam_of_one(lm_run, tmp_path):
  run = tasks.load_run(lm_run)
  sentences = ['the cat sat on the mat .', 'Zyzzyva words here']
  greedy = generate.generate(run, lm_run, 'reconstruct', num=5,
                             max_len=12, sentences=sentences)
  assert len(greedy) == 2 and all('\t' in line for line in greedy)
  assert greedy[1].split('\t')[0].split()[0] == '<unk0>'  # OOV, lower-cased.
  for dec, kwargs in (('sample', dict(temperature=0.0)),
                      ('beam', dict(beam_size=1))):
    assert generate.generate(run, lm_run, 'reconstruct', dec, num=5,
                             max_len=12, sentences=sentences,
                             **kwargs) == greedy
  with pytest.raises(errors.ConfigError, match='mode=reconstruct'):
    generate.generate(run, lm_run, 'prior', sentences=sentences)
  path = tmp_path / 's.txt'
  path.write_text('\n'.join(sentences) + '\n')
  code, out, _ = launch('generate', f'--workdir={lm_run}', '--mode=reconstruct',
                        f'--sentences_file={path}', '--max_len=12')
  assert code == 0 and out.splitlines() == greedy
  path.write_text('a\n\nb\n')
  with pytest.raises(errors.DataError, match=f'{path}:2'):
    generate.read_sentences(str(path))


def test_interpolate_pairs_file(lm_run, tmp_path):
  path = tmp_path / 'pairs.txt'
  path.write_text('["the cat sat .", "a dog ran ."]\n\nhello there\tgood bye\n')
  assert interpolate.read_pairs(str(path)) == [
      ('the cat sat .', 'a dog ran .'), ('hello there', 'good bye')]
  code, _, err = launch('interpolate', f'--workdir={lm_run}',
                        f'--pairs_file={path}', '--points=3', '--max_len=8')
  assert code == 0, err
  with open(os.path.join(lm_run, 'interpolation.json')) as f:
    result = json.load(f)
  assert result['pairs'] == 2 and result['pairs_file'] == str(path)
  run = tasks.load_run(lm_run)
  assert [e['x1'] for e in result['examples']] == [
      ' '.join(run.vocab.decode(s)) for s in
      generate.encode_sentences(run, ['the cat sat .', 'hello there'])]
  assert all(len(e['decodes']) == 3 for e in result['examples'])
  path.write_text('only one\n')
  with pytest.raises(errors.DataError, match=f'{path}:1: expected two'):
    interpolate.read_pairs(str(path))


def test_dialogue_launchers(dd_run, tmp_path):
  code, out, err = launch('generate', f'--workdir={dd_run}',
                          '--contexts_file=-', '--num=2', '--max_len=8',
                          stdin='["hello how are you", "fine thanks"]\n')
  assert code == 0, err
  lines = out.splitlines()
  assert lines[:4] == ['context 1:', '  > <d>', '  > hello how are you',
                       '  > fine thanks']
  assert [l[:5] for l in lines[4:]] == ['  1. ', '  2. ']
  with open(os.path.join(dd_run, 'responses_greedy.jsonl')) as f:
    assert len(json.loads(f.readline())['responses']) == 2
  # What a dialogue run does not offer, said in one line.
  for module, args, message in (
      ('generate', [], 'is a dialogue run: give it contexts'),
      ('generate', ['--contexts_file=-', '--mode=reconstruct'],
       'not offered for dialogue runs'),
      ('interpolate', [], 'interpolation is offered for language-model runs'
       ' only'),
  ):
    code, _, err = launch(module, f'--workdir={dd_run}', *args)
    assert code != 0 and message in err, err


def test_check_options_in_process():
  decoding.check_options(decoder='beam', num=0, max_len=1, temperature=0,
                       beam_size=1)
  for kwargs in (dict(num=1.5), dict(num=True), dict(temperature=float('inf')),
                 dict(decoder='top_k'), dict(max_len=-3)):
    with pytest.raises(errors.ConfigError):
      decoding.check_options(**kwargs)


# --- bench/dialogue_report.py ------------------------------------------------


def _load_bench(name):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, 'bench', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_dialogue_report(dd_run, tmp_path):
  report = _load_bench('dialogue_report')
  with pytest.raises(report.ReportError, match='eval_test.json: not found'):
    report.write_report(str(tmp_path), out=str(tmp_path / 'x.md'))
  result = dialogue_eval.evaluate_run(dd_run, 'test', num_samples=3,
                                      max_len=10)
  dialogue_eval.write_result(result, dd_run)
  info = tmp_path / 'info.json'
  info.write_text(json.dumps({
      'commands': ['python -m launch.train --config=configs/dailydialog.py'],
      'wall_seconds': {'train': 7384, 'evaluate': 61.5},
      'machine': '2-core CPU'}))
  out = report.write_report(dd_run, 'dailydialog', run_info=str(info),
                            examples=4, out=str(tmp_path / 'dd.md'))
  with open(out) as f:
    text = f.read()
  paper, standard = result['paper'], result['standard']
  # Table 5's DD TWR-VAE column beside both modes.
  assert (f"| BLEU-R | 0.407 | {paper['bleu_recall']:.3f} |"
          f" {standard['bleu_recall']:.3f} |") in text
  assert (f"| Inter-dist2 | 0.817 | {paper['inter_dist2']:.3f} |"
          f" {standard['distinct2']:.3f} (corpus) |") in text
  assert f"| Intra-dist1 | 0.921 | {paper['intra_dist1']:.3f} | — |" in text
  assert 'BOW: skipped: no embedding file.' in text
  assert '**20 steps** of batch 8' in text
  assert '- train: 2h 03m 04s' in text and '- evaluate: 1m 02s' in text
  assert 'python -m launch.train --config=configs/dailydialog.py' in text
  with open(f'{dd_run}/samples_test.jsonl') as f:
    samples = [json.loads(l) for l in f]
  assert text.count('**context ') == 4
  first = samples[0]
  assert f"- reference: {first['reference']}" in text
  assert f"> {first['context'][0]}  " in text
  # Switchboard's column and the default commands without run info.
  out = report.write_report(dd_run, 'switchboard', examples=0,
                            out=str(tmp_path / 'sw.md'))
  with open(out) as f:
    text = f.read()
  assert '| BLEU-R | 0.395 |' in text and '**context' not in text
  assert f'python -m launch.evaluate --workdir={dd_run} --split=test' in text
  # Without run info, the training time is the logged windows' sum.
  train = [r for r in metric_log.read_metrics(dd_run) if r['split'] == 'train']
  seconds = sum(r['sentences'] / r['sentences_per_s'] for r in train)
  assert seconds > 0
  assert ('- train (train steps summed from metrics.jsonl; evaluations and'
          f' checkpoints excluded): {report._duration(seconds)}') in text
  # A step logged twice (redone after a resume) counts once.
  again = report.train_seconds(train + train[-1:])
  assert again == pytest.approx(seconds)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_samples=0), 'num_samples=0: must be an integer >= 1'),
    (dict(max_len=0), 'max_len=0: must be an integer >= 1'),
    (dict(batch_size=-2), 'sample_batch_size=-2: must be an integer >= 1'),
])
def test_evaluator_options_checked_first(tmp_path, kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    dialogue_eval.evaluate_run(str(tmp_path / 'none'), **kwargs)


def test_too_few_sentences_to_interpolate_is_a_data_error():
  eligible = np.array([False, True, False])  # One sentence short enough.
  with pytest.raises(errors.DataError,
                     match=r'1 of 3 sentences.*--max_sentence_len'):
    interpolate.choose_pairs(3, 2, seed=0, eligible=eligible)
  pairs = interpolate.choose_pairs(3, 4, seed=0, eligible=~eligible)
  assert pairs.shape == (4, 2) and set(pairs.ravel()) <= {0, 2}
  assert (pairs[:, 0] != pairs[:, 1]).all()
