"""Training on several machines: `TF_CONFIG` checks and strategies (`cluster`), chief-only
checkpoints and resume (`checkpoint`), and the scoped Keras 3 fix they need (`keras_fix`)."""

from tfdynhp.distribute import keras_fix
from tfdynhp.distribute.checkpoint import (
    CHECKPOINT_STATE,
    ChiefCheckpoint,
    checkpoint_state,
    resume,
)
from tfdynhp.distribute.cluster import (
    DEFAULT_TIMEOUT,
    JOBS,
    STRATEGIES,
    ClusterConfig,
    check_divisible,
    is_chief,
    multi_worker_strategy,
    parse_tf_config,
    replicas,
    round_to_replicas,
    strategy_for,
    wait_for_workers,
    worker_rank,
)

__all__ = [
    "CHECKPOINT_STATE",
    "DEFAULT_TIMEOUT",
    "JOBS",
    "STRATEGIES",
    "ChiefCheckpoint",
    "ClusterConfig",
    "check_divisible",
    "checkpoint_state",
    "is_chief",
    "keras_fix",
    "multi_worker_strategy",
    "parse_tf_config",
    "replicas",
    "resume",
    "round_to_replicas",
    "strategy_for",
    "wait_for_workers",
    "worker_rank",
]
