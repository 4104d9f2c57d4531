"""Loading a saved model, with one line saying why a file cannot be used."""

import zipfile
from pathlib import Path


class ModelFileError(ValueError):
    """A path that is not a loadable `.keras` model; the message is one line naming the file."""


def load_model(path):
    """Loads a `.keras` file saved by the trainers (WaveNet or GAN generator).

    Importing `models` registers the custom layers, so this is `keras.saving.load_model` with safe mode on,
    and with errors that name the file and the problem in one line.

    Args:
        path: the `.keras` file.

    Raises:
        ModelFileError: the file is missing or a folder, or is not a model this package can load (a `.keras`
            file that is not even a zip archive is said to be so, where Keras would say "File not found").

    Example:

    >>> model = load_model("runs/wavenet-.../model.keras")
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a .keras model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a loadable .keras model (the file is not a zip archive, as every .keras "
                             "model is: damaged, or not a model)")
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(f"{path}: not a loadable .keras model ({first_line})") from None
