"""n-gram models of token sequences: the baselines a token language model is measured against.

Interpolated Witten-Bell smoothing (Witten and Bell 1991; Chen and Goodman 1998): an n-gram's probability mixes
its counts with the (n-1)-gram's probability, trusting the history more the more often it was seen and the fewer
different tokens followed it. It has no parameter to tune, so nothing is fitted on held-out data. The unigram is
add-one smoothed, so no token has probability zero.

Example:

>>> model = NGram(order=2, vocabulary=4).fit([np.array([0, 1, 2, 3] * 50)])
>>> float(model.bits(np.array([0, 1, 2, 3, 0])).mean()) < 0.5
True
"""

import numpy as np


class NGram:
    """An interpolated Witten-Bell n-gram model over tokens `0..vocabulary-1`.

    Args:
        order: 1 (unigram), 2 (bigram), 3 (trigram), ...
        vocabulary: number of tokens.
    """

    def __init__(self, order, vocabulary):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if vocabulary ** order >= 2 ** 62:
            raise ValueError(f"{vocabulary} tokens to the power {order} do not fit a 64-bit key")
        self.order = int(order)
        self.vocabulary = int(vocabulary)

    def _keys(self, sequence, n):
        """The key of each n-gram ending at positions `n-1..len-1` (its tokens as base-`vocabulary` digits)."""
        keys = np.zeros(len(sequence) - n + 1, np.int64)
        for i in range(n):
            keys = keys * self.vocabulary + sequence[i:len(sequence) - n + 1 + i]
        return keys

    def fit(self, sequences):
        """Counts the n-grams of every order up to `order` in `sequences` (1-D int arrays); returns self."""
        sequences = [np.asarray(s, np.int64) for s in sequences]
        self.unigram = np.bincount(np.concatenate(sequences), minlength=self.vocabulary).astype(np.float64)
        self.tables = {}
        for n in range(2, self.order + 1):
            grams = np.concatenate([self._keys(s, n) for s in sequences if len(s) >= n] or [np.zeros(0, np.int64)])
            grams, counts = np.unique(grams, return_counts=True)
            histories = grams // self.vocabulary
            history_keys, starts = np.unique(histories, return_index=True)
            totals = np.add.reduceat(counts, starts) if len(counts) else np.zeros(0, np.int64)
            followers = np.diff(np.append(starts, len(grams)))
            self.tables[n] = (grams, counts, history_keys, totals, followers)
        return self

    @staticmethod
    def _lookup(table_keys, values, keys):
        index = np.clip(np.searchsorted(table_keys, keys), 0, max(len(table_keys) - 1, 0))
        found = (table_keys[index] == keys) if len(table_keys) else np.zeros(len(keys), bool)
        return np.where(found, values[index] if len(table_keys) else 0, 0).astype(np.float64)

    def probabilities(self, sequence):
        """The probability of each token of `sequence` from position 1 on, given the tokens before it (as many as
        the order allows): `(len - 1,)` float64."""
        sequence = np.asarray(sequence, np.int64)
        targets = sequence[1:]
        probability = (self.unigram[targets] + 1.0) / (self.unigram.sum() + self.vocabulary)
        for n in range(2, self.order + 1):
            grams, counts, history_keys, totals, followers = self.tables[n]
            # Positions 1..len-1; the n-gram ending at position t starts at t - n + 1 (none for t < n - 1).
            usable = np.arange(1, len(sequence)) >= n - 1
            if not usable.any():
                break
            keys = self._keys(sequence, n)  # ends at positions n-1..len-1
            seen = self._lookup(grams, counts, keys)
            total = self._lookup(history_keys, totals, keys // self.vocabulary)
            distinct = self._lookup(history_keys, followers, keys // self.vocabulary)
            lower = probability[n - 2:]
            mixed = np.where(total > 0, (seen + distinct * lower) / np.maximum(total + distinct, 1.0), lower)
            probability = np.concatenate([probability[:n - 2], mixed])
        return probability

    def bits(self, sequence):
        """Bits (-log2 probability) of each token of `sequence` from position 1 on."""
        return -np.log2(self.probabilities(sequence))
