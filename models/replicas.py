"""Random draws that do not depend on how many replicas share a batch.

Under `tf.distribute` every replica runs the same step on its share of the global batch, and a seeded draw gives
every replica the same numbers. `replica_share` draws for the whole global batch and keeps this replica's rows,
so latent vectors, mixing weights and phase shifts are the ones a single replica would draw for the same global
batch (the batch itself is split the same way: `data.frames.replica_rows`).
"""

import keras


def replica_position():
    """`(index, count)` of the replica running this code; `(0, 1)` outside a tf.distribute replica context."""
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def replica_share(draw, count):
    """`draw(n)` for the global batch, keeping this replica's `count` leading rows (`draw(count)` on one replica).

    Args:
        draw: returns `n` rows of random values (a seeded `keras.random` call).
        count: this replica's batch size.

    Example:

    >>> shifts = replica_share(lambda n: keras.random.randint((n, 1), -2, 3, seed=generator), batch)
    """
    index, replicas = replica_position()
    if replicas == 1:
        return draw(count)
    values = draw(count * replicas)
    return values[index * count:(index + 1) * count]
