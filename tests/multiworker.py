"""Runs a script as several TensorFlow workers on 127.0.0.1, with free ports and TF_CONFIG,
killing them all after a bounded time (tests and benches)."""

import json
import os
import socket
import subprocess
import sys
import time

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def free_ports(count):
    """`count` distinct TCP ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def run_workers(script, args, workers=2, timeout=150, env=None, ports=None):
    """Starts `workers` processes of `script args`, waits for all of them at most `timeout`
    seconds (then kills them), and returns their `(returncode, stdout, stderr)` in rank order
    (returncode None for a killed worker)."""
    ports = ports or free_ports(workers)
    processes = []
    for index in range(workers):
        environment = {**os.environ, **(env or {}), "TF_CONFIG": tf_config(ports, index),
                       "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, script), *[a.format(rank=index) for a in args]],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    deadline = time.monotonic() + timeout
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, out, err))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            results.append((None, out, err))
    return results
