"""Training on several devices and machines with tf.distribute.

`start_distribution(--distribute)` picks and creates the strategy: `MirroredStrategy` for the devices of one
machine, `MultiWorkerMirroredStrategy` for several machines (configured by `TF_CONFIG`, or by Slurm's variables),
or none. The returned `Distribution` is what the trainers and `fit_run` need of it:

- `scope()`: where models and optimisers are built and restored.
- `dataset(frames)`: each global batch of a `FrameGenerator` (a pure function of seed and global step) split
  deterministically across the replicas, so two replicas compute the updates one replica would.
- `agree(values)`: sums small counters over the workers (one all-reduce), so that a signal or a deadline seen
  by one worker stops all of them at the same step; `check_same_start` uses it to refuse workers started
  differently.
- `chief`: only the chief writes the run folder. A lost peer surfaces as a failed collective, which
  `fit_run` and `report_lost_workers` turn into one `WorkerLost` line.

Two faults of Keras 3.15.1's TensorFlow trainer under a multi-worker collective strategy are mended here, only in
that case (see `mend_keras_for_multi_worker`).

Example:

>>> distribution = start_distribution("auto")
>>> with distribution.scope():
...     model = build_and_compile()
>>> fit_run(model, frames, ..., distribution=distribution)
"""

import atexit
import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from run.errors import DistributeError, WorkerLost

KINDS = ("auto", "none", "mirrored", "multi-worker")
# The Keras release whose trainer `mend_keras_for_multi_worker` was checked against (tests/test_distribute.py
# fails when requirements.txt moves on, so the mends are checked again).
KERAS_CHECKED = "3.15.1"
# How often the multi-worker strategy checks that every peer is alive (TensorFlow's default: every 30 s, waiting
# 10 s for each answer; a peer is lost after 3 failed checks). The checks are answered by TensorFlow's server
# threads, so a busy worker still answers. Together with the runtime's own heartbeats, a worker that dies was
# noticed within 15 to 25 s on 127.0.0.1 (tests/test_distribute.py), and the others stop with `WorkerLost`.
HEALTH_CHECK_SECONDS = 5
HEALTH_CHECK_TIMEOUT = 5
# Seconds a multi-worker run waits at start for every worker of its cluster to come up.
STARTUP_SECONDS = 600


def tf_config(environ=None):
    """The parsed `TF_CONFIG` (`{}` when unset); raises `DistributeError` when it is not valid JSON, or its
    `cluster` is not job names with lists of "host:port" addresses, or its `task` not a type and a whole index."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({error})") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not all(
            isinstance(addresses, list) and all(isinstance(a, str) for a in addresses)
            for addresses in cluster.values()):
        raise DistributeError("TF_CONFIG needs a 'cluster' of job names, each with a list of \"host:port\" "
                              f"addresses, got {text[:200]}")
    if set(cluster) - {"chief", "worker"}:
        raise DistributeError(f"TF_CONFIG: only 'chief' and 'worker' jobs take part in this training, got "
                              f"{sorted(cluster)}")
    if task is not None and not (isinstance(task, dict) and isinstance(task.get("type"), str)
                                 and isinstance(task.get("index", 0), int) and task.get("index", 0) >= 0):
        raise DistributeError(f"TF_CONFIG's 'task' needs a 'type' (such as \"worker\") and a whole 'index', "
                              f"got {task}")
    return config


def cluster_tasks(config):
    """`[(job, index, address)]` of a TF_CONFIG's cluster, chief first, then workers by index."""
    cluster = config.get("cluster") or {}
    order = sorted(cluster, key=lambda job: (job != "chief", job))
    return [(job, index, address) for job in order for index, address in enumerate(cluster[job])]


def _slurm_tasks(environ):
    """Tasks of the Slurm job step this process runs in (`srun`), 0 outside one."""
    text = environ.get("SLURM_STEP_NUM_TASKS", "") if environ.get("SLURM_JOB_ID") else ""
    return int(text) if text.isdigit() else 0


def multi_worker_requested(requested, environ=None):
    """Whether `--distribute requested` means a multi-worker cluster here, known before TensorFlow starts:
    `multi-worker`, or `auto` with a TF_CONFIG cluster of more than one task or (without TF_CONFIG) inside a
    Slurm job step of more than one task."""
    environ = os.environ if environ is None else environ
    if requested != "auto":
        return requested == "multi-worker"
    config = tf_config(environ)
    return len(cluster_tasks(config)) > 1 if config else _slurm_tasks(environ) > 1


def _place(tasks, task):
    """`(position, chief)` of `task` (TF_CONFIG's `{"type", "index"}`) among `tasks` (`cluster_tasks`); the
    position is `None` when it is not one of them."""
    job, index = task.get("type"), task.get("index", 0)
    positions = [i for i, (name, number, _) in enumerate(tasks) if (name, number) == (job, index)]
    chief = index == 0 and job == ("chief" if any(name == "chief" for name, _, _ in tasks) else "worker")
    return (positions[0] if positions else None), chief


def writes_run_folder(requested, environ=None):
    """Whether this process writes the run folder under `--distribute requested`: every process does, except a
    multi-worker task other than the chief (known from TF_CONFIG, or Slurm's SLURM_PROCID)."""
    environ = os.environ if environ is None else environ
    if not multi_worker_requested(requested, environ):
        return True
    config = tf_config(environ)
    if config:
        return _place(cluster_tasks(config), config.get("task") or {})[1]
    return environ.get("SLURM_PROCID", "0") == "0"


def choose(requested, environ=None, gpus=None):
    """The strategy `--distribute requested` means here: `"none"`, `"mirrored"` or `"multi-worker"`.

    `auto` is multi-worker when TF_CONFIG names a cluster of more than one task (or, without TF_CONFIG, inside a
    Slurm job step of more than one task), mirrored when more than one GPU is visible, and none otherwise.

    Args:
        requested: one of `KINDS`.
        environ: the environment (default `os.environ`).
        gpus: the number of visible GPUs (default: asked of TensorFlow).
    """
    if requested not in KINDS:
        raise DistributeError(f"--distribute must be one of {', '.join(KINDS)}, got {requested!r}")
    if requested != "auto":
        return requested
    if multi_worker_requested(requested, environ):
        return "multi-worker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 1 else "none"


def local_cluster(count):
    """`TF_CONFIG` values (JSON text) for `count` workers on 127.0.0.1, on ports free now: a cluster on one
    machine, to try multi-worker training (tests/test_distribute.py, bench/training.py).

    Example:

    >>> first, second = local_cluster(2)  # run one trainer with TF_CONFIG=first, another with TF_CONFIG=second
    """
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
            for index in range(count)]


def collective_failure(error):
    """Whether `error` is TensorFlow's report of collectives aborted because a peer of the cluster stopped
    answering (its message names the lost task)."""
    import tensorflow as tf

    text = str(getattr(error, "message", error))
    return isinstance(error, tf.errors.OpError) and bool(re.search(r"/job:\w+/replica:\d+/task:\d+", text)) and any(
        sign in text for sign in ("aborted", "unhealthy", "is down", "heartbeat", "Unavailable", "unavailable"))


def weights_digest(model):
    """A short hash of a model's weights: every worker prints it at the end, and workers in sync print the same
    one."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def report_lost_workers(main):
    """Wraps a trainer's `main` so that a peer lost at any point of a multi-worker run (while models are built,
    restored or saved, not only while training, where `fit_run` says more) ends in one `WorkerLost` line instead
    of TensorFlow's traceback."""
    import functools

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as error:
            if _started is None or not collective_failure(error):
                raise
            raise WorkerLost(_started.lost_message(error)) from None

    return wrapped


@dataclass
class Distribution:
    """A training run's place in its cluster, and the strategy it trains under.

    Args:
        kind: `"none"`, `"mirrored"` or `"multi-worker"`.
        strategy: the `tf.distribute.Strategy`, or `None` for `"none"`.
        worker: this process's index in the cluster (0 on one machine).
        workers: processes in the cluster.
        chief: whether this process writes the run folder.
        tasks: `(job, index, address)` of each task of the cluster (`cluster_tasks`); this one is `tasks[worker]`.
    """

    kind: str = "none"
    strategy: object = None
    worker: int = 0
    workers: int = 1
    chief: bool = True
    tasks: tuple = ()

    def name(self, position=None):
        """A task of the cluster as messages name it, `"worker 1 (10.0.0.2:2222)"`; this process by default."""
        if not self.tasks:
            return "this process"
        job, index, address = self.tasks[self.worker if position is None else position]
        return f"{job} {index} ({address})"

    @property
    def replicas(self):
        """Replicas in sync: each takes `batch_size / replicas` windows of every global batch."""
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def scope(self):
        """The strategy's scope (nothing for `"none"`): build, compile and restore models in it."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self):
        """One line for the console: the strategy, its replicas and this process's role."""
        devices = ", ".join(device.split("/")[-1].replace("device:", "")
                            for device in sorted(self.strategy.extended.worker_devices))
        text = f"distribute: {self.kind}, {self.replicas} replica{'s' if self.replicas != 1 else ''}"
        if self.kind != "multi-worker":
            return f"{text} ({devices})"
        role = "the chief, which writes the run folder" if self.chief else "it writes nothing to the run folder"
        return f"{text} on {self.workers} workers; this is {self.name()} on {devices}, {role}"

    def output_folder(self, run_dir):
        """Where this process writes: the run folder on the chief; on another worker a temporary folder, removed
        when the process exits, where it writes what the chief writes (checkpoints, logs) so that both do the
        same work step for step."""
        from pathlib import Path

        if self.chief:
            return Path(run_dir)
        folder = Path(tempfile.mkdtemp(prefix=f"wavegen-worker{self.worker}-"))
        atexit.register(shutil.rmtree, folder, True)
        return folder

    def finish(self, model, run_dir):
        """Ends a worker's training: with several workers each prints its weights' digest (the same on all when
        they are in sync), and a worker other than the chief says who wrote `run_dir`. Returns whether this
        process goes on to write the run's final files (the chief does)."""
        if self.workers > 1:
            print(f"{self.name()}: weights {weights_digest(model)}")
        if not self.chief:
            print(f"{self.name()}: done; the chief wrote {run_dir}")
        return self.chief

    def resume_command(self, command):
        """The command that resumes a run, as the interrupt message gives it."""
        if self.kind != "multi-worker":
            return command
        return f"{command}\n(on every worker of the cluster, each with its own TF_CONFIG)"

    def check_batch(self, batch_size, group=1):
        """Refuses (`DistributeError`) a global `--batch-size` that the replicas cannot share equally, each in
        whole groups of `group` (a WaveGAN's `--pack`).

        Args:
            batch_size: the global batch.
            group: examples that each replica's share must hold a whole number of.
        """
        if group > 1 and batch_size % (self.replicas * group):
            per = f" on each of {self.replicas} replicas" if self.replicas > 1 else ""
            raise DistributeError(f"--batch-size {batch_size} cannot be split into groups of --pack {group}{per}; "
                                  f"give a multiple of {self.replicas * group}")
        if batch_size % self.replicas:
            raise DistributeError(f"--batch-size {batch_size} cannot be split equally across {self.replicas} "
                                  f"replicas; give a multiple of {self.replicas}")

    def dataset(self, frames, groups=1):
        """The batches of a `FrameGenerator` for `fit`: as they are without a strategy; else each global batch
        split across the replicas by `data.frames.replica_rows`, every input pipeline drawing the global batch
        and keeping its replicas' rows.

        Args:
            frames: the `FrameGenerator`.
            groups: equal parts of each batch that every replica takes its share of (a GAN's critic steps).
        """
        if self.strategy is None:
            return frames.as_dataset()
        import tensorflow as tf

        replicas = self.replicas

        def pipeline(context):
            local = replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local
            return frames.as_dataset(replicas=(range(first, first + local), replicas, groups))

        options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
        return self.strategy.distribute_datasets_from_function(pipeline, options)

    def agree(self, values):
        """`values` (small counts) summed over the workers; as they are on one machine. Every worker must call
        it at the same points, as for any collective."""
        import tensorflow as tf

        if getattr(self, "_sum", None) is None:
            strategy, per_worker = self.strategy, self.replicas // self.workers

            @tf.function
            def total(local):
                def replica():
                    # Only each worker's first replica counts, so a worker with several devices votes once.
                    context = tf.distribute.get_replica_context()
                    mine = tf.where(context.replica_id_in_sync_group % per_worker == 0, local, tf.zeros_like(local))
                    return context.all_reduce("SUM", mine)

                return strategy.experimental_local_results(strategy.run(replica))[0]

            self._sum = total
        # float64: whole numbers up to 2^53 add up exactly (`check_same_start` sums squares of them).
        return [float(v) for v in self._sum(tf.constant([float(v) for v in values], tf.float64))]

    def check_same_start(self, settings, state):
        """Refuses (`DistributeError`) a cluster whose workers were given different settings or start from
        different checkpoints: each worker's `(epoch, step, hash of settings)` is compared in one all-reduce (all
        equal exactly when the sum of squares times the count equals the squared sum), so all refuse together
        rather than train apart or wait on each other forever.

        Args:
            settings: the run's resolved settings, as JSON-able values.
            state: `{"epoch": ..., "step": ...}` this worker starts from.
        """
        if self.workers == 1:
            return
        import hashlib

        text = json.dumps(settings, sort_keys=True, default=str)
        # 16 bits, so that squares times the workers stay exact in float64 for any cluster size one meets.
        mine = [state["epoch"], state["step"], int(hashlib.sha256(text.encode()).hexdigest()[:4], 16)]
        totals = self.agree(mine + [value * value for value in mine])
        if any(totals[3 + i] * self.workers != totals[i] ** 2 for i in range(3)):
            raise DistributeError(
                f"the workers of the cluster do not agree on the run: {self.name()} starts at epoch "
                f"{state['epoch']}, step {state['step']}, but not every worker does, or their flags differ; give "
                "every worker the same command and the same run folder (a shared file system)")

    def lost_message(self, error, checkpoint=None):
        """The one line of a `WorkerLost`: which peer `error` (a failed collective) lost, and what is kept."""
        kept = f"the last checkpoint, {checkpoint}, is intact" if checkpoint else \
            "the last checkpoint in the run folder is kept"
        return (f"lost {self.lost_worker(error)}: it stopped answering, so {self.name()} stopped too "
                f"({type(error).__name__}); {kept}")

    def lost_worker(self, error):
        """Which peer a failed collective (`error`, TensorFlow's message) lost: `"worker 1 (10.0.0.2:2222)"`, or
        `"a worker"` when the message does not say."""
        text = str(getattr(error, "message", error))
        for job, index in re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", text):
            for position, (task_job, task_index, _) in enumerate(self.tasks):
                if (task_job, task_index) == (job, int(index)) and position != self.worker:
                    return self.name(position)
        return "a worker"


_MIRRORED = {}
_started = None  # the multi-worker Distribution this process started, for `report_lost_workers`


def start_distribution(requested="auto"):
    """Creates the strategy `--distribute requested` names and returns its `Distribution`.

    Call it before TensorFlow runs any operation: the multi-worker strategy configures the runtime (it waits
    here until every worker of the cluster has started). Mirrored uses every GPU, or every logical CPU device
    when there is no GPU (one, unless a test made two).

    Raises:
        DistributeError: a malformed TF_CONFIG, multi-worker without a cluster to join, or a cluster whose
            workers did not all start within `STARTUP_SECONDS`.
    """
    kind = choose(requested)
    if kind == "none":
        return Distribution()
    import tensorflow as tf

    if kind == "mirrored":
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU")) or \
                  tuple(d.name for d in tf.config.list_logical_devices("CPU"))
        # One strategy per process: a second one over the same devices would reuse its collectives' instance keys
        # with other shapes ("Shape mismatch in the collective instance"), so a process that trains twice reuses it.
        if devices not in _MIRRORED:
            _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
        return Distribution("mirrored", _MIRRORED[devices])
    config = tf_config()
    if config:
        tasks = cluster_tasks(config)
        task = config.get("task") or {}
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    elif os.environ.get("SLURM_JOB_ID"):
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        tasks = cluster_tasks({"cluster": resolver.cluster_spec().as_dict()})
        task = {"type": resolver.task_type, "index": int(resolver.task_id)}
    else:
        raise DistributeError("--distribute multi-worker needs a cluster: set TF_CONFIG on every worker (see the "
                              "README), or run under Slurm")
    position, chief = _place(tasks, task)
    if position is None:
        raise DistributeError("TF_CONFIG needs a 'cluster' of worker addresses and a 'task' naming this "
                              f"process's place in it ('type' and 'index'), got task {task}")
    mend_keras_for_multi_worker()
    # Private class settings: the health check's pace (see HEALTH_CHECK_SECONDS), and a bounded wait for the
    # cluster at start (TensorFlow's default waits for ever).
    from tensorflow.python.distribute import collective_all_reduce_strategy as collective

    collective.CollectiveAllReduceExtended._check_health_interval = HEALTH_CHECK_SECONDS
    collective.CollectiveAllReduceExtended._check_health_timeout = HEALTH_CHECK_TIMEOUT
    collective.CollectiveAllReduceExtended._check_health_initial_timeout = STARTUP_SECONDS
    print(f"waiting for the {len(tasks)} workers of the cluster (up to {STARTUP_SECONDS // 60} minutes)", flush=True)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as error:
        if "Timeout waiting for the cluster" not in str(error):
            raise
        raise DistributeError(f"not every worker of the cluster started within {STARTUP_SECONDS // 60} minutes "
                              f"({', '.join(address for _, _, address in tasks)})") from None
    global _started
    _started = Distribution("multi-worker", strategy, worker=position, workers=len(tasks), tasks=tuple(tasks),
                            chief=chief)
    return _started


def mend_keras_for_multi_worker():
    """Mends two faults of Keras' TensorFlow trainer that stop `fit` under a multi-worker collective strategy
    (keras-team/keras#20585, tensorflow#72388); idempotent, and nothing changes for other strategies.

    1. `_maybe_symbolic_build` reduces the first distributed batch with `strategy.reduce(..., axis=None)` eagerly,
       which the collective strategy cannot do with a `PerReplica` batch ("Attempt to convert a value
       (PerReplica...) to a Tensor"). One replica's local batch is all a symbolic build needs.
    2. `reduce_per_replica` reduces every logged value with `axis=0`; the loss and metrics are scalars ("Invalid
       reduction dimension 0 for input with 0 dimensions"). Scalars are reduced with `axis=None`.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_wavegen_mended", False):
        return
    import tensorflow as tf
    from keras import tree

    def multi_worker(strategy):
        return trainer._collective_all_reduce_multi_worker(strategy)

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def local_batch(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tree.map_structure(lambda v: local_batch(v, strategy), next(batches))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def mean(value):
            rank = local_batch(value, strategy).shape.rank
            return strategy.reduce("MEAN", value, axis=None if rank == 0 else 0)

        return tree.map_structure(mean, values)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    trainer._wavegen_mended = True
