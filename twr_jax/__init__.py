"""twr_jax: TWR-VAE (Li et al., COLING 2020) in JAX/Flax.

Layout (import what you need; this file stays light so that importing one
piece does not pull in the training loop):

  train      train_and_evaluate: the one training loop, for both tasks
  tasks      the registry that names both tasks (validate, make_task,
             load_run, launcher commands)
  core/      task-agnostic: task (the loop's Task interface), layers,
             losses, optim, schedules, prng, parallel, checkpoint,
             metric_log, text, files, workdir, run_config, config_checks,
             decoding, cli, compile_cache, host_memory, plots
  lm/        the language model: data, model, losses, task, evaluation,
             report, decoding, metrics, generate; input_pipeline, synthetic,
             likelihood, paper_eval, reconstruction, interpolate, lagging
  dialogue/  the dialogue CVAE: data, model, losses, task, evaluation,
             report, decoding, metrics, generate; corpora
  tfds_data  TFDS builders (array_record, no TensorFlow) for PTB, Yahoo,
             Yelp, Switchboard, DailyDialog
  errors     UserError and its subclasses
"""

__version__ = '0.1.0'
