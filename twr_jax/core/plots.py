"""PNG figures of training runs, KL profiles and latent interpolations.

Needs matplotlib, an optional dependency: `pip install 'twr_jax[plots]'`.

Figures are built with matplotlib's object-oriented API on an Agg canvas and
never touch `pyplot`. That keeps the process's global backend and pyplot's
figure registry alone (importing this module in a notebook changes nothing),
works without a display, and leaves no figure open: a figure is freed as soon
as the function that drew it returns.

  plot_training_curves  loss, KL, MI and AU against step, runs overlaid
  plot_kl_profile       mean per-step KL against relative sentence position
  plot_interpolation    ROUGE F1 of y(tau) against x1 and x2 (paper Fig. 2)
  plot_interpolation_compare  the same for several models, overlaid
  plot_workdirs         all of the above for training workdirs (launch.plot)
"""

from collections.abc import Mapping, Sequence
import glob
import json
import numbers
import os
import re
from typing import Any

try:
  from matplotlib import figure as mpl_figure
  from matplotlib.backends import backend_agg
except ImportError as e:
  raise ImportError(
      "twr_jax.core.plots needs matplotlib: pip install 'twr_jax[plots]'"
  ) from e

from twr_jax.core import metric_log

PathLike = str | os.PathLike[str]
Record = Mapping[str, Any]

_DPI = 120
_ROUGE_NAMES = {'rouge1': 'ROUGE-1', 'rouge2': 'ROUGE-2', 'rougeL': 'ROUGE-L'}

# Panels of the training-curve figure: (title, y label, [(split, field,
# linestyle)]). The objective is labelled as such: for TWR it is rec + beta *
# the per-step-average KL, not a bound on -log p(x) (SPEC A.9); the ELBO-NLL
# and its PPL, drawn beside it, are bounds.
_CURVE_PANELS = (
    ('objective rec + β·KL_obj (TWR: objective, not a bound)',
     'nats per sentence', (('train', 'loss', '-'), ('valid', 'loss', '--'))),
    ('ELBO-NLL = rec + KL(q(z|x)‖p(z)), an upper bound on −log p(x)',
     'nats per sentence', (('valid', 'nll_elbo', '--'),)),
    ('PPL from the ELBO (upper bound), valid', 'perplexity',
     (('valid', 'ppl', '--'),)),
    ('KL: of z (kl), per-step average (kl_twr)', 'nats per sentence',
     (('train', 'kl', '-'), ('train', 'kl_twr', ':'), ('valid', 'kl', '--'))),
    ('MI (valid)', 'nats', (('valid', 'mi', '--'),)),
    ('AU (valid)', 'active units', (('valid', 'au', '--'),)),
)


def _new_figure(width: float, height: float, **subplots):
  fig = mpl_figure.Figure(figsize=(width, height), dpi=_DPI)
  backend_agg.FigureCanvasAgg(fig)
  return fig, fig.subplots(**subplots)


def _save(fig: mpl_figure.Figure, path: PathLike) -> PathLike:
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, dpi=_DPI, format='png')
  return path


def _colour(index: int) -> str:
  return f'C{index % 10}'  # matplotlib's default ten-colour cycle.


def _series(records: Sequence[Record], split: str,
            field: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `field` in `split`'s records, sorted by step."""
  points = sorted(
      (r['step'], r[field])
      for r in records
      if r.get('split') == split and 'step' in r
      and isinstance(r.get(field), numbers.Real)
  )
  return [s for s, _ in points], [v for _, v in points]


def plot_training_curves(runs: Mapping[str, Sequence[Record]],
                         path: PathLike) -> PathLike:
  """Plots objective, ELBO-NLL, PPL, KL, MI and AU against step, one colour
  per run.

  Args:
    runs: label -> the records of that run's `metrics.jsonl` (as returned by
      `metric_log.read_metrics`): dicts with `step`, `split` and numeric
      fields. Fields a run did not record are left out of its panels; NaN
      values show as gaps.
    path: the PNG to write; parent folders are created.

  Returns:
    `path`.
  """
  fig, axes = _new_figure(12, 11, nrows=3, ncols=2, squeeze=False)
  for ax, (title, unit, lines) in zip(axes.flat, _CURVE_PANELS):
    for index, (label, records) in enumerate(runs.items()):
      for split, field, style in lines:
        steps, values = _series(records, split, field)
        if steps:
          ax.plot(steps, values, style, color=_colour(index),
                  marker='.' if len(steps) < 30 else None,
                  label=f'{label} {split} {field}')
    ax.set_title(title, fontsize='medium')
    ax.set_xlabel('training step')
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize='small')
    else:
      ax.text(0.5, 0.5, 'not recorded', ha='center', va='center',
              transform=ax.transAxes, color='grey')
  fig.tight_layout()
  return _save(fig, path)


def _check_same_length(name: str, xs: Sequence[Any],
                       ys: Sequence[Any]) -> None:
  if len(xs) != len(ys):
    raise ValueError(f'{name}: {len(xs)} x values but {len(ys)} y values.')


def plot_kl_profile(profiles: Mapping[str, Mapping[str, Sequence[float]]],
                    path: PathLike) -> PathLike:
  """Plots mean per-step KL against relative position, one line per run.

  Args:
    profiles: label -> {'bins': centres of relative-position bins in [0, 1],
      'kl': mean per-step KL in each bin}.
    path: the PNG to write; parent folders are created.

  Returns:
    `path`.

  Raises:
    ValueError: a profile's 'bins' and 'kl' differ in length.
  """
  fig, ax = _new_figure(6.5, 4.5)
  for index, (label, profile) in enumerate(profiles.items()):
    _check_same_length(label, profile['bins'], profile['kl'])
    ax.plot(profile['bins'], profile['kl'], '-o', markersize=3,
            color=_colour(index), label=label)
  ax.set_xlim(0, 1)
  ax.set_xlabel('relative position in sentence')
  ax.set_ylabel('mean KL per step (nats)')
  ax.set_title('Per-step KL profile')
  ax.grid(alpha=0.3)
  if profiles:
    ax.legend()
  fig.tight_layout()
  return _save(fig, path)


def _plot_rouge_pair(ax, result: Mapping[str, Any], key: str, colour: str,
                     label: str) -> None:
  """Draws one ROUGE type of an interpolation result on `ax`: solid against
  x1, dashed against x2 (skipped where the result lacks it)."""
  for end, style in (('x1', '-'), ('x2', '--')):
    values = result['rouge'].get(end, {}).get(key)
    if values is None:
      continue
    _check_same_length(f'{label} {end} {key}', result['alphas'], values)
    ax.plot(result['alphas'], values, style, marker='o', markersize=3,
            color=colour, label=f'{label} vs {end}')


def plot_interpolation(result: Mapping[str, Any], path: PathLike) -> PathLike:
  """Plots ROUGE F1 along a latent interpolation, like the paper's Fig. 2.

  Solid lines score each decoded y(tau) against x1 and should fall with tau;
  dashed lines score it against x2 and should rise. One colour per ROUGE type.

  Args:
    result: an interpolation result: {'alphas': [tau_0, ...], 'rouge':
      {'x1': {'rouge1': [...], 'rouge2': [...], 'rougeL': [...]},
       'x2': {same}}, ...}; other keys are ignored. ROUGE types missing from
      'x1' or 'x2' are skipped.
    path: the PNG to write; parent folders are created.

  Returns:
    `path`.

  Raises:
    ValueError: a ROUGE curve and 'alphas' differ in length.
  """
  alphas = result['alphas']
  fig, ax = _new_figure(6.5, 4.5)
  for index, (key, name) in enumerate(_ROUGE_NAMES.items()):
    _plot_rouge_pair(ax, result, key, _colour(index), name)
  ax.set_xlim(min(alphas, default=0), max(alphas, default=1))
  ax.set_ylim(0, 1.02)
  ax.set_xlabel(r'$\tau$ in $z = (1-\tau) z_1 + \tau z_2$')
  ax.set_ylabel('F1')
  ax.set_title('Latent interpolation: ROUGE of y(τ)')
  ax.grid(alpha=0.3)
  if ax.lines:
    ax.legend(fontsize='small', ncol=2)
  fig.tight_layout()
  return _save(fig, path)


def plot_interpolation_compare(results: Mapping[str, Mapping[str, Any]],
                               path: PathLike) -> PathLike:
  """Overlays several models' interpolation curves (paper Fig. 2 compares
  TWR-VAE with BN-VAE): one panel per ROUGE type, one colour per model, solid
  against x1 and dashed against x2.

  Args:
    results: label -> an interpolation result (see `plot_interpolation`).
    path: the PNG to write.

  Returns:
    `path`.

  Raises:
    ValueError: a ROUGE curve and its 'alphas' differ in length.
  """
  fig, axes = _new_figure(15, 4.5, nrows=1, ncols=3, squeeze=False)
  for ax, (key, name) in zip(axes.flat, _ROUGE_NAMES.items()):
    for index, (label, result) in enumerate(results.items()):
      _plot_rouge_pair(ax, result, key, _colour(index), label)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(r'$\tau$ in $z = (1-\tau) z_1 + \tau z_2$')
    ax.set_ylabel(f'{name} F1')
    ax.set_title(f'{name} of y(τ) against x1 and x2')
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize='small')
  fig.tight_layout()
  return _save(fig, path)


def _read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _run_labels(workdirs: Sequence[str]) -> list[str]:
  """The config's `variant`, else the folder name; made unique."""
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  labels = []
  for workdir, name in zip(workdirs, names):
    config_path = os.path.join(workdir, 'config.json')
    variant = None
    if os.path.exists(config_path):
      variant = _read_json(config_path).get('variant')
    labels.append(str(variant) if variant else name)
  # Two runs of one variant (e.g. different seeds) must stay apart in the
  # legend and in the label-keyed dicts the plot functions take.
  labels = [
      f'{label} ({name})' if labels.count(label) > 1 and label != name
      else label
      for label, name in zip(labels, names)
  ]
  # Same variant and same folder name (under different parents): number them.
  return [
      f'{label} #{i + 1}' if labels.count(label) > 1 else label
      for i, label in enumerate(labels)
  ]


def _kl_profiles(workdir: str) -> dict[str, dict[str, Any]]:
  """split -> the 'standard' KL profile in `workdir/eval_<split>.json`."""
  profiles = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'eval_*.json'))):
    split = re.fullmatch(r'eval_(.+)\.json', os.path.basename(path)).group(1)
    profile = _read_json(path).get('standard', {}).get('kl_profile')
    if profile is not None:
      profiles[split] = profile
  return profiles


def plot_workdirs(workdir: PathLike, compare: Sequence[PathLike] = (),
                  out: PathLike | None = None) -> list[str]:
  """Writes every figure the files in training workdirs allow.

    training_curves.png     `workdir` and each of `compare`, overlaid;
    kl_profile_<split>.png  for each `workdir/eval_<split>.json` with a
                            'standard' KL profile, overlaid with the compared
                            workdirs that have one for that split;
    interpolation.png       if `workdir/interpolation.json` exists;
    interpolation_compare.png  the interpolation curves of every workdir
                            that has one, overlaid, if two or more do.

  Runs are labelled by the `variant` in their `config.json`, else by their
  folder name.

  Args:
    workdir: the main training workdir.
    compare: more workdirs to overlay.
    out: the output folder; `workdir` if None.

  Returns:
    The paths written.

  Raises:
    FileNotFoundError: a workdir has no `metrics.jsonl`.
  """
  workdirs = [os.fspath(w) for w in (workdir, *compare)]
  out = os.fspath(workdir if out is None else out)
  for w in workdirs:
    metrics_path = os.path.join(w, 'metrics.jsonl')
    if not os.path.isfile(metrics_path):
      raise FileNotFoundError(
          f'No metrics file {metrics_path}: is {w} a training workdir?'
      )
  labels = _run_labels(workdirs)
  written = [plot_training_curves(
      {label: metric_log.read_metrics(w)
       for label, w in zip(labels, workdirs)},
      os.path.join(out, 'training_curves.png'),
  )]
  all_profiles = [_kl_profiles(w) for w in workdirs]
  for split in all_profiles[0]:
    written.append(plot_kl_profile(
        {label: profiles[split]
         for label, profiles in zip(labels, all_profiles)
         if split in profiles},
        os.path.join(out, f'kl_profile_{split}.png'),
    ))
  interpolations = {
      label: _read_json(os.path.join(w, 'interpolation.json'))
      for label, w in zip(labels, workdirs)
      if os.path.exists(os.path.join(w, 'interpolation.json'))}
  if labels[0] in interpolations:
    written.append(plot_interpolation(
        interpolations[labels[0]], os.path.join(out, 'interpolation.png')))
  if len(interpolations) > 1:
    written.append(plot_interpolation_compare(
        interpolations, os.path.join(out, 'interpolation_compare.png')))
  return written
