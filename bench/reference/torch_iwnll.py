"""PyTorch reference IW-NLL (SPEC A.8), written the way He et al. (2019) run it.

Batch of ONE sentence; K samples drawn in chunks of `ns` (500 = 5 x 100); each
chunk re-encodes the sentence and samples z ~ q(z|x) (vae-lagging-encoder's
`nll_iw`: `encoder.sample(x, ns)`, `eval_complete_ll`, `eval_inference_dist`),
then

  log p(x) ~= logsumexp_k [log p(x|z_k) + log N(z_k; 0, I) - log q(z_k|x)]
              - log K.

The model is the TWR-VAE LM of ../../../shared/bench/torch_reference_step.py
(separate embeddings, LSTM encoder with mu / logvar heads, z from the last
step, decoder LSTM fed [emb; z], h0 = c0 = Linear(z, bias=False), output
Linear), in eval mode (no dropout). Weights are random, or loaded from an
.npz of torch-named arrays (bench/iwnll_throughput.py writes the JAX model's
parameters that way, so both implementations score the same model).

  python bench/reference/torch_iwnll.py --tokens-file F [--params-npz P]
      [--vocab 10000] [--K 500] [--ns 100] [--threads 2]
  python bench/reference/torch_iwnll.py --check

F: one sentence per line, space-separated token ids, BOS ... EOS. Prints one
JSON line: sentences/s, mean IW-NLL and per-sentence log p(x). `--check`
verifies the estimator on a tiny model with a 1-d latent, where log p(x) can be
integrated on a grid: the IW estimate must be close to it and below the ELBO.
"""

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


class Encoder(nn.Module):
  """Embedding, LSTM, mu / logvar heads (torch_reference_step.py's)."""

  def __init__(self, vocab, emb, hidden, latent):
    super().__init__()
    self.emb = nn.Embedding(vocab, emb, padding_idx=0)
    self.rnn = nn.LSTM(emb, hidden)
    self.mu, self.lv = nn.Linear(hidden, latent), nn.Linear(hidden, latent)

  def forward(self, x):
    """x: <long>[T, 1] -> (mu, logvar) <f32>[1, Z] at the last step."""
    h, _ = self.rnn(self.emb(x))
    return self.mu(h[-1]), self.lv(h[-1])

  def sample(self, x, ns):
    """He et al.'s `encoder.sample`: z <f32>[ns, Z], eps, logvar <f32>[1, Z]."""
    mu, lv = self(x)
    eps = torch.randn(ns, mu.shape[-1])
    return mu + torch.exp(0.5 * lv) * eps, eps, lv


class Decoder(nn.Module):
  """Teacher-forced LSTM decoder fed [emb(x_{t-1}); z], h0 = c0 = W z."""

  def __init__(self, vocab, emb, hidden, latent):
    super().__init__()
    self.emb = nn.Embedding(vocab, emb, padding_idx=0)
    self.rnn = nn.LSTM(emb + latent, hidden)
    self.z2h = nn.Linear(latent, hidden, bias=False)
    self.out = nn.Linear(hidden, vocab)

  def log_px_given_z(self, x, z):
    """x: <long>[T, 1]; z: <f32>[ns, Z] -> log p(x|z) <f32>[ns]."""
    ns = z.shape[0]
    inp = x[:-1].expand(-1, ns)  # [T-1, ns]
    e = self.emb(inp)
    e = torch.cat([e, z.unsqueeze(0).expand(e.shape[0], -1, -1)], 2)
    h0 = self.z2h(z).unsqueeze(0)
    o, _ = self.rnn(e, (h0, h0))
    logits = self.out(o)  # [T-1, ns, V]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                         x[1:].expand(-1, ns).reshape(-1), reduction='none')
    return -ce.view(-1, ns).sum(0)


class VAE(nn.Module):

  def __init__(self, vocab, emb=512, hidden=256, latent=32):
    super().__init__()
    self.enc = Encoder(vocab, emb, hidden, latent)
    self.dec = Decoder(vocab, emb, hidden, latent)


@torch.no_grad()
def iw_log_px(model: VAE, x: torch.Tensor, k: int = 500, ns: int = 100):
  """IW estimate of log p(x) for one sentence x <long>[T, 1] (SPEC A.8)."""
  tmp = []
  for _ in range(k // ns):
    z, eps, lv = model.enc.sample(x, ns)
    log_prior = -0.5 * (z**2 + LOG_2PI).sum(-1)
    log_q = -0.5 * (eps**2 + LOG_2PI + lv).sum(-1)
    tmp.append(model.dec.log_px_given_z(x, z) + log_prior - log_q)
  return float(torch.logsumexp(torch.cat(tmp), 0) - math.log(k))


@torch.no_grad()
def elbo_nll(model: VAE, x: torch.Tensor, k: int = 500):
  """-ELBO with the analytic KL and k samples for the reconstruction term."""
  z, _, lv = model.enc.sample(x, k)
  mu, _ = model.enc(x)
  kl = -0.5 * (1 + lv - mu**2 - lv.exp()).sum()
  return float(-model.dec.log_px_given_z(x, z).mean() + kl)


@torch.no_grad()
def exact_log_px_1d(model: VAE, x: torch.Tensor, lo=-10.0, hi=10.0,
                    n=4001):
  """log p(x) = log int p(x|z) N(z; 0, 1) dz on a grid; needs Z = 1."""
  z = torch.linspace(lo, hi, n).unsqueeze(1)
  log_joint = model.dec.log_px_given_z(x, z) - 0.5 * (z[:, 0]**2 + LOG_2PI)
  return float(torch.logsumexp(log_joint, 0) + math.log((hi - lo) / (n - 1)))


def check(seed: int = 0) -> dict:
  """Estimator sanity on a tiny model (V 12, E 8, H 8, Z 1), one sentence."""
  torch.manual_seed(seed)
  model = VAE(12, 8, 8, 1).eval()
  with torch.no_grad():  # Sharpen the decoder so p(z|x) is far from N(0, 1).
    model.dec.rnn.weight_ih_l0.mul_(6.0)
  x = torch.tensor([1, 5, 7, 4, 9, 2]).unsqueeze(1)
  exact = exact_log_px_1d(model, x)
  iw = iw_log_px(model, x, 500, 100)
  elbo = elbo_nll(model, x, 5000)
  out = dict(exact_nll=-exact, iw_nll=-iw, elbo_nll=elbo)
  out['ok'] = bool(abs(iw - exact) < 0.05 and -iw <= elbo and -exact <= elbo)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--tokens-file', default='')
  p.add_argument('--params-npz', default='')
  p.add_argument('--vocab', type=int, default=10000)
  p.add_argument('--emb', type=int, default=512)
  p.add_argument('--hidden', type=int, default=256)
  p.add_argument('--latent', type=int, default=32)
  p.add_argument('--K', type=int, default=500)
  p.add_argument('--ns', type=int, default=100)
  p.add_argument('--threads', type=int, default=0)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--check', action='store_true')
  a = p.parse_args()
  if a.threads:
    torch.set_num_threads(a.threads)
  if a.check:
    print(json.dumps(dict(impl='torch', check=check(a.seed))))
    return
  torch.manual_seed(a.seed)
  model = VAE(a.vocab, a.emb, a.hidden, a.latent).eval()
  if a.params_npz:
    with np.load(a.params_npz) as f:
      model.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files})
  with open(a.tokens_file) as f:
    sents = [torch.tensor([int(t) for t in l.split()]).unsqueeze(1)
             for l in f if l.strip()]
  for x in sents[: a.warmup]:
    iw_log_px(model, x, a.ns, a.ns)
  t0 = time.perf_counter()
  log_px = [iw_log_px(model, x, a.K, a.ns) for x in sents]
  seconds = time.perf_counter() - t0
  print(json.dumps(dict(
      impl='torch', version=torch.__version__, threads=torch.get_num_threads(),
      K=a.K, ns=a.ns, sentences=len(sents), seconds=round(seconds, 3),
      sentences_per_s=round(len(sents) / seconds, 3),
      nll_mean=round(-float(np.mean(log_px)), 4),
      log_px=[round(v, 4) for v in log_px])))


if __name__ == '__main__':
  main()
