"""twr_jax: TWR-VAE (Li et al., COLING 2020) in JAX/Flax.

Modules (import what you need; this file stays light so that importing one
piece does not pull in the training loop):

  models          TWRVAE, RNN cells, pool_posterior, model_from_config
  losses          gaussian_kl, masked_kl, token_nll, objective
  optim           Adam with coupled L2 (torch.optim.Adam semantics)
  schedules       KL-weight schedules (constant, linear, logistic, cyclical)
  text            tokeniser, Vocab, file readers (DataError on bad input)
  synthetic       the embedded synthetic corpus
  input_pipeline  length-bucketed static-shape batches
  datasets        splits + vocab for a config
  train           create_train_state, make_train_step, train_and_evaluate
  evaluate        Evaluator (ELBO-NLL, PPL, KL, MI, AU)
  metrics         mutual_information, active_units
  parallel        device layout (pmap / jit)
  checkpoint      Orbax checkpoints (last N and best)
"""

__version__ = '0.1.0'
