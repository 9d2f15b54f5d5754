"""Multi-process launches: when to call ``jax.distributed.initialize``, as JAX detects them.

``srun samplernn-train ...`` on SLURM (or ``mpirun`` under Open MPI, or an indexed Job on
Kubernetes) starts one process per task. Each must join the others through
``jax.distributed.initialize()``, whose cluster detection reads the environment the launcher set
(SLURM's ``SLURM_JOB_ID``, ``SLURM_NTASKS``, ``SLURM_PROCID``...; Open MPI's
``OMPI_MCA_orte_hnp_uri``; Kubernetes' service host). Left uninitialized, each would believe it
is process 0 of 1 and train alone into the shared workdir.

``--distributed=auto`` (the default) initializes when explicit coordinator flags are given or
JAX detects a cluster of more than one process; ``on`` always (JAX fills what is not given);
``off`` never.
"""

import dataclasses
from typing import Optional

import jax

MODES = ('auto', 'on', 'off')


@dataclasses.dataclass(frozen=True)
class Cluster:
  """A cluster environment as JAX detects it."""

  name: str  # JAX's name for it: 'slurm', 'ompi', 'k8s', ...
  num_processes: int


def detected_cluster() -> Optional[Cluster]:
  """The cluster environment ``jax.distributed.initialize()`` would use, or None.

  The same walk JAX makes (its registered cluster environments, opt-in ones skipped), so the
  decision here and JAX's own agree; JAX keeps the list in a private module.
  """
  from jax._src import clusters  # pylint: disable=g-import-not-at-top

  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if not env.opt_in_only_method and env.is_env_present():
      return Cluster(name=env.name or env.__name__, num_processes=int(env.get_process_count()))
  return None


def should_initialize(
  mode: str,
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  cluster: Optional[Cluster] = None,
) -> bool:
  """Whether to call ``jax.distributed.initialize`` under ``--distributed=mode``.

  ``cluster``: ``detected_cluster()``'s answer (passed in so that the rule is testable).
  """
  if mode not in MODES:
    raise ValueError(f'--distributed={mode!r}; use one of {MODES}.')
  if mode != 'auto':
    return mode == 'on'
  if coordinator_address or (num_processes or 1) > 1:
    return True
  return cluster is not None and cluster.num_processes > 1


def initialize(
  mode: str,
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
) -> str:
  """Joins the other processes when ``should_initialize``; returns the one-line summary:
  ``process I of N (via ...), L local / G global devices``."""
  cluster = detected_cluster() if mode == 'auto' else None
  how = 'single process'
  if should_initialize(mode, coordinator_address, num_processes, cluster):
    # CPU processes exchange collectives through gloo (a GPU's go through NCCL either way).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    how = (
      f'{cluster.name} detected by JAX'
      if cluster and not coordinator_address
      else 'coordinator ' + (coordinator_address or 'from the environment')
    )
  return (
    f'process {jax.process_index()} of {jax.process_count()} ({how}); '
    f'{jax.local_device_count()} local / {jax.device_count()} global devices '
    f'({jax.devices()[0].platform})'
  )
