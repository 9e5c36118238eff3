"""Multi-worker training: TF_CONFIG checks, the Keras 3 fix (keras-team/keras#20585), and real
two-process fits under MultiWorkerMirroredStrategy on 127.0.0.1."""

import json
import os
import re
import socket
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))

import multiworker
from conftest import make_mlp

import tfdynhp
from tfdynhp import distribute
from tfdynhp.distribute import keras_fix as _keras_compat
from tfdynhp.graph import gated_groups
from tfdynhp.validation import ConfigurationError


def _config(cluster, task):
    return json.dumps({"cluster": cluster, "task": task})


WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


def test_tf_config_is_read_in_rank_order():
    config = distribute.parse_tf_config(_config(
        {"chief": ["10.0.0.1:2222"], **WORKERS}, {"type": "worker", "index": 1}
    ))
    assert config.addresses == ["10.0.0.1:2222", *WORKERS["worker"]]
    assert config.address == "127.0.0.1:2223" and config.rank == 2 and not config.is_chief
    assert distribute.parse_tf_config(_config(WORKERS, {"type": "worker", "index": 0})).is_chief


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "not set"),
        ("{cluster", "not JSON"),
        (_config({"ps": ["a:1"], **WORKERS}, {"type": "worker", "index": 0}), "unknown job"),
        (_config({"worker": []}, {"type": "worker", "index": 0}), "non-empty 'worker'"),
        (_config({"worker": ["127.0.0.1"]}, {"type": "worker", "index": 0}), "host:port"),
        (_config({"worker": ["h:70000"]}, {"type": "worker", "index": 0}), "host:port"),
        (_config({"worker": ["h:1", "h:1"]}, {"type": "worker", "index": 0}), "twice"),
        (_config(WORKERS, {"type": "chief", "index": 0}), "task type 'chief'"),
        (_config(WORKERS, {"type": "worker", "index": 2}), "out of range"),
        (json.dumps({"cluster": WORKERS}), "'task'"),
    ],
)
def test_inconsistent_tf_config_is_refused(text, match):
    with pytest.raises(ConfigurationError, match=match):
        distribute.parse_tf_config(text)


def test_batches_split_into_whole_replica_batches():
    assert distribute.check_divisible(32, 2) == 32
    with pytest.raises(ConfigurationError, match=r"batch_size=33 .* 2 replicas.* e\.g\. 32"):
        distribute.check_divisible(33, 2)
    assert [distribute.round_to_replicas(b, 4) for b in (3, 4, 9, 17)] == [4, 4, 8, 16]


def test_unreachable_worker_fails_in_bounded_time_naming_it():
    port = multiworker.free_ports(1)[0]
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        distribute.wait_for_workers([f"127.0.0.1:{port}"], timeout=1.0, poll=0.2)
    assert time.monotonic() - start < 5
    with socket.socket() as server:  # a listening port is reachable at once
        server.bind(("127.0.0.1", 0))
        server.listen()
        distribute.wait_for_workers([f"127.0.0.1:{server.getsockname()[1]}"], timeout=1.0)


def test_keras_fix_is_not_applied_at_import_and_leaves_other_strategies_alone(digits):
    from keras.src.backend.tensorflow import trainer

    assert not _keras_compat.installed()  # importing tfdynhp patched nothing
    original = trainer.reduce_per_replica
    assert _keras_compat.install() is _keras_compat.NEEDED
    try:
        x, y, _, _ = digits
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert not _keras_compat.is_multi_worker(tf.distribute.get_strategy())
    finally:
        _keras_compat.uninstall()
    assert trainer.reduce_per_replica is original


def _reports(results):
    for rc, out, err in results:
        assert rc == 0, f"worker failed (rc={rc}):\n{err[-3000:]}"


@pytest.mark.slow
def test_dynhp_fit_on_two_workers_prunes_identically(tmp_path):
    """Gate statistics all-reduced -> same masks on both workers; surgery and the optimizer
    rebuilt inside the strategy scope; DynamicBatches grows in whole per-replica batches."""
    out = str(tmp_path / "out_{rank}.npz")
    _reports(multiworker.run_workers("multiworker_fit.py", ["dynhp", out], timeout=150,
                                     env={"MW_EPOCHS": "5"}))
    first, second = (np.load(out.format(rank=r)) for r in (0, 1))
    report, other = (json.loads(str(f["report"])) for f in (first, second))
    # The symbolic build before training reads a few prefetched batches: not compared.
    ignored = {"examples_seen": None, "fit_seconds": None}
    assert {**report, **ignored} == {**other, **ignored}
    assert report["replicas"] == 2
    assert report["params"][-1] < report["params"][0]  # surgery happened
    assert all(b % 2 == 0 for b in report["batch_sizes"])
    assert report["batch_sizes"][-1] > 32  # it grew
    assert report["examples_seen"][1:] == [768] * 5
    assert report["accuracy"][-1] > 0.8
    assert report["plain_iterations"] == 768 // 32  # the plain model, with the fix
    assert any(name.startswith("p") for name in first.files)
    for name in first.files:
        if name != "report":
            np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.slow
def test_plain_keras_fit_on_two_workers_needs_the_fix(tmp_path):
    """(With the fix, a plain Keras model fits in `test_dynhp_fit_on_two_workers...`.)"""
    out = str(tmp_path / "out_{rank}.npz")
    # Without tfdynhp's fix Keras fails (keras-team/keras#20585). When this assertion fails,
    # Keras is fixed: delete tfdynhp/distribute/keras_fix.py and its two callers.
    results = multiworker.run_workers("multiworker_fit.py", ["plain", out, "--no-fix"],
                                      timeout=120, env={"MW_EPOCHS": "1"})
    assert all(rc not in (0, None) for rc, _, _ in results)
    assert all("PerReplica" in err for _, _, err in results)


@pytest.mark.slow
def test_bad_distributed_runs_fail_before_training(tmp_path):
    out = str(tmp_path / "out_{rank}.npz")
    _reports(multiworker.run_workers("multiworker_fit.py", ["bad", out], timeout=90))
    for rank in (0, 1):
        report = json.loads(str(np.load(out.format(rank=rank))["report"]))
        divisible, budget = report["errors"]
        assert "batch_size=33 does not split into whole batches for the 2 replicas" in divisible
        assert "(16 per replica of 2" in budget and "The budget is per replica" in budget
        assert report["untouched"]
    # The chief of a two-worker cluster whose other worker never starts: it fails on its own
    # (a hang would be killed by run_workers' timeout and give no return code).
    results = multiworker.run_workers("multiworker_fit.py", ["plain", out], workers=1,
                                      timeout=60, env={"MW_TIMEOUT": "3"},
                                      ports=multiworker.free_ports(2))
    rc, _, err = results[0]
    assert rc not in (0, None) and "TimeoutError" in err and "did not answer within 3 s" in err


def test_cli_trains_under_mirrored_strategy(tmp_path):
    from tfdynhp import cli

    code = cli.main(["train", "--dataset", "digits", "--arch", "16", "--limit-train", "300",
                     "--epochs", "2", "--distribute", "mirrored", "--out", str(tmp_path),
                     "--quiet"])
    assert code == 0
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["distribute"] == "mirrored" and (tmp_path / "model.keras").exists()
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "digits", "--distribute", "ring", "--out",
                  str(tmp_path / "bad"), "--quiet"])


@pytest.mark.slow
def test_killed_worker_run_resumes_from_the_chiefs_pruned_checkpoint(tmp_path):
    out, checkpoint = str(tmp_path / "out_{rank}.npz"), str(tmp_path / "ckpt" / "run.keras")
    ports = multiworker.free_ports(2)
    killed = multiworker.run_workers(
        "multiworker_fit.py", ["resume", out], timeout=120, ports=ports,
        env={"MW_CHECKPOINT": checkpoint, "MW_KILL_EPOCH": "4", "MW_EPOCHS": "5", "MW_LAMBDA": "200", "MW_THRESHOLD": "0.9",
             "MW_TIMEOUT": "20"})
    assert killed[1][0] == -9  # worker 1 was killed at the end of epoch 4
    # The chief noticed and failed on its own (a hang is killed by run_workers' timeout and
    # gives no return code); wall-clock bounds are left to the machine's load.
    assert killed[0][0] not in (0, None)
    assert not os.path.exists(out.format(rank=0))
    assert distribute.checkpoint_state(checkpoint)["epoch"] == 4
    pruned = [g.units for g in gated_groups(keras.models.load_model(checkpoint))]
    assert pruned != [64, 32]  # the checkpoint holds the narrowed architecture
    _reports(multiworker.run_workers(
        "multiworker_fit.py", ["resume", out], timeout=120,
        env={"MW_CHECKPOINT": checkpoint, "MW_EPOCHS": "5", "MW_TIMEOUT": "20",
             "MW_LAMBDA": "200", "MW_THRESHOLD": "0.9"}))
    first, second = (np.load(out.format(rank=r)) for r in (0, 1))
    report = json.loads(str(first["report"]))
    assert report["start_epoch"] == 4 and report["start_units"] == pruned
    assert report["start_iterations"] > 0 and report["iterations"] > report["start_iterations"]
    assert len(report["loss"]) == 1
    for name in first.files:
        if name != "report":
            np.testing.assert_array_equal(first[name], second[name])


class _RecordingBatches(tfdynhp.DynamicBatches):
    """DynamicBatches that records the example indices of every batch its tf.data pipeline
    gathers in an epoch, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = []

    def _record(self, indices):
        self.reads.append(indices.numpy().tolist())
        return 0

    _parallel_gathers = None  # one gather at a time: recorded in order

    def _gather(self, indices, data):
        with tf.control_dependencies([tf.py_function(self._record, [indices], tf.int32)]):
            return super()._gather(indices, data)


def test_a_gated_fit_reads_batches_in_the_order_of_the_data_seed_alone(digits):
    """`fit(shuffle=True)` (the default) shuffles the order of a PyDataset's batches with
    Python's global `random`; two workers whose `random` differs would then read different
    global batches (review finding 4). A `GatedModel` reads a `DynamicBatches` in the order
    of its own seeded permutation, whatever Python's `random` holds."""
    import random

    x, y = digits[0][:320], digits[1][:320]
    reads = []
    for python_seed in (1, 2):
        keras.utils.set_random_seed(0)
        random.seed(python_seed)  # what differs between two unseeded processes
        model = tfdynhp.gate(make_mlp(64, [16], 10), seed=0)
        model.compile("adam", "sparse_categorical_crossentropy")
        data = _RecordingBatches(x, y, batch_size=32, seed=0)
        model.fit(data, epochs=2, verbose=0)
        reads.append(data.reads)
    assert len(reads[0]) == 2 * 10
    assert reads[0] == reads[1]


@pytest.mark.slow
def test_two_workers_with_default_shuffle_read_the_same_global_batches(tmp_path):
    """The README's how-to (a seeded DynamicBatches, `fit`'s default `shuffle`) on two
    workers whose Python `random` differs: both read the batches in the same order, so each
    global batch is one DynamicBatches batch split between them (review finding 4: worker 0
    trained on half of one batch while worker 1 trained on half of another)."""
    out = str(tmp_path / "out_{rank}.npz")
    _reports(multiworker.run_workers("multiworker_fit.py", ["shuffle", out], timeout=150,
                                     env={"MW_EPOCHS": "2"}))
    reports = [json.loads(str(np.load(out.format(rank=r))["report"])) for r in (0, 1)]
    reads = [report["reads"] for report in reports]
    assert len(reads[0]) == 2
    assert reads[0] == reads[1]
    for epoch in reads[0]:
        assert sorted(i for batch in epoch for i in batch) == list(range(768))
    # Auto-sharding: each worker trains on its own half of every global batch.
    first, second = (report["local_digests"] for report in reports)
    for epoch, global_batches in enumerate(reports[0]["global_digests"]):
        assert len(first[epoch]) == len(second[epoch]) == len(global_batches)
        for mine, theirs, whole in zip(first[epoch], second[epoch], global_batches):
            assert sorted(mine + theirs) == whole
            assert abs(len(mine) - len(theirs)) <= 1


class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill", ["before_rename", "after_rename"])
def test_a_checkpoint_killed_while_saving_is_a_consistent_pair(digits, tmp_path, monkeypatch,
                                                               kill):
    """A kill at any point of `ChiefCheckpoint`'s save leaves the model and its state of the
    same epoch (review finding 17: the `.keras` file and `.state.json` were renamed one after
    the other)."""
    from tfdynhp.distribute import checkpoint as checkpoint_module

    x, y = digits[0][:256], digits[1][:256]
    path = str(tmp_path / "run.keras")
    keras.utils.set_random_seed(0)
    model = tfdynhp.gate(make_mlp(64, [16], 10), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[distribute.ChiefCheckpoint(path)])
    real_replace = os.replace

    def replace(source, destination):
        if str(destination).startswith(path):  # a rename into the checkpoint's place
            if kill == "after_rename":
                real_replace(source, destination)
            raise _Killed(f"killed {kill.replace('_', ' ')} of {destination}")
        real_replace(source, destination)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    with pytest.raises(_Killed):
        model.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, verbose=0,
                  callbacks=[distribute.ChiefCheckpoint(path)])
    monkeypatch.undo()
    restored, state = distribute.resume(path)
    assert state["epoch"] == (2 if kill == "after_rename" else 1)
    assert int(restored.optimizer.iterations.numpy()) == state["epoch"] * (256 // 32)


def test_the_keras_fix_names_tests_and_files_that_exist():
    """The fix says how to know it can go (a test) and where it lives: both must exist."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    paragraph = readme[readme.index("- **The Keras 3 fix**"):]
    paragraph = paragraph[:paragraph.index("\n- ")]
    with open(__file__) as f:
        tests_here = set(re.findall(r"^def (test_\w+)", f.read(), re.MULTILINE))
    for text in (_keras_compat.__doc__, paragraph):
        named = re.findall(r"`(test_\w+)`", text)
        assert named and set(named) <= tests_here, named
    for text in (paragraph, _comment_of_the_fix_test()):
        paths = re.findall(r"tfdynhp/[\w/]+\.py", text)
        assert paths and all(os.path.exists(os.path.join(root, p)) for p in paths), paths


def _comment_of_the_fix_test():
    with open(__file__) as f:
        source = f.read()
    start = source.index("def test_plain_keras_fit_on_two_workers_needs_the_fix")
    return source[start:source.index("\ndef ", start + 1)]
