"""Training under tf.distribute: the strategy `--distribute` picks, the replicas' shares of each batch, two
replicas computing what one does (two logical CPU devices, made by conftest.py), and clusters of two worker
processes on 127.0.0.1 that train in sync, write one run folder, stop together and resume exactly.

Interrupts and kills happen at exact steps through the `WAVEGEN_KILL_AT` hook (data/faults.py).
"""

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_FLAGS, script_env, tone, write_wav
from tests import forked

WAVENET_FLAGS = [*TINY_FLAGS, "--epochs", "2", "--sample-every", "1"]
GAN_FLAGS = ["--slice-length", "4096", "--model-dim", "2", "--latent-dim", "8", "--batch-size", "2",
             "--steps-per-epoch", "2", "--epochs", "2", "--sample-every", "1"]


@pytest.fixture
def audio(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.05, 24000).astype(np.float32)
    return write_wav(tmp_path / "audio.wav", tone(3.0, frequencies=(300.0, 710.0)) + noise)


def cluster(script, args, tmp_path, kill_at=(None, None), timeout=300, extra=((), ())):
    """Runs `script args` as the two workers of a TF_CONFIG cluster on 127.0.0.1 (worker 0 is the chief).

    `kill_at[i]` sets worker i's `WAVEGEN_KILL_AT`; `extra[i]` are more arguments for worker i alone. Each worker
    gets its own empty TMPDIR (`tmp_path/tmp<i>`), so a test can see what it leaves there. Returns
    `[(returncode, stdout, stderr)]` by worker, with the workers' process ids as `.pids`.
    """
    from run.distribute import local_cluster

    workers = []
    for index, tf_config in enumerate(local_cluster(2)):
        temporary = tmp_path / f"tmp{index}"
        temporary.mkdir(exist_ok=True)
        env = script_env({"TMPDIR": str(temporary), "TF_CONFIG": tf_config})
        if kill_at[index]:
            env["WAVEGEN_KILL_AT"] = kill_at[index]
        workers.append(forked.launch(ROOT / script, *args, *extra[index], cwd=tmp_path, env=env))
    results = Results()
    results.pids = [worker.pid for worker in workers]
    try:
        for worker in workers:
            worker.wait(timeout)  # a worker that hangs fails the test here
            results.append((worker.returncode, worker.stdout, worker.stderr))
    finally:
        for worker in workers:
            worker.kill()
    return results


def strings(items):
    return [str(item) for item in items]


class Results(list):
    pids = ()


def digests(results):
    return [re.search(r"weights ([0-9a-f]{16})", out)[1] for _, out, _ in results]


def weights(path):
    import keras

    import models  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path).get_weights()


def assert_same_weights(first, second, atol=1e-5):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def assert_written_by_the_chief(run_dir, results, tmp_path):
    """Only worker 0 wrote the run folder, and worker 1's temporary folder is gone."""
    events = list(Path(run_dir, "logs").rglob("events.out.tfevents.*"))
    assert events, "the chief writes TensorBoard logs"
    # TensorBoard names each event file after the process that wrote it: ...<host>.<pid>.<n>.v2.
    writers = {int(re.search(r"\.(\d+)\.\d+\.v2$", path.name)[1]) for path in events}
    assert writers == {results.pids[0]}, (writers, results.pids)
    assert list((tmp_path / "tmp1").iterdir()) == [], "worker 1 removes its temporary folder"
    assert "written by the chief" in results[1][1]


# --- choosing a strategy; shares of a batch ------------------------------------------------------------------


def test_distribute_auto_and_the_chief_follow_tf_config():
    from run.distribute import choose, writes_run_folder
    from run.errors import DistributeError

    two = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}})
    one = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})
    assert choose("auto", environ={}, gpus=0) == "none"
    assert choose("auto", environ={}, gpus=1) == "none"
    assert choose("auto", environ={}, gpus=2) == "mirrored"
    assert choose("auto", environ={"TF_CONFIG": two}, gpus=2) == "multi-worker"
    assert choose("auto", environ={"TF_CONFIG": one}, gpus=0) == "none"
    assert choose("mirrored", environ={"TF_CONFIG": two}, gpus=0) == "mirrored"
    with pytest.raises(DistributeError, match="TF_CONFIG is not valid JSON"):
        choose("auto", environ={"TF_CONFIG": "{cluster"}, gpus=0)

    assert writes_run_folder("auto", {"TF_CONFIG": two}) is False  # worker 1
    assert writes_run_folder("none", {"TF_CONFIG": two}) is True  # not in the cluster: its own run
    assert writes_run_folder("auto", {"TF_CONFIG": two.replace('"index": 1', '"index": 0')}) is True
    with_chief = {"cluster": {"chief": ["127.0.0.1:3"], "worker": ["127.0.0.1:1"]}, "task": {"type": "worker",
                                                                                            "index": 0}}
    assert writes_run_folder("auto", {"TF_CONFIG": json.dumps(with_chief)}) is False  # the chief is "chief"
    assert writes_run_folder("multi-worker", {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1"}) is False
    assert writes_run_folder("multi-worker", {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}) is True
    # auto inside a Slurm job step (srun) of several tasks, without TF_CONFIG: multi-worker.
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}
    assert choose("auto", environ=slurm, gpus=0) == "multi-worker"
    assert writes_run_folder("auto", slurm) is False
    assert choose("auto", environ={**slurm, "SLURM_STEP_NUM_TASKS": "1"}, gpus=0) == "none"


def test_a_multi_worker_run_needs_a_run_folder_and_resumes_on_any_machines(tmp_path, monkeypatch):
    import train_wavenet
    from run.errors import RunFolderError

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(RunFolderError, match="a multi-worker run needs --output-dir"):
        train_wavenet.resolve([])
    # --distribute describes the machines, not the run: a resumed run takes it from its own flags.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.json").write_text('{"folder": "epoch_0001", "epoch": 1, "step": 0}')
    (run_dir / "config.json").write_text(json.dumps({"trainer": "wavenet", "distribute": "multi-worker",
                                                     "epochs": 5}))
    monkeypatch.delenv("TF_CONFIG")
    config, _ = train_wavenet.resolve(["--resume", "--output-dir", str(run_dir)])
    assert (config.distribute, config.epochs) == ("auto", 5)


def test_replica_rows_share_every_part_of_a_batch_once():
    from data.frames import replica_rows

    assert replica_rows(4, 0, 2).tolist() == [0, 1]
    assert replica_rows(4, 1, 2).tolist() == [2, 3]
    # A GAN step: 2 critic batches of 4; each replica takes its half of each.
    assert replica_rows(8, 0, 2, groups=2).tolist() == [0, 1, 4, 5]
    assert replica_rows(8, 1, 2, groups=2).tolist() == [2, 3, 6, 7]
    assert sorted(np.concatenate([replica_rows(12, r, 3, 2) for r in range(3)]).tolist()) == list(range(12))
    with pytest.raises(ValueError, match="cannot be shared by 3 replicas"):
        replica_rows(8, 0, 3, groups=2)


def test_sharded_dataset_yields_each_replicas_rows_of_the_global_batch():
    from data.frames import FrameGenerator, replica_rows

    signal_ = tone(2.0)
    frames = FrameGenerator([signal_], 64, 4, 3, mode="slice", seed=5)
    whole = [frames[i][0] for i in range(3)]
    shared = [element[0].numpy() for element in frames.as_dataset(replicas=(range(2), 2, 2))]
    assert len(shared) == 6  # one element per replica per step, in replica order
    for step in range(3):
        for replica in range(2):
            np.testing.assert_array_equal(shared[2 * step + replica], whole[step][replica_rows(4, replica, 2, 2)])


def test_a_batch_the_replicas_cannot_share_is_refused(audio, tmp_path):
    import cli
    import train_wavenet

    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda: train_wavenet.main(strings([*WAVENET_FLAGS, "--train", audio, "--batch-size", "3",
                                            "--output-dir", tmp_path / "run", "--distribute", "mirrored"])),
                "train_wavenet.py")
    assert exit_.value.code == 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tf_config, message", [
    ("{cluster", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 5}}',
     "TF_CONFIG needs a 'cluster' of worker addresses and a 'task' naming this process's place in it"),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG needs a 'cluster' of job names, each with a list"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": "one"}}',
     "TF_CONFIG's 'task' needs a 'type'"),
])
def test_a_bad_tf_config_is_refused_in_one_line(audio, tmp_path, monkeypatch, capsys, tf_config, message):
    import cli
    import train_wavenet

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda: train_wavenet.main(strings([*WAVENET_FLAGS, "--train", audio, "--output-dir",
                                                    tmp_path / "run", "--distribute", "multi-worker"])),
                "train_wavenet.py")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"train_wavenet.py: error: {message}"), err
    assert not (tmp_path / "run").exists()


class StubModel:
    stop_training = False


@pytest.mark.parametrize("others, status", [([0.0, 0.0], "ok"), ([1.0, 0.0], "interrupted"),
                                            ([0.0, 1.0], "time_limit"), ([1.0, 1.0], "interrupted")])
def test_guard_stops_on_what_any_worker_saw(others, status):
    """The vote `fit_run` gives the Guard: this worker saw nothing, the other worker's flags decide."""
    from run.callbacks import Guard

    votes = []

    def agree(flags):
        votes.append(list(flags))
        return [mine + theirs for mine, theirs in zip(flags, others)]

    guard = Guard(agree=agree)
    guard.set_model(StubModel())
    guard.params = {"steps": 4}
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(1, {"loss": 1.0})
    assert votes == [[0.0, 0.0]]
    assert guard.status == status
    assert guard.model.stop_training == (status != "ok")
    if status != "ok":
        assert guard.stopped_at == (0, 2)


def test_check_same_start_refuses_unless_every_worker_sent_the_same():
    from run.distribute import Distribution
    from run.errors import DistributeError

    class Cluster(Distribution):
        def __init__(self, other):
            super().__init__("multi-worker", workers=2, tasks=(("worker", 0, "a:1"), ("worker", 1, "b:2")))
            self.other = other

        def agree(self, values):  # the other worker sends the same settings, from `other`'s epoch
            theirs = list(values)
            theirs[0], theirs[3] = self.other, self.other ** 2
            return [mine + their for mine, their in zip(values, theirs)]

    Cluster(3).check_same_start({"layers": 10}, {"epoch": 3, "step": 0})
    with pytest.raises(DistributeError, match="the workers of the cluster do not agree on the run: worker 0"):
        Cluster(2).check_same_start({"layers": 10}, {"epoch": 3, "step": 0})


def test_a_collective_aborted_for_a_lost_peer_becomes_one_line_naming_it(monkeypatch):
    import tensorflow as tf

    from run import distribute
    from run.errors import WorkerLost

    tasks = (("worker", 0, "10.0.0.1:2222"), ("worker", 1, "10.0.0.2:2222"))
    me = distribute.Distribution("multi-worker", worker=0, workers=2, tasks=tasks)
    monkeypatch.setattr(distribute, "_started", me)
    message = ("Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are "
               "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n")

    def build_model():  # a peer dies while variables are broadcast, outside fit
        raise tf.errors.UnavailableError(None, None, message)

    with pytest.raises(WorkerLost) as lost:
        distribute.report_lost_workers(build_model)()
    assert str(lost.value) == ("lost worker 1 (10.0.0.2:2222): it stopped answering, so worker 0 (10.0.0.1:2222) "
                               "stopped too (UnavailableError); the last checkpoint in the run folder is kept")

    def bug():  # an error that names no lost peer keeps its traceback
        raise tf.errors.InternalError(None, None, "a bug in an op")

    with pytest.raises(tf.errors.InternalError):
        distribute.report_lost_workers(bug)()


def test_the_keras_mends_were_checked_against_the_pinned_keras():
    import keras

    from run.distribute import KERAS_CHECKED

    pinned = re.search(r"^keras==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)[1]
    assert keras.__version__ == pinned == KERAS_CHECKED, "check run.distribute's mends against the new Keras"


# --- two replicas in one process compute what one does ------------------------------------------------------


@pytest.mark.slow
def test_two_replicas_train_the_wavenet_as_one_does(audio, tmp_path):
    """The logistic-mixture loss, the bits-per-sample metric and CausalConv1D's own gradient under a mirrored
    strategy of two devices: the same weights and losses as one device with the same global batch."""
    import train_wavenet

    flags = [*WAVENET_FLAGS, "--train", audio, "--head", "regressor", "--sample-every", "0"]
    train_wavenet.main(strings([*flags, "--output-dir", tmp_path / "one", "--distribute", "none"]))
    train_wavenet.main(strings([*flags, "--output-dir", tmp_path / "two", "--distribute", "mirrored"]))
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["distribute"] == "mirrored"
    assert_same_weights(weights(tmp_path / "one" / "model.keras"), weights(tmp_path / "two" / "model.keras"))
    one, two = ((tmp_path / name / "history.csv").read_text().splitlines() for name in ("one", "two"))
    columns = one[0].split(",")
    for row_one, row_two in zip(one[1:], two[1:]):
        for name, a, b in zip(columns, row_one.split(","), row_two.split(",")):
            if name in ("loss", "val_loss", "bits_per_sample", "val_bits_per_sample"):
                assert float(a) == pytest.approx(float(b), rel=1e-5, abs=1e-5), name


@pytest.mark.slow
def test_two_replicas_train_the_wavegan_as_one_does():
    """WGAN-GP under two replicas: critic steps (two here, to keep the traced step small), the gradient penalty,
    both optimisers, and the random latents, mixing weights and phase shifts drawn for the global batch: the same
    updates and losses as one device with the same global batch."""
    import keras

    import models
    from data.frames import FrameGenerator
    from run.distribute import Distribution, start_distribution

    steps = 2
    frames = FrameGenerator([tone(2.0, frequencies=(300.0, 710.0))], 4096, 2 * steps, 2, mode="slice", seed=3)

    def train(distribution):
        keras.utils.set_random_seed(0)
        with distribution.scope():
            gan = models.WaveGAN(models.build_generator(8, 2, 4096, 8000), models.build_discriminator(2, 4096, 2, 8000),
                                 latent_dim=8, critic_steps=steps)
            adam = dict(learning_rate=1e-3, beta_1=0.5, beta_2=0.9)
            gan.compile(d_optimizer=keras.optimizers.Adam(**adam), g_optimizer=keras.optimizers.Adam(**adam))
        history = gan.fit(distribution.dataset(frames, groups=steps), epochs=1, steps_per_epoch=2, verbose=0)
        return history.history, gan.generator.get_weights() + gan.discriminator.get_weights()

    two = start_distribution("mirrored")
    assert two.replicas == 2
    (losses_one, weights_one), (losses_two, weights_two) = train(Distribution()), train(two)
    assert_same_weights(weights_one, weights_two)
    for name in ("d_loss", "g_loss", "gradient_penalty"):
        assert losses_two[name][0] == pytest.approx(losses_one[name][0], rel=1e-5, abs=1e-6), name


# --- two worker processes ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_train_a_wavenet_in_sync_and_only_the_chief_writes(audio, tmp_path):
    run_dir = tmp_path / "run"
    results = cluster("train_wavenet.py", [*WAVENET_FLAGS, "--train", audio, "--output-dir", run_dir], tmp_path)
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    first, second = digests(results)
    assert first == second
    for name in ("model.keras", "config.json", "history.csv", "checkpoints/latest.json", "samples/epoch_0002.wav"):
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    assert_written_by_the_chief(run_dir, results, tmp_path)
    # The same updates as one process with the same global batch (float tolerance).
    import train_wavenet

    train_wavenet.main(strings([*WAVENET_FLAGS, "--train", audio, "--output-dir", tmp_path / "one",
                                "--distribute", "none", "--sample-every", "0"]))
    assert_same_weights(weights(run_dir / "model.keras"), weights(tmp_path / "one" / "model.keras"))


@pytest.mark.slow
def test_two_workers_train_a_wavegan_in_sync_and_only_the_chief_writes(audio, tmp_path):
    run_dir = tmp_path / "run"
    # The cross-entropy GAN (one critic step) keeps the traced step small; WGAN-GP is tested on two replicas above.
    results = cluster("train_gan.py", [*GAN_FLAGS, "--train", audio, "--output-dir", run_dir, "--loss", "bce"],
                      tmp_path)
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    first, second = digests(results)
    assert first == second
    for name in ("generator.keras", "discriminator.keras", "checkpoints/latest.json", "samples/epoch_0002.wav"):
        assert (run_dir / name).is_file(), name
    assert_written_by_the_chief(run_dir, results, tmp_path)


@pytest.mark.slow
def test_a_signal_to_any_worker_stops_the_cluster_and_resume_continues_exactly(audio, tmp_path):
    import train_wavenet

    run_dir = tmp_path / "run"
    flags = [*WAVENET_FLAGS, "--train", audio, "--output-dir", run_dir, "--sample-every", "0"]
    # Ctrl-C to worker 1 after the first step of epoch 2: both stop there, the chief writes the checkpoint.
    results = cluster("train_wavenet.py", flags, tmp_path, kill_at=(None, "step-end:3:SIGINT"))
    assert [code for code, _, _ in results] == [130, 130], [err[-2000:] for _, _, err in results]
    state = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 1)
    assert "SIGINT" in results[1][2] and "--resume" in results[0][2]
    # Resumed; SIGTERM to the chief after the last step of epoch 2, which leaves the run whole.
    results = cluster("train_wavenet.py", [*flags, "--resume"], tmp_path, kill_at=("step-end:1:SIGTERM", None))
    assert [code for code, _, _ in results] == [130, 130], [err[-2000:] for _, _, err in results]
    state = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 0)
    assert [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]] == ["0", "1"]
    # The same weights as one uninterrupted process (a resume that runs to exit 0: the kill -9 test below); its
    # checkpoint, since its model.keras holds the moving average (--ema) rather than the weights.
    train_wavenet.main(strings([*flags, "--output-dir", tmp_path / "one", "--distribute", "none"]))
    assert_same_weights(weights(run_dir / "checkpoints" / "epoch_0002" / "model.keras"),
                        weights(tmp_path / "one" / "checkpoints" / "epoch_0002" / "model.keras"))


def test_workers_given_different_settings_refuse_together(audio, tmp_path):
    run_dir = tmp_path / "run"
    flags = [*WAVENET_FLAGS, "--train", audio, "--output-dir", run_dir]
    # Worker 1 gets another width (a flag typed differently on one machine): it would build other variables.
    results = cluster("train_wavenet.py", flags, tmp_path, extra=([], ["--residual-channels", "16"]))
    for code, _, err in results:
        assert code == 2, err[-2000:]
        assert err.strip().splitlines()[-1].startswith("train_wavenet.py: error: the workers of the cluster do not "
                                                       "agree on the run")
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_with_a_message_naming_it_and_the_run_resumes(audio, tmp_path):
    run_dir = tmp_path / "run"
    flags = [*WAVENET_FLAGS, "--train", audio, "--output-dir", run_dir, "--sample-every", "0"]
    results = cluster("train_wavenet.py", flags, tmp_path, kill_at=(None, "step-end:3"), timeout=120)
    (code, _, err), (killed, _, _) = results
    assert killed == -signal.SIGKILL
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert re.match(r"train_wavenet\.py: error: lost worker 1 \(127\.0\.0\.1:\d+\): it stopped "
                                        r"answering", last), err[-2000:]
    assert "epoch_0001" in last and "--resume" in last
    assert "Traceback" not in err
    results = cluster("train_wavenet.py", [*flags, "--resume"], tmp_path)
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    assert len(set(digests(results))) == 1
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
