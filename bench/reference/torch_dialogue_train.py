"""PyTorch reference of the original dialogue training step (SPEC B.3-B.5).

The shape of TWR-VAE's `dialogue_dd/train_dailydial.py` iteration, written
from SPEC B.3-B.5 (torch 2.13 CPU):

  * one embedding (|V| x 200, padding row 0) shared by the utterance encoder
    and the decoder, dropout 0.5 on every embedded token;
  * the context [B, N_b, 39] (padded to the batch's longest context, empty
    slots of length 1) encoded as B * N_b utterances by a bidirectional
    GRU(200 -> 300), packed by length (`pack_padded_sequence`);
  * [u; onehot(floor)], dropout 0.25, a GRU(602 -> 300) packed by context
    length; `pad_packed_sequence` gives H [B, N_b, 300], zeros past the end;
  * x = the response without `<s>`, encoded by the same bidirectional GRU;
  * z from the recognition net at c; recognition and prior nets applied in a
    Python loop at every step i < N_b, KL summed and divided by N_b;
  * the decoder GRU(200 -> 500) from [z; c] over the batch's padded
    responses, the output Linear(500 -> |V|) over every position, then the
    real positions' logits selected (`masked_select`) for a summed
    cross-entropy;
  * Adam(lr 1e-4, eps 1e-6, weight_decay 1e-5, coupled) over a parameter list
    holding the embedding twice (it belongs to the context encoder and to the
    decoder), so it gets two updates per step as in the original (SPEC B.5).

Weights are random: the timing does not depend on them. Used by
bench/dialogue_train_throughput.py; torch is a benchmark-only dependency
(bench/requirements.txt).
"""

import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence
from torch.nn.utils.rnn import pad_packed_sequence

from torch_dialogue_sample import DialogSampler


def _orthogonal(rnn: nn.GRU):
  for w in rnn.parameters():
    if w.dim() > 1:
      nn.init.orthogonal_(w)


def _small(layer: nn.Linear, bound: float):
  layer.weight.data.uniform_(-bound, bound)
  layer.bias.data.fill_(0)


class DialogTrainer(DialogSampler):
  """The original's model and optimiser; `step(batch)` is one iteration.

  The sampler's layers plus the recognition net, the original's
  initialisation and its optimiser.
  """

  def __init__(self, vocab_size: int, emb: int = 200, utt_hidden: int = 300,
               ctx_hidden: int = 300, latent: int = 200):
    super().__init__(vocab_size, emb, utt_hidden, ctx_hidden, latent)
    self.recog_mu = nn.Linear(2 * utt_hidden + ctx_hidden, latent)
    self.recog_logvar = nn.Linear(2 * utt_hidden + ctx_hidden, latent)
    for rnn in (self.utt_rnn, self.ctx_rnn, self.dec_rnn):
      _orthogonal(rnn)
    for layer in (self.recog_mu, self.recog_logvar, self.prior_fc,
                  self.prior_mu, self.prior_logvar):
      _small(layer, 0.02)
    _small(self.out, 0.1)
    self.utt_hidden, self.ctx_hidden, self.latent = utt_hidden, ctx_hidden, latent
    # The original's list: context encoder (utterance encoder and embedding
    # in it) + recognition + decoder (embedding again) + prior.
    context_encoder = [self.embed.weight, *self.utt_rnn.parameters(),
                       *self.ctx_rnn.parameters()]
    recognition = [*self.recog_mu.parameters(),
                   *self.recog_logvar.parameters()]
    decoder = [self.embed.weight, *self.dec_rnn.parameters(),
               *self.out.parameters()]
    prior = [*self.prior_fc.parameters(), *self.prior_mu.parameters(),
             *self.prior_logvar.parameters()]
    with warnings.catch_warnings():  # torch warns about the duplicate.
      warnings.simplefilter('ignore')
      self.optimizer = torch.optim.Adam(
          context_encoder + recognition + decoder + prior, lr=1e-4, eps=1e-6,
          weight_decay=1e-5)

  def encode_utterances(self, tokens: torch.Tensor,
                        lengths: torch.Tensor) -> torch.Tensor:
    """[h_fwd_last; h_bwd_first] of utterances [M, T], packed by length."""
    e = F.dropout(self.embed(tokens), 0.5, self.training)
    lens, order = lengths.sort(descending=True)
    packed = pack_padded_sequence(e.index_select(0, order), lens.tolist(),
                                  batch_first=True)
    _, h_n = self.utt_rnn(packed)
    h_n = h_n.index_select(1, order.argsort())
    return h_n.transpose(0, 1).reshape(tokens.shape[0], -1)

  def recognition(self, u_x, h):
    x = torch.cat([u_x, h], 1)
    return self.recog_mu(x), self.recog_logvar(x)

  def step(self, batch: dict[str, np.ndarray], beta: float = 1.0) -> float:
    """One training iteration on a `dialogue_data` batch; returns the loss.

    The batch is cut to the original's arrays: context [B, N_b, U-1] with N_b
    the longest context, response [B, R_b] with R_b the longest response.
    """
    n_b = int(batch['num_turns'].max())
    r_b = int(batch['response_len'].max())
    context = torch.from_numpy(batch['context'][:, :n_b].astype(np.int64))
    utt_lens = torch.from_numpy(batch['context_lens'][:, :n_b].astype(
        np.int64))
    floors = torch.from_numpy(batch['floors'][:, :n_b].astype(np.int64))
    num_turns = torch.from_numpy(batch['num_turns'].astype(np.int64))
    response = torch.from_numpy(batch['response'][:, :r_b].astype(np.int64))
    res_lens = torch.from_numpy(batch['response_len'].astype(np.int64))
    b = context.shape[0]

    # Context encoder.
    u = self.encode_utterances(context.reshape(b * n_b, -1),
                               utt_lens.reshape(-1)).reshape(b, n_b, -1)
    x = torch.cat([u, F.one_hot(floors, 2).float()], 2)
    x = F.dropout(x, 0.25, self.training)
    lens, order = num_turns.sort(descending=True)
    packed = pack_padded_sequence(x.index_select(0, order), lens.tolist(),
                                  batch_first=True)
    hids, h_n = self.ctx_rnn(packed)
    inverse = order.argsort()
    hids = pad_packed_sequence(hids, batch_first=True)[0].index_select(
        0, inverse)
    c = h_n[0].index_select(0, inverse)

    # Recognition (z at c, then every step) and prior (every step).
    u_x = self.encode_utterances(response[:, 1:], res_lens - 1)
    mu, logvar = self.recognition(u_x, c)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    q = [self.recognition(u_x, hids[:, i]) for i in range(hids.shape[1])]
    p = [self.prior(hids[:, i]) for i in range(hids.shape[1])]
    mu_q, lv_q = (torch.stack(t) for t in zip(*q))
    mu_p, lv_p = (torch.stack(t) for t in zip(*p))
    kl = -0.5 * torch.sum(1 + (lv_q - lv_p)
                          - (mu_p - mu_q).pow(2) / lv_p.exp()
                          - lv_q.exp() / lv_p.exp()) / mu_q.shape[0]

    # Decoder over the padded responses, output layer everywhere.
    inputs = F.dropout(self.embed(response[:, :-1]), 0.5, self.training)
    h0 = torch.cat([z, c], 1).unsqueeze(0)
    hids, _ = self.dec_rnn(inputs, h0)
    logits = self.out(hids.reshape(-1, hids.shape[-1]))
    target = response[:, 1:].reshape(-1)
    mask = target.gt(0)
    rec = F.cross_entropy(
        logits.masked_select(mask.unsqueeze(1)).view(-1, logits.shape[1]),
        target.masked_select(mask), reduction='sum')
    loss = rec + beta * kl
    self.optimizer.zero_grad()
    loss.backward()
    self.optimizer.step()
    return loss.item()
