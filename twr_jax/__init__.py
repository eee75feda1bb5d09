"""twr_jax: TWR-VAE (Li et al., COLING 2020) in JAX/Flax.

Modules (import what you need; this file stays light so that importing one
piece does not pull in the training loop):

  models          TWRVAE, RNN cells, pool_posterior, model_from_config
  losses          gaussian_kl, masked_kl, token_nll, objective
  optim           Adam with coupled L2 (torch.optim.Adam semantics)
  schedules       KL-weight schedules (constant, linear, logistic, cyclical)
  text            tokeniser, Vocab, file readers (DataError on bad input)
  synthetic       the embedded synthetic corpus
  tfds_data       TFDS builders (array_record, no TensorFlow) for PTB, Yahoo,
                  Yelp, Switchboard, DailyDialog
  input_pipeline  length-bucketed static-shape batches
  datasets        splits + vocab for a config
  train           create_train_state, make_train_step, train_and_evaluate
  evaluate        Evaluator (ELBO-NLL, PPL, KL, MI, AU)
  likelihood      importance-weighted NLL
  paper_eval      the original code's evaluation protocol (labelled 'paper')
  lm_eval         evaluate_run: both evaluations of a trained workdir
  decode          greedy / sampling / beam decoding
  generate        prior samples and reconstructions of a trained run
  interpolate     latent interpolation scored by ROUGE (rouge)
  plots           matplotlib figures (optional dependency)
  metrics         mutual_information, active_units
  parallel        device layout (pmap / jit)
  checkpoint      Orbax checkpoints (last N and best)
  workdir         load_run: a trained run back from its workdir
  dialogue_data   Switchboard / DailyDialog readers, vocab, context windows
  dialogue_metrics  BLEU, BOW-embedding and distinct-n (paper and standard)
"""

__version__ = '0.1.0'
