"""models.optimizer: the row-wise (lazy) Adam against hand-computed steps, and the `optimizer` setting."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from models import features, optimizer
from models.optimizer import LazyAdam
from models.params import ADAM, LAZY_ADAM
from models.towers import TowerConfig
from models.trainer import RetrievalModel
from pipeline import configs

LR, BETA_1, BETA_2, EPSILON = 0.1, 0.9, 0.999, 1e-7  # tf_keras' Adam defaults but the learning rate


def table() -> tf.Variable:
    return tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2))


def rows(values: list[list[float]], indices: list[int]) -> tf.IndexedSlices:
    return tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(indices, tf.int64), tf.constant([6, 2]))


def slots(opt: tf.keras.optimizers.Optimizer) -> tuple[np.ndarray, np.ndarray]:
    """(m, v) of the optimizer's only variable."""
    return opt._momentums[0].numpy(), opt._velocities[0].numpy()


def test_a_sparse_step_moves_only_the_gathered_rows_with_the_global_steps_bias_correction():
    variable, opt = table(), LazyAdam(learning_rate=LR)
    opt.apply_gradients([(rows([[1.0, 2.0], [3.0, 4.0]], [1, 4]), variable)])
    # Step 1, a row's first gradient g: m = 0.1 g, v = 0.001 g^2, the step lr sqrt(1 - 0.999) / (1 - 0.9)
    # * m / sqrt(v) = lr * sign(g) (epsilon aside): rows 1 and 4 fall by 0.1, the others keep their values.
    after_1 = variable.numpy()
    np.testing.assert_allclose(after_1, [[0, 1], [1.9, 2.9], [4, 5], [6, 7], [7.9, 8.9], [10, 11]], rtol=1e-6)
    m, v = slots(opt)
    np.testing.assert_allclose(m[[1, 4]], [[0.1, 0.2], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(v[[1, 4]], [[0.001, 0.004], [0.009, 0.016]], rtol=1e-4)  # 1 - 0.999 in float32
    assert not m[[0, 2, 3, 5]].any() and not v[[0, 2, 3, 5]].any()

    opt.apply_gradients([(rows([[1.0, 2.0], [-2.0, 0.5]], [1, 2]), variable)])
    after_2, (m2, v2) = variable.numpy(), slots(opt)
    # Row 4 (not in batch 2) and its slots: unchanged bit for bit (tf_keras' Adam would decay and move them).
    assert np.array_equal(after_2[4], after_1[4]) and np.array_equal(m2[4], m[4]) and np.array_equal(v2[4], v[4])
    assert np.array_equal(after_2[[0, 3, 5]], after_1[[0, 3, 5]]) and not m2[[0, 3, 5]].any()
    # Row 2, first seen at global step 2: m = 0.1 g, v = 0.001 g^2, bias-corrected with t = 2, not t = 1:
    # lr sqrt(1 - 0.999^2) / (1 - 0.9^2) * 0.1 / sqrt(0.001) = 0.1 * 0.7441 per unit of sign(g).
    np.testing.assert_allclose(after_2[2], [4 + 0.0744137, 5 - 0.0744137], rtol=1e-6)
    # Row 1, the same g twice: m = 0.19 g, v = 0.001999 g^2, so m / sqrt(v) = 0.19 / sqrt(0.001999) and the step
    # lr sqrt(1 - 0.999^2) / (1 - 0.9^2) times it is lr again: 0.1 more.
    np.testing.assert_allclose(m2[1], [0.19, 0.38], rtol=1e-6)
    np.testing.assert_allclose(v2[1], [0.001999, 0.007996], rtol=1e-4)
    np.testing.assert_allclose(after_2[1], [1.8, 2.8], rtol=1e-6)


def test_plain_adam_moves_rows_outside_the_batch_which_lazy_adam_does_not():
    """The difference lazy_adam makes, on the same two steps: Adam moves row 4 again by its momentum."""
    variable, opt = table(), tf.keras.optimizers.Adam(learning_rate=LR)
    opt.apply_gradients([(rows([[1.0, 2.0], [3.0, 4.0]], [1, 4]), variable)])
    row_4 = variable.numpy()[4]
    opt.apply_gradients([(rows([[1.0, 2.0], [-2.0, 0.5]], [1, 2]), variable)])
    assert np.all(variable.numpy()[4] < row_4 - 0.05)


def test_duplicate_rows_are_summed_before_the_update():
    once, twice = table(), table()
    LazyAdam(learning_rate=LR).apply_gradients([(rows([[1.5, 2.5], [3.0, 4.0]], [1, 4]), once)])
    LazyAdam(learning_rate=LR).apply_gradients([(rows([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]], [1, 4, 1]), twice)])
    np.testing.assert_array_equal(twice.numpy(), once.numpy())
    # update_step on its own (no apply_gradients to deduplicate first) sums them too: m = 0.1 * (1.5, 2.5).
    direct, opt = table(), LazyAdam(learning_rate=LR)
    opt.build([direct])
    opt.update_step(rows([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]], [1, 4, 1]), direct)
    np.testing.assert_allclose(slots(opt)[0][1], [0.15, 0.25], rtol=1e-6)
    np.testing.assert_allclose(direct.numpy(), once.numpy(), rtol=1e-6)


def test_a_dense_variable_gets_plain_adams_update():
    lazy_variable, adam_variable = tf.Variable([1.0, -2.0, 0.5]), tf.Variable([1.0, -2.0, 0.5])
    lazy, adam = LazyAdam(learning_rate=LR), tf.keras.optimizers.Adam(learning_rate=LR)
    for gradient in ([0.5, 0.25, -1.0], [-0.1, 0.3, 0.0], [2.0, -1.0, 0.7]):
        lazy.apply_gradients([(tf.constant(gradient), lazy_variable)])
        adam.apply_gradients([(tf.constant(gradient), adam_variable)])
    np.testing.assert_array_equal(lazy_variable.numpy(), adam_variable.numpy())
    np.testing.assert_array_equal(slots(lazy)[1], slots(adam)[1])
    # Step 1 by hand: lr * sign(g) per element (0.5 -> 0.4), so the three steps moved every element.
    assert not np.allclose(lazy_variable.numpy(), [1.0, -2.0, 0.5], atol=0.05)


def test_the_optimizer_setting_names_the_optimizer_and_refuses_others():
    assert type(optimizer.make_optimizer(ADAM, LR)) is tf.keras.optimizers.Adam
    made = optimizer.make_optimizer(LAZY_ADAM, LR)
    assert isinstance(made, LazyAdam) and float(made.learning_rate) == pytest.approx(LR)
    assert configs.PipelineConfig(optimizer=LAZY_ADAM).training_params().optimizer == LAZY_ADAM
    with pytest.raises(ValueError, match="optimizer must be one of"):
        configs.PipelineConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        optimizer.make_optimizer("sgd", LR)
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)


def test_a_tiny_retrieval_model_trains_with_lazy_adam():
    config = TowerConfig(num_track_ids=16, num_station_ids=4, embedding_dim=8, num_layers=1, num_heads=2,
                         max_history=4, dropout=0.0, item_bias=True)
    params = dataclasses.replace(configs.PipelineConfig(optimizer=LAZY_ADAM).training_params(), max_history=4,
                                 max_hard_negatives=2, embedding_dim=8, num_layers=1, num_random_negatives=4,
                                 batch_size=3, dropout=0.0)
    counts = np.array([0, *[3] * 11, 0, 0, 0, 0])  # ids 12-15 never played: never in a batch nor sampled
    tf.keras.utils.set_random_seed(7)
    model = RetrievalModel(config, params, counts)
    batch = {
        features.HISTORY_TRACK_IDS_XF: tf.constant([[1, 2, 3, 4], [5, 6, 0, 0], [0, 0, 0, 0]], tf.int64),
        features.HISTORY_LABELS_XF: tf.constant([[0, 2, 3, 1], [1, 0, 0, 0], [0, 0, 0, 0]], tf.int64),
        features.HISTORY_MASK: tf.constant([[True] * 4, [True, True, False, False], [False] * 4]),
        features.STATION_ID_XF: tf.constant([1, 0, 3], tf.int64),
        features.TARGET_TRACK_ID_XF: tf.constant([7, 8, 9], tf.int64),
        features.USER_ID_XF: tf.constant([b"u1", b"u2", b"u3"]),
        features.HARD_NEGATIVE_TRACK_IDS_XF: tf.constant([[10, 11], [11, 0], [0, 0]], tf.int64),
        features.HARD_NEGATIVE_MASK: tf.constant([[True, True], [True, False], [False, False]]),
    }
    before = float(model.compute_loss(batch))
    model.compile(optimizer=optimizer.make_optimizer(params.optimizer, 0.05))
    unplayed = model.candidate_tower.trainable_variables[0].numpy()[12:].copy()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(40), epochs=1, verbose=0)
    assert isinstance(model.optimizer, LazyAdam)
    assert float(model.compute_loss(batch)) < 0.5 * before
    np.testing.assert_array_equal(model.candidate_tower.trainable_variables[0].numpy()[12:], unplayed)
