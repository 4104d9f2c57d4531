"""The run machinery (`run/`) on its own: callback order in `fit_run`, run-folder policy, one-line errors, and
the layout that keeps the packages free of cycles."""

import ast
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import ROOT, tone

SCRIPTS = ("train_wavenet.py", "train_gan.py", "generate.py", "evaluate.py")


def tiny_fit(run_dir, epochs=2, **kwargs):
    """`fit_run` of a two-layer WaveNet on a tone, saving `model.keras` checkpoints."""
    import models
    from data.frames import FrameGenerator
    from run import fit_run

    keras.utils.set_random_seed(0)
    model = models.build_wavenet(stacks=1, layers=2, residual_channels=4, skip_channels=4, sample_rate=8000)
    model.compile(keras.optimizers.Adam(1e-3), models.loss_for("categorical"))
    frames = FrameGenerator([tone(1.0)], 64, 2, 2, seed=0, epochs=epochs)
    return fit_run(model, frames, run_dir=run_dir, epochs=epochs,
                   save=lambda m, folder: m.save(folder / "model.keras"),
                   restore=lambda folder: keras.saving.load_model(folder / "model.keras"), verbose=0, **kwargs)


class FailingSampler(keras.callbacks.Callback):
    """Raises at the end of the first epoch, after noting which checkpoint was the latest at that moment."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir
        self.seen = None

    def on_epoch_end(self, epoch, logs=None):
        from run import latest_checkpoint

        self.seen = latest_checkpoint(self.run_dir)[1]["epoch"]
        raise RuntimeError("sampler failed")


def test_a_failing_after_checkpoint_callback_cannot_cost_the_epochs_checkpoint(tmp_path):
    from run import latest_checkpoint

    sampler = FailingSampler(tmp_path)
    with pytest.raises(RuntimeError, match="sampler failed"):
        tiny_fit(tmp_path, after_checkpoint=[sampler])
    assert sampler.seen == 1  # the checkpoint of epoch 1 existed when the sampler ran
    folder, state = latest_checkpoint(tmp_path)
    assert state["epoch"] == 1 and folder.name == "epoch_0001"
    assert (folder / "model.keras").is_file()
    assert (tmp_path / "history.csv").read_text().splitlines()[1].startswith("0,")


def test_callbacks_add_to_the_logged_epoch_and_after_checkpoint_ones_see_it_whole(tmp_path):
    order = []

    class Adds(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            order.append("callbacks")
            logs["added"] = 7.0

    class After(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            from run import latest_checkpoint

            order.append(("after_checkpoint", latest_checkpoint(tmp_path)[1]["epoch"]))

    tiny_fit(tmp_path, epochs=1, callbacks=[Adds()], after_checkpoint=[After()])
    assert order == ["callbacks", ("after_checkpoint", 1)]
    header, row = (tmp_path / "history.csv").read_text().splitlines()
    assert "added" in header.split(",")


def write_run(run_dir, epoch=2, **saved):
    from data.files import write_json
    from run import write_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"learning_rate": 1e-3, "layers": 3, **saved})
    write_checkpoint(run_dir, lambda folder: None, epoch)


def config_class():
    import dataclasses

    from cli import RunSettings

    @dataclasses.dataclass
    class Config(RunSettings):
        layers: int = 10
        epochs: int = 4
        learning_rate: float = 1e-2

    return Config


def test_resolve_config_refuses_what_the_run_folder_cannot_do(tmp_path):
    from run import RunFolderError, checkpoint_to_resume, resolve_config

    Config = config_class()
    write_run(tmp_path / "done", epoch=4)
    with pytest.raises(RunFolderError, match="already holds a run"):
        resolve_config(Config, {"output_dir": str(tmp_path / "done")}, "test", ("layers",))
    with pytest.raises(RunFolderError, match="--resume needs --output-dir"):
        resolve_config(Config, {"resume": True}, "test", ("layers",))
    with pytest.raises(RunFolderError, match="no checkpoint to resume from"):
        resolve_config(Config, {"resume": True, "output_dir": str(tmp_path / "none")}, "test", ("layers",))
    with pytest.raises(RunFolderError, match="cannot resume .* with --layers 5: the run was trained with 3"):
        resolve_config(Config, {"resume": True, "output_dir": str(tmp_path / "done"), "layers": 5}, "test",
                       ("layers",))
    config, run_dir = resolve_config(Config, {"resume": True, "output_dir": str(tmp_path / "done")}, "test",
                                     ("layers",))
    assert (config.layers, config.learning_rate, run_dir) == (3, 1e-3, tmp_path / "done")
    with pytest.raises(RunFolderError, match="already trained 4 epochs"):
        checkpoint_to_resume(config, run_dir)
    assert RunFolderError.exit_status == 2 and issubclass(RunFolderError, ValueError)


def test_lower_learning_rate_rewrites_config_json(tmp_path):
    from run import lower_learning_rate, resolve_config

    write_run(tmp_path, epoch=1)
    config, _ = resolve_config(config_class(), {"resume": True, "output_dir": str(tmp_path)}, "test", ())
    optimizer = keras.optimizers.Adam(config.learning_rate)
    assert lower_learning_rate(config, tmp_path, [optimizer]) == pytest.approx(1e-4)
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert json.loads((tmp_path / "config.json").read_text())["learning_rate"] == pytest.approx(1e-4)


@pytest.mark.parametrize("error, status, line", [
    ("cli.UsageError", 2, "prog: error: bad"),
    ("data.AudioError", 2, "prog: error: bad"),
    ("run.RunFolderError", 2, "prog: error: bad"),
    ("run.TrainingFailed", 1, "prog: error: bad"),
    ("run.TrainingInterrupted", 130, "prog: bad"),
])
def test_cli_run_prints_one_line_and_exits_with_the_errors_status(capsys, error, status, line):
    import importlib

    import cli

    module, name = error.rsplit(".", 1)
    kind = getattr(importlib.import_module(module), name)

    def main():
        raise kind("bad")

    with pytest.raises(SystemExit) as exit:
        cli.run(main, "prog")
    assert exit.value.code == status
    assert capsys.readouterr().err == line + "\n"


def test_cli_run_keeps_the_traceback_of_a_bug():
    import cli

    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.run(main, "prog")


def imported_modules(path):
    """The top-level names of the modules a file imports, at any depth in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("part, allowed", [
    ("data", {"data"}),
    ("models", {"data", "models"}),
    ("callbacks", {"data", "models", "callbacks"}),
    ("evaluation", {"data", "models", "evaluation"}),
    ("run", {"data", "models", "run"}),
    ("cli.py", {"data"}),  # resolve_mel_settings reads data.features when called
    *[(script, {"cli", "data", "models", "callbacks", "run", "evaluation"}) for script in SCRIPTS],
])
def test_each_part_imports_only_the_parts_below_it(part, allowed):
    ours = {"data", "models", "callbacks", "run", "evaluation", "cli", "bench", "tests",
            *(script[:-3] for script in SCRIPTS)}
    files = [ROOT / part] if part.endswith(".py") else sorted((ROOT / part).glob("*.py"))
    for path in files:
        assert imported_modules(path) & ours <= allowed, path


def test_cli_and_the_run_folder_policy_load_without_keras():
    # A trainer parses its flags and refuses a bad run folder before TensorFlow starts.
    code = ("import sys, cli; assert not {'data', 'run', 'models', 'callbacks'} & set(sys.modules), 'cli'\n"
            "import run; assert 'keras' not in sys.modules, 'run'\n"
            "from run import fit_run; assert 'keras' in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_load_model_names_the_file_and_the_problem(tmp_path):
    import models

    with pytest.raises(models.ModelFileError, match="no such model file"):
        models.load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(models.ModelFileError, match=r"junk.keras: not a loadable .keras model \(") as error:
        models.load_model(tmp_path / "junk.keras")
    assert "\n" not in str(error.value) and issubclass(models.ModelFileError, ValueError)


def test_build_wavegan_compiles_both_networks_with_wavegans_adam():
    import models

    gan = models.build_wavegan(latent_dim=8, model_dim=2, slice_length=4096, sample_rate=8000, loss="bce",
                               learning_rate=3e-4)
    assert (gan.critic_steps, models.critic_steps("wgan-gp"), models.critic_steps("bce")) == (1, 5, 1)
    for optimizer in (gan.d_optimizer, gan.g_optimizer):
        assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.9)
        assert float(optimizer.learning_rate) == pytest.approx(3e-4)
    assert models.is_gan_generator(gan.generator)
    assert gan.generator(np.zeros((1, 8), np.float32)).shape == (1, 4096, 1)
