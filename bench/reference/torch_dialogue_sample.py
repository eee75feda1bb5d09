"""PyTorch reference of the original dialogue evaluation loop (SPEC B.6).

The shape of TWR-VAE's `dialogue_dd/sample.py` / DialogWAE's `evaluate()`:
one context at a time (batch size 1), its context encoding repeated for 10
prior samples, then greedy decoding for exactly 40 steps, one GRU step per
Python iteration. The weights are random (the timing does not depend on
them); sizes are the paper's (embedding 200, utterance GRU 300 per direction,
context GRU 300, z 200, decoder GRU 500, vocabulary ~10k).

Used by bench/dialogue_eval_throughput.py; torch is a benchmark-only
dependency (bench/requirements.txt).
"""

import torch
from torch import nn


class DialogSampler(nn.Module):
  """Encoder, prior and greedy decoder of the original model."""

  def __init__(self, vocab_size: int, emb: int = 200, utt_hidden: int = 300,
               ctx_hidden: int = 300, latent: int = 200):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, emb, padding_idx=0)
    self.utt_rnn = nn.GRU(emb, utt_hidden, batch_first=True,
                          bidirectional=True)
    self.ctx_rnn = nn.GRU(2 * utt_hidden + 2, ctx_hidden, batch_first=True)
    self.prior_fc = nn.Linear(ctx_hidden, latent)
    self.prior_mu = nn.Linear(latent, latent)
    self.prior_logvar = nn.Linear(latent, latent)
    self.dec_rnn = nn.GRU(emb, ctx_hidden + latent, batch_first=True)
    self.out = nn.Linear(ctx_hidden + latent, vocab_size)

  def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) [..., latent] of p(z | c) for context encodings c."""
    h = torch.tanh(self.prior_fc(c))
    return self.prior_mu(h), self.prior_logvar(h)

  @torch.no_grad()
  def sample(self, context: torch.Tensor, lengths: torch.Tensor,
             floors: torch.Tensor, bos: int, num_samples: int = 10,
             max_len: int = 40) -> torch.Tensor:
    """Greedy responses for ONE context.

    Args:
      context: <long>[n, T] the n context turns, 0-padded.
      lengths: <long>[n] tokens per turn.
      floors: <long>[n] 0/1 floor of each turn.
      bos: the id of `<s>`.

    Returns:
      <long>[num_samples, max_len] decoded ids.
    """
    e = self.embed(context)
    packed = nn.utils.rnn.pack_padded_sequence(
        e, lengths, batch_first=True, enforce_sorted=False)
    _, h = self.utt_rnn(packed)  # [2, n, H]
    u = torch.cat([h[0], h[1]], dim=-1)
    x = torch.cat([u, nn.functional.one_hot(floors, 2).float()], dim=-1)
    _, c = self.ctx_rnn(x[None])  # [1, 1, H_c]
    c = c[0].expand(num_samples, -1)
    mu, logvar = self.prior(c)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    hidden = torch.cat([z, c], dim=-1)[None]
    token = torch.full((num_samples, 1), bos, dtype=torch.long)
    out = []
    for _ in range(max_len):
      y, hidden = self.dec_rnn(self.embed(token), hidden)
      token = self.out(y).argmax(-1)
      out.append(token)
    return torch.cat(out, dim=1)
