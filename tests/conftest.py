"""Test setup: 4 fake CPU devices, so that pmap code runs in every CI run.

The device count must be set before JAX initialises its backend, i.e. before
any test module touches a device; conftest is imported first.

Compilation dominates the suite's time (a tiny model's end-to-end run compiles
about 60 programs, 2-5 s each on XLA:CPU), and many tests compile the same
programs again. So the session shares one JAX persistent compilation cache
(in a temporary folder, removed at the end; xdist workers and the launcher
subprocesses inherit it through the environment), and XLA:CPU compiles with
LLVM's optimisation level 0 and, on jaxlib 0.10, without its MLIR fusion
emitters (each about 2x faster compiles; the tiny test programs run no slower
to matter). Both may round differently in the last bit from the defaults;
tests that compare two runs bitwise run both under these settings, and no
test compares against numbers from other settings bitwise.
"""

from importlib import metadata
import os
import shutil
import sys
import tempfile

import pytest

# Set before JAX is imported: JAX reads these variables at import, and the
# launcher subprocesses of the tests inherit them.
_CACHE_ENV = 'TWR_JAX_TEST_SESSION_CACHE'
_OWNS_CACHE = _CACHE_ENV not in os.environ  # False in an xdist worker.
if _OWNS_CACHE:
  os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix='twr_jax_test_cache_')
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ[_CACHE_ENV]
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
# LLVM -O0; and on jaxlib 0.10 the classic XLA:CPU code generation instead of
# the MLIR "fusion emitters", which halves the compile time again (tiny train
# step 14 s -> 7 s on a busy core, the steps run as fast). XLA aborts on a
# flag it does not know, so the second is set only where it was measured.
_XLA_FLAGS = ['--xla_backend_optimization_level=0']
if metadata.version('jaxlib').startswith('0.10.'):
  _XLA_FLAGS.append('--xla_cpu_use_fusion_emitters=false')
_flags = os.environ.get('XLA_FLAGS', '').split()  # An xdist worker's has them.
os.environ['XLA_FLAGS'] = ' '.join(
    _flags + [f for f in _XLA_FLAGS if f not in _flags])

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_num_cpu_devices', 4)
jax.config.update('jax_platforms', 'cpu')
# twr_jax/compile_cache.py's own cache stays off (its default is in the home
# folder); the launchers find JAX's variable above and leave it to JAX.
os.environ['TWR_JAX_CACHE_DIR'] = ''

# The repository root, so that tests can import `configs` and `launch`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


# Scheduling over the xdist workers (pyproject.toml: `--dist loadgroup
# --no-loadscope-reorder`). xdist hands each worker one unit of work at a
# time, in collection order: a single test, or every test of a module that
# has a module-scoped fixture (one `xdist_group`, so that the fixture is
# built once; some modules also share an lru_cache). Units are sorted longest
# first, so that the run does not end with one worker alone on a long test.
# Rough seconds per test function (each parameter, any file) in a full
# 2-worker run, from `--durations` measurements; only their order matters.
# Unlisted tests count 0 and keep their collection order.
_SECONDS = {
    # Two processes, so it holds both cores: counted twice.
    'test_two_processes_equal_one_process_with_four_devices': 100,
    'test_notebook_runs_in_tiny_mode': 65,
    'test_smoke_budget_runs_every_section_and_writes_the_json': 45,
    'test_bfloat16_trains_resumes_exactly_and_every_lm_evaluator_runs': 45,
    'test_dialogue_launchers': 40,
    'test_num_zero_prints_nothing': 30,  # generate_test; lm_run's set-up.
    'test_interpolate_pairs_file': 27,
    'test_readme_library_example_runs': 25,
    'test_kill_and_resume_equals_uninterrupted_run': 25,
    'test_launch_train_writes_metrics_events_and_checkpoints': 25,
    'test_lm_sentences_file_sample_at_zero_and_beam_of_one': 24,
    'test_contexts_become_the_evaluators_examples': 20,  # dd_run's set-up.
    'test_evaluate_generate_interpolate_on_a_trained_workdir': 20,
    'test_data_error_in_main_is_one_block': 18,
    'test_unknown_variant_one_block_with_the_allowed_list': 18,
    'test_bfloat16_dialogue_trains_and_evaluates': 17,
    'test_packed_step_equals_padded_step': 17,
    'test_train_resume_and_evaluate_end_to_end': 17,
    'test_pmap_on_4_devices_equals_single_device': 14,
    'test_vae_freebits_train_step_loss_and_true_kl': 14,
    'test_bn_vae_train_step_sets_running_averages_and_pmap_agrees': 14,
    'test_sigterm_saves_the_step_in_flight_and_is_not_swallowed': 12,
    'test_bfloat16_loss_is_close_to_float32_and_the_state_stays_float32': 11,
    'test_iw_with_one_sample_equals_single_sample_elbo': 11,
    'test_evaluation_does_not_depend_on_batch_size': 11,
}


def _has_module_fixture(item) -> bool:
  info = getattr(item, '_fixtureinfo', None)
  return info is not None and any(
      defs and defs[-1].scope == 'module'
      for defs in info.name2fixturedefs.values())


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the xdist_group marks.
def pytest_collection_modifyitems(items):
  units = {}  # Unit name -> its tests, in collection order.
  for item in items:
    name = item.nodeid
    if _has_module_fixture(item):
      name = item.nodeid.split('::')[0]  # The module's file.
      item.add_marker(pytest.mark.xdist_group(name))
    units.setdefault(name, []).append(item)
  seconds = lambda unit: sum(
      _SECONDS.get(getattr(item, 'originalname', item.name), 0)
      for item in unit)
  ordered = sorted(units.values(), key=seconds, reverse=True)  # Stable.
  items[:] = [item for unit in ordered for item in unit]


def pytest_unconfigure(config):
  """Removes the session's compilation cache (in the process that made it)."""
  del config  # Unused.
  if _OWNS_CACHE:
    shutil.rmtree(os.environ[_CACHE_ENV], ignore_errors=True)
