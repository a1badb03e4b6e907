"""The Trainer's optimizer: Adam, or a row-wise ("lazy") Adam whose step on an embedding table costs the rows the
batch looked up, not the table.

tf_keras' Adam, given an embedding table's sparse gradient (`tf.IndexedSlices`), still decays both moment slots
of every row and moves every row whose momentum is non-zero: a step's cost grows with the catalog, not with the
batch (benchmarks/RESULTS.md, issue 14's sixth pass: +33% CPU per step at 3x the 1M run's track table).
`LazyAdam` updates m, v and the variable only on the gathered rows, with Adam's bias correction of the global
step, the semantics of TF1's `LazyAdamOptimizer` and TF Addons' `LazyAdam`: a row's moments age only when the
row is in a batch. Dense gradients (every other weight) get plain Adam's update.
"""
from __future__ import annotations

import tensorflow as tf

from models.params import ADAM, LAZY_ADAM, OPTIMIZERS


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam with row-wise updates of sparse gradients (embedding tables); dense gradients as `Adam`.

    For a sparse gradient g on rows r at global step t (duplicate rows summed first):
        m[r] <- beta_1 m[r] + (1 - beta_1) g          v[r] <- beta_2 v[r] + (1 - beta_2) g^2
        var[r] <- var[r] - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m[r] / (sqrt(v[r]) + epsilon)
    Rows outside r, and their slots, are not touched.
    """

    def __init__(self, learning_rate: float = 0.001, name: str = "LazyAdam", **kwargs) -> None:
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam has no amsgrad variant (its max over v would need every row each step)")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def update_step(self, gradient: tf.Tensor | tf.IndexedSlices, variable: tf.Variable) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            super().update_step(gradient, variable)
            return
        # apply_gradients already sums duplicate rows; again here so a direct call is correct too (a scatter
        # with a repeated row would keep one of its updates).
        gradient = self._deduplicate_sparse_grad([gradient])[0]
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        alpha = tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - beta_2_power) / (1 - tf.pow(beta_1, step))
        epsilon = self.epsilon * tf.sqrt(1 - beta_2_power) if self.adaptive_epsilon else self.epsilon
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The optimizer the `optimizer` setting names (models.params.OPTIMIZERS)."""
    if name == ADAM:
        return tf.keras.optimizers.Adam(learning_rate=learning_rate)
    if name == LAZY_ADAM:
        return LazyAdam(learning_rate=learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
