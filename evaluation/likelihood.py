"""How well a WaveNet predicts held-out audio: the negative log-likelihood of each sample, in bits."""

import numpy as np


def signal_bits(model, spec, signal, chunk=16384, class_id=None, mel=None):
    """Bits of each sample of `signal` after the first, given its past; one forward pass per `chunk` targets.

    Each pass sees the receptive field before its first target, so the result does not depend on `chunk`.
    The classifier's bits are over the 256 mu-law bins; the regressor heads are reported on the same scale.

    A conditioned model is given its conditioning. Class: the same `class_id` for the whole signal. Log-mel:
    `mel` (unpadded, `(frames, n_mels)`, `frames = 1 + len(signal) // hop`), by default `data.features.log_mel`
    of the signal itself with the model's settings. The alignment follows `data.features`: a mel-conditioned
    model is fed one sample of silence (what generation starts from) before the signal, so sample `n` is target
    `n` of a window whose first target is sample 0, and every pass starts its first target at a multiple of the
    hop, where the padded spectrogram's rows line up with the samples. Sample 0's bits (scored after the silence)
    are left out, so the result covers the same samples as for an unconditioned model.

    Args:
        model: a WaveNet from `models.build_wavenet` (or loaded from its `.keras` file).
        spec: `models.wavenet_spec(model)`.
        signal: 1-D float audio in [-1, 1] at `spec.sample_rate`.
        chunk: targets scored per forward pass.
        class_id: the class (name or integer id) of a class-conditioned model; required for one.
        mel: optional log-mel spectrogram of `signal` for a mel-conditioned model.

    Returns:
        `(len(signal) - 1,)` bits per sample.

    Raises:
        ValueError: a class-conditioned model without `class_id`, or an unknown class; conditioning given to a
            model without it; a spectrogram whose frame count does not fit the signal.

    Example:

    >>> bits = signal_bits(model, models.wavenet_spec(model), held_out)
    >>> print(f"{bits.mean():.3f} bits/sample")
    """
    import models
    from data.mulaw import mu_law_encode, mu_law_round_trip

    signal = np.asarray(signal, np.float32).reshape(-1)
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    extra = {}
    if spec.class_names:
        if class_id is None:
            raise ValueError(f"the model is conditioned on classes: give a class (one of: "
                             f"{', '.join(spec.class_names)})")
        extra[spec.CLASS_ID] = models.class_ids(spec, [class_id])[:, None]
    elif class_id is not None:
        raise ValueError("the model is not conditioned on classes")
    if spec.mel is None:
        if mel is not None:
            raise ValueError("the model is not conditioned on log-mel spectrograms")
        inputs = mu_law_round_trip(signal[:-1], spec.num_classes)
        first = 0
    else:
        from data.features import check_mel, log_mel, pad_features

        mel = log_mel(signal, spec.mel) if mel is None else check_mel(mel, spec.mel)
        if mel.ndim != 2 or mel.shape[0] != 1 + len(signal) // spec.mel.hop_length:
            raise ValueError(f"a spectrogram of {len(signal)} samples has {1 + len(signal) // spec.mel.hop_length} "
                             f"frames of {spec.mel.n_mels} bins, got shape {mel.shape}")
        padded = pad_features(mel, spec.mel)
        # Input `j` is the sample before sample `j`: silence for sample 0.
        silence = mu_law_round_trip(np.zeros(1, np.float32), spec.num_classes)
        inputs = np.concatenate([silence, mu_law_round_trip(signal[:-1], spec.num_classes)]).astype(np.float32)
        first = 1
    # Input position `p` is followed by (predicts) `signal[p + 1 - first]`; `first` is the first scored position.
    targets = signal[1:]
    context = spec.receptive_field - 1
    hop = spec.mel.hop_length if spec.mel is not None else 1
    bits = []
    for start in range(first, len(inputs), chunk):  # `start`: the first scored position of this pass
        stop = min(start + chunk, len(inputs))
        left = max(0, (start - context) // hop * hop)  # with a spectrogram, at a frame boundary
        batch = {spec.WAVEFORM: inputs[None, left:stop, None], **extra}
        if spec.mel is not None:
            from data.features import frames_for_samples

            rows = frames_for_samples(stop - left, spec.mel)
            batch[spec.MEL] = padded[None, left // hop:left // hop + rows]
        params = model.predict_on_batch(batch if spec.conditioned else batch[spec.WAVEFORM])[:, start - left:]
        scored = targets[start - first:stop - first]
        if spec.distribution == "categorical":
            y_true = mu_law_encode(scored, spec.num_classes)[None]
        else:
            y_true = scored[None, :, None]
        bits.append(np.asarray(models.bits_per_sample(spec.distribution, y_true, params, spec.num_classes))[0])
    return np.concatenate(bits) if bits else np.zeros(0, np.float32)


def token_bits(model, tokens):
    """Bits of each token of a token language model's sequence after the first, given all the tokens before it
    (each attention layer seeing its band of `context` tokens): what one pass of the model over the whole sequence
    gives, computed token by token with the cached decoder (`models.CachedTokenLM`), so memory stays flat
    whatever the length.

    Args:
        model: a `models.build_token_lm` model.
        tokens: 1-D int tokens.

    Returns:
        `(len(tokens) - 1,)` float64 bits.
    """
    from models.lm import CachedTokenLM

    tokens = np.asarray(tokens, np.int64).reshape(-1)
    decoder = CachedTokenLM(model)
    decoder.reset(1)
    bits = np.empty(max(len(tokens) - 1, 0), np.float64)
    for t in range(len(bits)):
        logits = decoder.step(tokens[t:t + 1])[0].astype(np.float64)
        top = logits.max()
        bits[t] = (top + np.log(np.exp(logits - top).sum()) - logits[tokens[t + 1]]) / np.log(2.0)
    return bits
