"""Evaluates a trained language model: standard and paper-protocol numbers.

  python -m launch.evaluate --workdir=W [--split=test] [--iw_samples=500]
      [--step=best|last|N]

Writes W/eval_<split>.json with two labelled sections and prints a table:
  standard  ELBO-NLL (sampled z, KL of z's real posterior), IW-NLL with K
            samples, PPL from IW-NLL over |x|+1 tokens, KL, MI (groups of 32
            and 64), AU, and the per-timestep KL profile (SPEC A.8, A.10);
  paper     the original code's quantities (SPEC A.7): not a likelihood bound.
"""

import json
import math
import os

from absl import app
from absl import flags
import jax
import numpy as np

from twr_jax import checkpoint
from twr_jax import datasets
from twr_jax import evaluate
from twr_jax import input_pipeline
from twr_jax import likelihood
from twr_jax import paper_eval
from twr_jax import parallel
from twr_jax import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'Training workdir.')
flags.DEFINE_enum('split', 'test', ['train', 'valid', 'test'], 'Split.')
flags.DEFINE_string('step', 'best', "'best', 'last' or a step number.")
flags.DEFINE_integer('iw_samples', 500, 'K for IW-NLL (0: skip).')
flags.DEFINE_integer('iw_batch_size', 16, 'Sentences per IW-NLL call.')
flags.DEFINE_integer('iw_token_budget', 16384,
                     'Max sentences x samples x tokens per IW-NLL call.')
flags.DEFINE_integer('paper_batch_size', 64, 'Batch size of the paper protocol.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def _step(value: str):
  return value if value in ('best', 'last') else int(value)


def main(argv):
  del argv
  checkpoint.quiet_orbax_logging()
  run = workdir_lib.load_run(FLAGS.workdir, _step(FLAGS.step))
  config = run.config
  seqs = datasets.load(config, FLAGS.workdir, splits=(FLAGS.split,)).splits[
      FLAGS.split]
  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)

  layout = parallel.make_layout(config.train.parallel)
  evaluator = evaluate.Evaluator(run.model, config, layout, eval_key)
  batcher = input_pipeline.Batcher(seqs, config.eval.batch_size,
                                   config.data.bucket_size, config.seed)
  out = evaluator.outputs(layout.replicate(run.params), batcher)
  standard = evaluate.summarise(out, config)
  standard.update(
      mi_group_size=config.eval.mi_group_size,
      mi_64=evaluate.grouped_mi(out, 64),
      au_threshold=config.eval.au_threshold,
      kl_profile=evaluate.kl_profile(out),
      ppl_elbo=standard.pop('ppl'),
  )
  if FLAGS.iw_samples:
    iw = likelihood.log_likelihood(
        run.model, run.params,
        input_pipeline.Batcher(seqs, FLAGS.iw_batch_size,
                               config.data.bucket_size, config.seed),
        eval_key, FLAGS.iw_samples, FLAGS.iw_token_budget)
    standard.update(
        iw_nll=float(-np.mean(iw['log_px'])), iw_samples=FLAGS.iw_samples,
        ppl=float(math.exp(-np.sum(iw['log_px']) / standard['tokens'])),
        iw_seconds=iw['seconds'],
        iw_sentences_per_s=len(iw['log_px']) / iw['seconds'],
    )
  paper = paper_eval.evaluate(run.model, run.params, seqs,
                              config.model.kl_window, eval_key,
                              FLAGS.paper_batch_size, config.data.bucket_size)
  result = dict(workdir=os.path.abspath(FLAGS.workdir), split=FLAGS.split,
                step=run.step, checkpoint=FLAGS.step,
                variant=config.get('variant'), standard=standard, paper=paper)
  path = os.path.join(FLAGS.workdir, f'eval_{FLAGS.split}.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(result, f, indent=2)
  os.replace(path + '.tmp', path)
  print(format_result(result))
  print(f'wrote {path}')


def format_result(r) -> str:
  s, p = r['standard'], r['paper']
  lines = [f"{r['workdir']} ({r['variant']}), {r['split']}, step {r['step']}",
           'standard (SPEC A.8/A.10; nats per sentence):']
  if 'iw_nll' in s:
    lines.append(f"  IW-NLL (K={s['iw_samples']}) {s['iw_nll']:.3f}   "
                 f"PPL {s['ppl']:.3f}   ({s['iw_seconds']:.0f} s, "
                 f"{s['iw_sentences_per_s']:.2f} sentences/s)")
  lines += [
      f"  ELBO-NLL {s['nll_elbo']:.3f} = rec {s['rec']:.3f} + KL {s['kl']:.3f}"
      f"   ELBO-PPL {s['ppl_elbo']:.3f}",
      f"  MI {s['mi']:.3f} (groups of {s['mi_group_size']}), "
      f"{s['mi_64']:.3f} (64)   AU {s['au']}   per-step-average KL "
      f"{s['kl_twr']:.3f}   KL at last token {s['kl_last']:.3f}",
      'paper (SPEC A.7 protocol, NOT a likelihood bound):',
      f"  NLL {p['nll']:.3f}   PPL {p['ppl']:.3f}   KL {p['kl']:.3f}   "
      f"MI {p['mi']:.3f}",
  ]
  return '\n'.join(lines)


if __name__ == '__main__':
  app.run(main)
