"""How well a WaveNet predicts held-out audio: the negative log-likelihood of each sample, in bits."""

import numpy as np


def signal_bits(model, spec, signal, chunk=16384):
    """Bits of each sample of `signal` after the first, given its past; one forward pass per `chunk` targets.

    Each pass sees the receptive field before its first target, so the result does not depend on `chunk`.
    The classifier's bits are over the 256 mu-law bins; the regressor heads are reported on the same scale.

    Args:
        model: a WaveNet from `models.build_wavenet` (or loaded from its `.keras` file).
        spec: `models.wavenet_spec(model)`.
        signal: 1-D float audio in [-1, 1] at `spec.sample_rate`.
        chunk: targets scored per forward pass.

    Returns:
        `(len(signal) - 1,)` bits per sample.

    Example:

    >>> bits = signal_bits(model, models.wavenet_spec(model), held_out)
    >>> print(f"{bits.mean():.3f} bits/sample")
    """
    import models
    from data.mulaw import mu_law_encode, mu_law_round_trip

    inputs = mu_law_round_trip(signal[:-1], spec.num_classes)
    targets = signal[1:]
    context = spec.receptive_field - 1
    bits = []
    for start in range(0, len(targets), chunk):
        stop = min(start + chunk, len(targets))
        left = max(0, start - context)
        params = model.predict_on_batch(inputs[None, left:stop, None])[:, start - left:]
        if spec.distribution == "categorical":
            y_true = mu_law_encode(targets[start:stop], spec.num_classes)[None]
        else:
            y_true = targets[None, start:stop, None]
        bits.append(np.asarray(models.bits_per_sample(spec.distribution, y_true, params, spec.num_classes))[0])
    return np.concatenate(bits)
