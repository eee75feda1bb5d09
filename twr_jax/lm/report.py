"""The full evaluation of a trained run: `standard` and `paper` sections.

  standard  ELBO-NLL (sampled z, KL of z's real posterior), IW-NLL with K
            samples, PPL from IW-NLL over |x|+1 tokens, KL, MI (groups of
            `eval.mi_group_size` and of 64), AU, the per-step-average KL and
            the KL at the last token separately, the per-timestep KL
            profile (SPEC A.8, A.10), and greedy reconstruction from the
            posterior mean (BLEU-4, token accuracy: `reconstruction`);
  paper     the original code's quantities (SPEC A.7): not a likelihood bound.

`launch/evaluate.py` and the notebook call `evaluate_run`.
"""

import math
import os
from typing import Any

import numpy as np

from twr_jax.core import config_checks
from twr_jax.core import files
from twr_jax.core import parallel
from twr_jax.core import prng
from twr_jax.core import workdir as workdir_lib
from twr_jax.lm import data as datasets
from twr_jax.lm import evaluation as lm_evaluation
from twr_jax.lm import input_pipeline
from twr_jax.lm import likelihood
from twr_jax.lm import paper_eval
from twr_jax.lm import reconstruction
from twr_jax.lm import task as lm_task


def evaluate_run(workdir: str, split: str = 'test', step: int | str = 'best',
                 iw_samples: int = 500, iw_batch_size: int = 1,
                 iw_token_budget: int = 65536, paper_batch_size: int = 64,
                 mi_group_size: int | None = None,
                 compute_dtype: str | None = None) -> dict[str, Any]:
  """Evaluates a checkpoint of a training workdir on a split.

  Args:
    workdir: the training workdir.
    split: 'train', 'valid' or 'test'.
    step: 'best', 'last' or a step number.
    iw_samples: K for IW-NLL; 0 skips it.
    iw_batch_size: sentences per IW-NLL call.
    iw_token_budget: sentences x samples x tokens per IW-NLL call.
    paper_batch_size: batch size of the paper protocol (the original: 64).
    mi_group_size: sentences per MI group; default `config.eval.mi_group_size`.
    compute_dtype: overrides the run's `train.compute_dtype` (None: the
      run's).

  Returns:
    A JSON-ready dict with 'standard' and 'paper' sections.
  """
  run = workdir_lib.load_run(workdir, lm_task.load_model, step,
                            compute_dtype)
  config = run.config
  if mi_group_size:
    config.eval.mi_group_size = mi_group_size
  seqs = datasets.load(config, workdir, splits=(split,)).splits[split]
  eval_key = prng.run_key(config.seed, prng.EVAL)

  layout = parallel.make_layout(config.train.parallel)
  config_checks.check_batch_sizes(config, layout, ('eval.batch_size',))
  evaluator = lm_evaluation.Evaluator(run.model, config, layout, eval_key)
  out = evaluator.outputs(
      layout.replicate(run.params),
      input_pipeline.Batcher(seqs, config.eval.batch_size,
                             config.data.bucket_size, config.seed,
                             config.data.get('bucket_growth', 1.0)))
  standard = lm_evaluation.summarise(out, config)
  standard.update(
      mi_group_size=config.eval.mi_group_size,
      mi_64=lm_evaluation.grouped_mi(out, 64),
      au_threshold=config.eval.au_threshold,
      kl_profile=lm_evaluation.kl_profile(out),
      ppl_elbo=standard.pop('ppl'),
  )
  rec = reconstruction.reconstruct(
      run.model, run.params,
      input_pipeline.Batcher(seqs, config.eval.batch_size,
                             config.data.bucket_size, config.seed))
  standard['reconstruction'] = dict(
      reconstruction.scores(rec['references'], rec['hypotheses']),
      examples=[dict(input=' '.join(run.vocab.decode(r)),
                     output=' '.join(run.vocab.decode(h)))
                for r, h in zip(rec['references'][::400],
                                rec['hypotheses'][::400])])
  if iw_samples:
    iw = likelihood.log_likelihood(
        run.model, run.params,
        input_pipeline.Batcher(seqs, iw_batch_size, config.data.bucket_size,
                               config.seed,
                               config.data.get('bucket_growth', 1.0)),
        eval_key, iw_samples, iw_token_budget)
    standard.update(
        iw_nll=float(-np.mean(iw['log_px'])), iw_samples=iw_samples,
        ppl=float(math.exp(-np.sum(iw['log_px']) / standard['tokens'])),
        iw_seconds=iw['seconds'],
        iw_sentences_per_s=len(iw['log_px']) / iw['seconds'],
    )
  paper = paper_eval.evaluate(run.model, run.params, seqs,
                              config.model.kl_window, eval_key,
                              paper_batch_size, config.data.bucket_size)
  return dict(workdir=os.path.abspath(workdir), split=split, step=run.step,
              checkpoint=step, variant=config.get('variant'),
              standard=standard, paper=paper)


def format_result(r: dict[str, Any]) -> str:
  """A short labelled text table of an `evaluate_run` result."""
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
      f"  reconstruction from the posterior mean (greedy): BLEU-4 "
      f"{s['reconstruction']['bleu4']:.4f}   token accuracy "
      f"{s['reconstruction']['token_accuracy']:.4f}",
      'paper (SPEC A.7 protocol, NOT a likelihood bound):',
      f"  NLL {p['nll']:.3f}   PPL {p['ppl']:.3f}   KL {p['kl']:.3f}   "
      f"MI {p['mi']:.3f} (batches of {p['batch_size']})",
  ]
  return '\n'.join(lines)


def evaluate_command(workdir: str, step: int | str,
                     options: dict[str, Any]) -> str:
  """`launch.evaluate` for an LM run: `evaluate_run` with the launcher's
  options, written to workdir/eval_<split>.json; returns the text to print."""
  result = evaluate_run(
      workdir, options['split'], step, options['iw_samples'],
      options['iw_batch_size'], options['iw_token_budget'],
      options['paper_batch_size'], options['mi_group_size'],
      options['compute_dtype'])
  path = os.path.join(workdir, f"eval_{options['split']}.json")
  files.write_json(path, result)
  return f'{format_result(result)}\nwrote {path}'
