"""Training on several machines with `tf.distribute.MultiWorkerMirroredStrategy`.

`multi_worker_strategy()` reads and checks `TF_CONFIG`, bounds the time a worker waits for the
others (an unreachable worker fails naming its address instead of hanging), and puts in place
the Keras 3 fix of `tfdynhp.distribute.keras_fix` (keras-team/keras#20585). Under it, DynHP works as
on one machine: the gates' activation counters and gradients are all-reduced, so every worker
computes the same keep-masks and performs the same surgery at the same epoch end.

Replicas and batches: the batch of `fit` (and of `tfdynhp.DynamicBatches`) is the *global*
batch; each replica trains on `batch / replicas` examples of it, so it must be a multiple of
the number of replicas. A memory budget is per replica: what one device holds (the model, its
optimizer state and its share of the batch); see `DynHPCallback`.
"""

import dataclasses
import json
import os
import socket
import time

from tfdynhp.distribute import keras_fix
from tfdynhp.validation import ConfigurationError

JOBS = ("chief", "worker")
DEFAULT_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A checked `TF_CONFIG`: the cluster's tasks in rank order and this task."""

    cluster: dict
    task_type: str
    task_index: int

    @property
    def addresses(self):
        """`host:port` of every task, chief first, then the workers in order."""
        return [address for job in JOBS for address in self.cluster.get(job, [])]

    @property
    def address(self):
        """This task's `host:port`."""
        return self.cluster[self.task_type][self.task_index]

    @property
    def rank(self):
        return self.addresses.index(self.address)

    @property
    def num_workers(self):
        return len(self.addresses)

    @property
    def is_chief(self):
        """The task that writes checkpoints: the chief, or worker 0 without a chief."""
        return self.rank == 0


def _fail(problem, fix="Set TF_CONFIG as JSON like {\"cluster\": {\"worker\": "
                       "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": \"worker\", "
                       "\"index\": 0}}, the same cluster on every machine."):
    raise ConfigurationError(f"Invalid TF_CONFIG: {problem}. {fix}")


def _check_address(job, index, address):
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"cluster['{job}'][{index}] must be 'host:port' with a port in 1-65535; "
              f"received {address!r}")


def parse_tf_config(text=None):
    """Parses and checks a `TF_CONFIG` (default: the environment's).

    Raises:
        ConfigurationError: when it is missing, not JSON, has no `worker` list, an address is
            not `host:port`, an address repeats, the task type is not in the cluster, or the
            task index is out of range.
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        _fail("it is not set (multi-worker training needs it on every machine)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(f"it is not JSON ({error.msg} at position {error.pos})")
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        _fail("it has no 'cluster' object")
    cluster = config["cluster"]
    unknown = sorted(set(cluster) - set(JOBS) - {"evaluator"})
    if unknown:
        _fail(f"unknown job(s) {unknown} in 'cluster' (expected 'worker' and optionally "
              "'chief')")
    if not isinstance(cluster.get("worker"), list) or not cluster["worker"]:
        _fail("'cluster' has no non-empty 'worker' list")
    if "chief" in cluster and (not isinstance(cluster["chief"], list)
                               or len(cluster["chief"]) != 1):
        _fail(f"'cluster.chief' must list exactly one address; received {cluster['chief']!r}")
    seen = {}
    for job in JOBS:
        for index, address in enumerate(cluster.get(job, [])):
            _check_address(job, index, address)
            if address in seen:
                _fail(f"address {address} is given twice ({seen[address]} and {job}[{index}])")
            seen[address] = f"{job}[{index}]"
    task = config.get("task")
    if not isinstance(task, dict):
        _fail("it has no 'task' object naming this machine's role")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in JOBS or task_type not in cluster:
        _fail(f"task type {task_type!r} is not one of the cluster's jobs "
              f"{[job for job in JOBS if job in cluster]}")
    if isinstance(index, bool) or not isinstance(index, int) or not (
        0 <= index < len(cluster[task_type])
    ):
        _fail(f"task index {index!r} is out of range for the {len(cluster[task_type])} "
              f"'{task_type}' address(es)")
    return ClusterConfig({job: list(cluster[job]) for job in JOBS if job in cluster},
                         task_type, index)


def _reachable(address, timeout=1.0):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_workers(addresses, timeout=DEFAULT_TIMEOUT, poll=0.5):
    """Waits until every `host:port` accepts a TCP connection.

    Raises:
        TimeoutError: naming the addresses still unreachable after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    missing = list(addresses)
    while missing:
        missing = [address for address in missing if not _reachable(address)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Worker(s) at {', '.join(missing)} did not answer within {timeout:g} s. Start "
                "the same command on every machine of TF_CONFIG's cluster, check the addresses "
                "and that the ports are open, or raise `timeout`."
            )
        time.sleep(poll)


def _configure_coordination(config, timeout):
    """Bounds the wait for the other workers and detects dead ones (TensorFlow's
    coordination service, configured as MultiWorkerMirroredStrategy would, plus timeouts)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return
    leader = "chief" if "chief" in config.cluster else "worker"
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=[
            coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(tasks))
            for job, tasks in config.cluster.items()
        ],
        cluster_register_timeout_in_ms=int(timeout * 1000),
        heartbeat_timeout_in_ms=int(max(10.0, timeout / 2) * 1000),
    )


def multi_worker_strategy(timeout=DEFAULT_TIMEOUT, tf_config=None):
    """A `tf.distribute.MultiWorkerMirroredStrategy` for the cluster of `TF_CONFIG`.

    Call it first thing on every worker, before building the model (TensorFlow must not have
    run anything yet). Checks `TF_CONFIG`, waits at most `timeout` seconds for the other
    workers, and installs the Keras 3 fix for multi-worker `fit` (`tfdynhp.distribute.keras_fix`).

    Args:
        timeout: seconds to wait for the other workers (also bounds how long a dead worker
            goes unnoticed). Defaults to `60`.
        tf_config: a `TF_CONFIG` JSON string to use instead of the environment's (it is then
            written to the environment, where TensorFlow reads it). Defaults to `None`.

    Returns:
        The strategy.

    Raises:
        ConfigurationError: for an invalid `TF_CONFIG`.
        TimeoutError: when a worker cannot be reached in time; names its address.
    """
    import tensorflow as tf

    config = parse_tf_config(tf_config)
    if tf_config is not None:
        os.environ["TF_CONFIG"] = tf_config
    if config.num_workers > 1:
        _configure_coordination(config, timeout)
        if config.is_chief:
            # The leader's TensorFlow waits for the others without a bound; wait here instead.
            others = [a for a in config.addresses if a != config.address]
            wait_for_workers(others, timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        leader = config.addresses[0]
        raise TimeoutError(
            f"This worker ({config.address}) could not join the cluster: the chief at {leader} "
            f"did not answer within {timeout:g} s ({type(error).__name__}). Start the same "
            "command on every machine of TF_CONFIG's cluster and check the addresses."
        ) from error
    keras_fix.install()
    return strategy


STRATEGIES = ("mirrored", "multi-worker")


def strategy_for(name, timeout=DEFAULT_TIMEOUT):
    """The strategy the command line's `--distribute` names: `None` (none), `"mirrored"`
    (every local device) or `"multi-worker"` (`multi_worker_strategy`, reads TF_CONFIG)."""
    import tensorflow as tf

    if name is None:
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return multi_worker_strategy(timeout)
    raise ValueError(f"`distribute` must be one of {STRATEGIES} or None. Received: {name!r}")


def worker_rank(strategy):
    """This worker's rank (0 for the chief, and on one machine)."""
    if strategy is None or not keras_fix.is_multi_worker(strategy):
        return 0
    return parse_tf_config().rank


def replicas(strategy):
    """The number of replicas training in sync under `strategy` (1 without one)."""
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def check_divisible(batch_size, num_replicas, what="batch_size"):
    """Raises ConfigurationError unless `batch_size` splits into whole per-replica batches."""
    if num_replicas > 1 and batch_size % num_replicas:
        lower = max(num_replicas, batch_size - batch_size % num_replicas)
        raise ConfigurationError(
            f"The global {what}={batch_size} does not split into whole batches for the "
            f"{num_replicas} replicas of the distribution strategy. Use a multiple of "
            f"{num_replicas}, e.g. {lower} or {lower + num_replicas}."
        )
    return batch_size


def round_to_replicas(batch_size, num_replicas):
    """The largest multiple of `num_replicas` not above `batch_size` (at least one each)."""
    return max(num_replicas, batch_size - batch_size % num_replicas)


def is_chief(strategy):
    """Whether this worker writes shared files (checkpoints): always True on one machine."""
    if not keras_fix.is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )
