"""The retrieval loss on tiny hand-made tensors, with the expected logits written out.

Column layout of the logits (models.loss): [positive | B in-batch | N random | H hard].
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import loss
from models.loss import MASKED_LOGIT as M

F32 = tf.float32
I64 = tf.int64


def f32(values) -> tf.Tensor:
    return tf.constant(values, dtype=F32)


def i64(values) -> tf.Tensor:
    return tf.constant(values, dtype=I64)


def assert_close(actual, expected, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float32), rtol=1e-6, atol=atol)


# --- Shapes and arguments ----------------------------------------------------------------------------------
def random_batch(batch: int, dim: int, num_random: int, num_hard: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def unit(*shape):
        x = rng.normal(size=shape + (dim,))
        return f32(x / np.linalg.norm(x, axis=-1, keepdims=True))

    return dict(
        query=unit(batch),
        positive=unit(batch),
        positive_ids=i64(np.arange(batch)),
        user_ids=tf.constant([f"u{i}" for i in range(batch)]),
        positive_log_q=f32(rng.normal(size=batch)),
        random=unit(num_random),
        random_ids=i64(100 + np.arange(num_random)),
        random_log_q=f32(rng.normal(size=num_random)),
        hard=unit(batch, num_hard),
        hard_ids=i64(200 + np.arange(batch * num_hard).reshape(batch, num_hard)),
        hard_mask=tf.ones([batch, num_hard], dtype=tf.bool),
    )


def without(inputs: dict, *blocks: str) -> dict:
    names = {"random": ("random", "random_ids", "random_log_q"), "hard": ("hard", "hard_ids", "hard_mask")}
    dropped = {name for block in blocks for name in names[block]}
    return {key: value for key, value in inputs.items() if key not in dropped}


def test_shapes_of_logits_and_loss():
    layer = loss.SampledSoftmaxLoss(temperature=0.1)
    inputs = random_batch(batch=3, dim=4, num_random=2, num_hard=2)
    assert layer.logits(**inputs).shape == (3, 1 + 3 + 2 + 2)
    assert layer.per_example_loss(**inputs).shape == (3,)
    assert layer(**inputs).shape == ()
    assert layer.logits(**without(inputs, "random", "hard")).shape == (3, 1 + 3)
    no_hard = random_batch(batch=3, dim=4, num_random=2, num_hard=0)
    assert layer.logits(**no_hard).shape == (3, 1 + 3 + 2)
    assert np.isfinite(layer(**inputs).numpy())


def test_loss_traces_with_an_unknown_batch_size():
    layer = loss.SampledSoftmaxLoss(temperature=0.1)
    inputs = random_batch(batch=3, dim=4, num_random=2, num_hard=2)
    eager = layer(**inputs)
    spec = {key: tf.TensorSpec([None] + value.shape[1:], value.dtype) for key, value in inputs.items()}
    spec["random"] = tf.TensorSpec([None, 4], F32)
    spec["random_ids"] = tf.TensorSpec([None], I64)
    spec["random_log_q"] = tf.TensorSpec([None], F32)
    traced = tf.function(lambda **kwargs: layer(**kwargs))
    concrete = traced.get_concrete_function(**spec)
    assert_close(concrete(**inputs), eager)


def test_half_a_block_or_a_missing_log_q_is_an_error():
    layer = loss.SampledSoftmaxLoss()
    inputs = random_batch(batch=2, dim=3, num_random=1, num_hard=1)
    with pytest.raises(ValueError, match="hard_mask"):
        layer.logits(**{k: v for k, v in inputs.items() if k != "hard_mask"})
    with pytest.raises(ValueError, match="random_ids"):
        layer.logits(**{k: v for k, v in inputs.items() if k != "random_ids"})
    with pytest.raises(ValueError, match="positive_log_q"):
        layer.logits(**{k: v for k, v in inputs.items() if k != "positive_log_q"})
    with pytest.raises(ValueError, match="random_log_q"):
        layer.logits(**{k: v for k, v in inputs.items() if k != "random_log_q"})
    for bad in (dict(temperature=0.0), dict(hard_negative_weight=0.0), dict(hard_negative_weight=-1.0)):
        with pytest.raises(ValueError):
            loss.SampledSoftmaxLoss(**bad)


# --- Masking -----------------------------------------------------------------------------------------------
# Four rows: users a, a, b, c; positive track ids 10, 11, 12, 10 (rows 0 and 3 share a track).
MASK_BATCH = dict(
    query=f32([[1, 0], [0, 1], [1, 1], [2, 1]]),
    positive=f32([[1, 0], [0, 1], [2, 0], [0, 3]]),
    positive_ids=i64([10, 11, 12, 10]),
    user_ids=tf.constant(["a", "a", "b", "c"]),
    random=f32([[1, 0], [0, -1]]),
    random_ids=i64([11, 99]),
    hard=f32([[[0, 1]], [[1, 0]], [[1, 0]], [[0, 1]]]),
    hard_ids=i64([[12], [11], [12], [5]]),
    hard_mask=tf.constant([[True], [True], [True], [True]]),
)


def test_accidental_hits_and_same_user_positives_are_masked():
    logits = loss.SampledSoftmaxLoss(use_logq=False).logits(**MASK_BATCH)
    expected = [
        # pos | in-batch rows 0..3              | random 11, 99 | hard
        [1,     M, M, 2, M,                       1, 0,           0],  # row 0: 0 self, 1 same user, 3 same track
        [1,     M, M, 0, 3,                       M, -1,          M],  # row 1: 0 same user; random 11 and hard 11 = pos
        [2,     1, 1, M, 3,                       1, -1,          M],  # row 2: only itself; hard 12 = its pos
        [3,     M, 1, 4, M,                       2, -1,          1],  # row 3: row 0 has its track 10
    ]
    assert_close(logits, expected)


def test_masked_columns_take_exactly_zero_probability():
    layer = loss.SampledSoftmaxLoss(use_logq=False)
    probabilities = tf.nn.softmax(layer.logits(**MASK_BATCH)).numpy()
    masked = layer.logits(**MASK_BATCH).numpy() == M
    assert masked.any()
    assert np.all(probabilities[masked] == 0.0)


def test_a_row_with_only_its_positive_left_has_zero_loss_and_finite_gradients():
    """Both rows belong to one user, the random sample and the hard negative are their own positives."""
    query = tf.Variable([[1.0, 0.0], [0.0, 1.0]])
    layer = loss.SampledSoftmaxLoss(temperature=0.05)
    with tf.GradientTape() as tape:
        per_example = layer.per_example_loss(
            query, f32([[0.6, 0.8], [0.8, 0.6]]), i64([1, 2]), tf.constant([7, 7]), f32([-3.0, -3.0]),
            random=f32([[1, 0]]), random_ids=i64([1]), random_log_q=f32([-5.0]),
            hard=f32([[[0, 1]], [[1, 0]]]), hard_ids=i64([[1], [2]]), hard_mask=tf.constant([[True], [True]]),
        )
        total = tf.reduce_sum(per_example)
    assert_close(per_example[0], 0.0)
    assert per_example[1] > 0  # row 1 still has the random sample (id 1) as a negative
    gradient = tape.gradient(total, query).numpy()
    assert np.all(np.isfinite(gradient))
    assert_close(gradient[0], [0.0, 0.0])


# --- Hard negatives ----------------------------------------------------------------------------------------
HARD_BATCH = dict(
    query=f32([[1, 0], [0, 1]]),
    positive=f32([[1, 0], [0, 1]]),
    positive_ids=i64([1, 2]),
    user_ids=tf.constant(["a", "b"]),
    hard=f32([[[0.5, 3], [2, 0]], [[-1, 0], [1, 1]]]),
    hard_ids=i64([[3, 4], [5, 6]]),
    hard_mask=tf.constant([[True, True], [True, True]]),
)


def test_hard_negatives_are_scored_only_against_their_own_row():
    layer = loss.SampledSoftmaxLoss(use_logq=False)
    logits = layer.logits(**HARD_BATCH)
    assert_close(logits, [[1, M, 0, 0.5, 2], [1, 0, M, 0, 1]])

    changed = dict(HARD_BATCH, hard=f32([[[9, 9], [-9, 9]], [[-1, 0], [1, 1]]]))  # only row 0's
    changed_logits = layer.logits(**changed)
    assert_close(changed_logits[1], logits[1])
    assert_close(changed_logits[0], [1, M, 0, 9, -9])
    before, after = layer.per_example_loss(**HARD_BATCH), layer.per_example_loss(**changed)
    assert_close(after[1], before[1])
    assert abs(float(after[0] - before[0])) > 1.0


def test_padded_hard_negatives_never_contribute():
    layer = loss.SampledSoftmaxLoss(use_logq=False)
    padded = dict(HARD_BATCH, hard_mask=tf.constant([[True, False], [True, True]]))
    logits = layer.logits(**padded)
    assert_close(logits, [[1, M, 0, 0.5, M], [1, 0, M, 0, 1]])

    moved = dict(padded, hard=f32([[[0.5, 3], [100, -100]], [[-1, 0], [1, 1]]]))  # the padded one only
    assert_close(layer.logits(**moved), logits)
    assert_close(layer(**moved), layer(**padded))
    # ...and a padded negative is the same as no negative at all.
    single = dict(HARD_BATCH, hard=f32([[[0.5, 3]], [[-1, 0]]]), hard_ids=i64([[3], [5]]),
                  hard_mask=tf.constant([[True], [True]]))
    assert_close(layer.per_example_loss(**padded)[0], layer.per_example_loss(**single)[0])


def expected_loss(positive: float, negatives: list[float], hard: list[float], weight: float, temperature: float):
    """-log softmax of the positive, written out: the denominator holds weight * exp(hard / temperature)."""
    denominator = (
        np.exp(positive / temperature)
        + sum(np.exp(s / temperature) for s in negatives)
        + weight * sum(np.exp(s / temperature) for s in hard)
    )
    return -positive / temperature + np.log(denominator)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_hard_negative_weight_multiplies_their_share_of_the_denominator(temperature: float):
    # Unmasked dots (HARD_BATCH): row 0 pos 1, in-batch [0], hard [0.5, 2]; row 1 pos 1, in-batch [0], hard [0, 1].
    rows = [(1.0, [0.0], [0.5, 2.0]), (1.0, [0.0], [0.0, 1.0])]
    unweighted = loss.SampledSoftmaxLoss(temperature=temperature, use_logq=False)
    one = loss.SampledSoftmaxLoss(temperature=temperature, hard_negative_weight=1.0, use_logq=False)
    three = loss.SampledSoftmaxLoss(temperature=temperature, hard_negative_weight=3.0, use_logq=False)

    assert_close(one.logits(**HARD_BATCH), unweighted.logits(**HARD_BATCH))
    assert_close(one(**HARD_BATCH), np.mean([expected_loss(*row, 1.0, temperature) for row in rows]))
    assert_close(three.per_example_loss(**HARD_BATCH), [expected_loss(*row, 3.0, temperature) for row in rows])
    assert float(three(**HARD_BATCH)) > float(one(**HARD_BATCH))
    # Only the real hard negatives move, by log(w) (never divided by the temperature).
    shift = three.logits(**HARD_BATCH) - one.logits(**HARD_BATCH)
    assert_close(shift, [[0, 0, 0, np.log(3), np.log(3)], [0, 0, 0, np.log(3), np.log(3)]])


# --- logQ --------------------------------------------------------------------------------------------------
LOGQ_BATCH = dict(
    query=f32([[1, 0], [0, 1]]),
    positive=f32([[1, 0], [0, 1]]),
    positive_ids=i64([1, 2]),
    user_ids=tf.constant([1, 2]),
    positive_log_q=f32([-1.0, -2.0]),
    random=f32([[1, 1]]),
    random_ids=i64([9]),
    random_log_q=f32([-0.5]),
    hard=f32([[[0.5, 0]], [[0, -1]]]),
    hard_ids=i64([[3], [4]]),
    hard_mask=tf.constant([[True], [True]]),
)


def test_logq_corrects_in_batch_and_random_negatives_only():
    temperature = 0.5
    corrected = loss.SampledSoftmaxLoss(temperature=temperature).logits(**LOGQ_BATCH)
    # dot / temperature, then - log_q of the column's candidate: in-batch 0 / 0.5 + 2 and 0 / 0.5 + 1,
    # random 1 / 0.5 + 0.5; positive 1 / 0.5 and hard 0.5 / 0.5, -1 / 0.5 uncorrected.
    assert_close(corrected, [[2, M, 2, 2.5, 1], [2, 1, M, 2.5, -2]])

    uncorrected = loss.SampledSoftmaxLoss(temperature=temperature, use_logq=False).logits(**LOGQ_BATCH)
    assert_close(uncorrected, [[2, M, 0, 2, 1], [2, 0, M, 2, -2]])

    other = dict(LOGQ_BATCH, positive_log_q=f32([-7.0, 3.0]), random_log_q=f32([4.0]))
    moved = loss.SampledSoftmaxLoss(temperature=temperature).logits(**other)
    assert_close(moved[:, loss.POSITIVE_COLUMN], corrected[:, loss.POSITIVE_COLUMN])
    assert_close(moved[:, -1], corrected[:, -1])  # the hard negatives
    assert_close(moved, [[2, M, -3, -2, 1], [2, 7, M, -2, -2]])


# --- Gradients ---------------------------------------------------------------------------------------------
def tower(vocabulary: int, seed: int) -> tf.keras.Sequential:
    """Embedding -> Dense -> L2 normalise, like the real towers in miniature."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.Embedding(vocabulary, 4, embeddings_initializer=tf.keras.initializers.RandomNormal(seed=seed)),
            tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotNormal(seed=seed + 1)),
            tf.keras.layers.Lambda(lambda x: tf.math.l2_normalize(x, axis=-1)),
        ]
    )


def test_gradients_reach_both_towers_and_hard_negative_embeddings():
    query_tower, candidate_tower = tower(3, seed=1), tower(10, seed=2)
    users, positive_ids = i64([0, 1, 2]), i64([0, 1, 2])
    random_ids = i64([3, 4])
    hard_ids = i64([[5, 6], [7, 8], [9, 0]])  # 5, 6, 7, 9 appear only as hard negatives; 8 is padding
    hard_mask = tf.constant([[True, True], [True, False], [True, True]])
    layer = loss.SampledSoftmaxLoss(temperature=0.2, hard_negative_weight=2.0)
    with tf.GradientTape() as tape:
        value = layer(
            query_tower(users), candidate_tower(positive_ids), positive_ids, users, f32([-1.0, -1.2, -0.8]),
            random=candidate_tower(random_ids), random_ids=random_ids, random_log_q=f32([-0.3, -0.4]),
            hard=candidate_tower(hard_ids), hard_ids=hard_ids, hard_mask=hard_mask,
        )
    variables = query_tower.trainable_variables + candidate_tower.trainable_variables
    gradients = tape.gradient(value, variables)
    assert len(query_tower.trainable_variables) == 3 and len(candidate_tower.trainable_variables) == 3
    for variable, gradient in zip(variables, gradients):
        assert gradient is not None, variable.name
        assert np.linalg.norm(tf.convert_to_tensor(gradient).numpy()) > 0, variable.name

    table = tf.convert_to_tensor(gradients[len(query_tower.trainable_variables)]).numpy()
    assert np.all(np.linalg.norm(table[[5, 6, 7, 9]], axis=1) > 0)  # through the hard negatives
    assert np.all(table[8] == 0)  # padding gets nothing


# --- The library's loss ------------------------------------------------------------------------------------
def unit_rows(rows: int, seed: int) -> tf.Tensor:
    x = np.random.default_rng(seed).normal(size=(rows, 4))
    return f32(x / np.linalg.norm(x, axis=1, keepdims=True))


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, 4], [1, 2, 1, 3, 2]])
def test_in_batch_only_equals_tfrs_retrieval(ids: list[int]):
    """Distinct users, no random or hard negatives, no logQ: the same softmax as tfrs.tasks.Retrieval."""
    temperature = 0.1
    query, candidates, positive_ids = unit_rows(5, seed=3), unit_rows(5, seed=4), i64(ids)
    ours = loss.SampledSoftmaxLoss(temperature=temperature, use_logq=False)(
        query, candidates, positive_ids, tf.constant(["a", "b", "c", "d", "e"])
    )
    theirs = tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE  # a mean, like ours
        ),
        temperature=temperature,
        remove_accidental_hits=True,
    )(query, candidates, candidate_ids=positive_ids, compute_metrics=False, compute_batch_metrics=False)
    assert_close(ours, theirs, atol=1e-5)
    assert float(ours) > 0


# --- Sampling ----------------------------------------------------------------------------------------------
COUNTS = np.array([50, 30, 0, 20])


def test_uniform_probabilities_are_equal_and_sum_to_one():
    probabilities = loss.CandidateSampler(COUNTS, distribution=loss.UNIFORM).probabilities
    assert_close(probabilities, [0.25] * 4)
    assert probabilities.sum() == pytest.approx(1.0)


def test_popularity_follows_count_to_the_alpha():
    assert_close(loss.CandidateSampler(COUNTS, loss.POPULARITY, alpha=1.0).probabilities, [0.5, 0.3, 0, 0.2])
    root = np.sqrt([50, 30, 0, 20])
    assert_close(loss.CandidateSampler(COUNTS, loss.POPULARITY, alpha=0.5).probabilities, root / root.sum())
    assert_close(
        loss.CandidateSampler(COUNTS, loss.POPULARITY, alpha=0.0).probabilities,
        loss.CandidateSampler(COUNTS, loss.UNIFORM).probabilities,
    )


def test_sampled_ids_are_in_range_follow_p_and_carry_their_log_q():
    sampler = loss.CandidateSampler(COUNTS, loss.POPULARITY, alpha=1.0)
    num_samples = 20_000
    ids, log_q = sampler.sample(num_samples, seed=(1, 2))
    ids = ids.numpy()
    assert ids.dtype == np.int64 and ids.shape == (num_samples,)
    assert ids.min() >= 0 and ids.max() < len(COUNTS)
    assert not np.any(ids == 2)  # counted 0 times: never drawn by popularity
    assert_close(np.bincount(ids, minlength=4) / num_samples, [0.5, 0.3, 0, 0.2], atol=0.02)
    assert_close(log_q, np.log(num_samples * np.array([0.5, 0.3, 0, 0.2])[ids]), atol=1e-4)

    again, _ = sampler.sample(num_samples, seed=(1, 2))
    other, _ = sampler.sample(num_samples, seed=(3, 4))
    assert np.array_equal(again.numpy(), ids) and not np.array_equal(other.numpy(), ids)

    uniform_ids, uniform_log_q = loss.CandidateSampler(COUNTS, loss.UNIFORM).sample(8, seed=(5, 6))
    assert_close(uniform_log_q, [np.log(8 * 0.25)] * 8)
    assert uniform_ids.shape == (8,)


def test_in_batch_log_q_is_the_expected_count_with_a_floor():
    log_q = loss.in_batch_log_q(np.array([6, 0, 2, 2]), batch_size=4)
    assert log_q.dtype == np.float32
    assert_close(log_q, np.log([4 * 6 / 10, 4 * 1 / 10, 4 * 2 / 10, 4 * 2 / 10]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: loss.CandidateSampler(np.array([3, -1])),
        lambda: loss.CandidateSampler(np.array([1, 2]), distribution="zipf"),
        lambda: loss.CandidateSampler(np.array([0, 0]), distribution=loss.POPULARITY),
        lambda: loss.CandidateSampler(np.array([1, 2]), alpha=-1.0),
        lambda: loss.in_batch_log_q(np.array([0, 0]), batch_size=4),
        lambda: loss.in_batch_log_q(np.array([1, 2]), batch_size=0),
    ],
)
def test_bad_counts_and_settings_are_errors(make):
    with pytest.raises(ValueError):
        make()


def test_the_loss_layer_round_trips_its_config():
    layer = loss.SampledSoftmaxLoss(temperature=0.05, hard_negative_weight=2.0, use_logq=False)
    again = loss.SampledSoftmaxLoss.from_config(layer.get_config())
    assert (again.temperature, again.hard_negative_weight, again.use_logq) == (0.05, 2.0, False)


# --- Terms for real negatives next to the softmax (hand-computed values) -----------------------------------
def one_row_with_two_hard_negatives(hard_mask=(True, True)) -> dict:
    """One row, D = 2: query (1, 0), positive (0.6, 0.8) -> s_pos = 0.6; hard (0.8, 0.6) -> 0.8 and (0, 1) -> 0."""
    return dict(
        query=f32([[1.0, 0.0]]), positive=f32([[0.6, 0.8]]), positive_ids=i64([1]), user_ids=tf.constant(["u"]),
        positive_log_q=f32([0.0]),
        hard=f32([[[0.8, 0.6], [0.0, 1.0]]]), hard_ids=i64([[2, 3]]), hard_mask=tf.constant([list(hard_mask)]),
    )


def test_pairwise_term_is_the_mean_softplus_of_negative_minus_positive_over_the_temperature():
    inputs = one_row_with_two_hard_negatives()
    layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=2.0, temperature=0.5, use_logq=False)
    # softmax over [0.6, 0.6 (in-batch column is the row itself: masked), 0.8, 0.0] / 0.5 = [1.2, -, 1.6, 0.0]
    softmax = -1.2 + np.log(np.exp(1.2) + np.exp(1.6) + np.exp(0.0))
    # pairwise: mean(softplus((0.8 - 0.6) / 0.5), softplus((0 - 0.6) / 0.5)) = mean(softplus(0.4), softplus(-1.2))
    pairwise = (np.log1p(np.exp(0.4)) + np.log1p(np.exp(-1.2))) / 2
    assert_close(layer.per_example_loss(**inputs), [softmax + 2.0 * pairwise])


def test_not_to_recommend_term_is_minus_log_one_minus_each_negatives_softmax_probability():
    inputs = one_row_with_two_hard_negatives()
    layer = loss.RetrievalLoss(loss.NOT_TO_RECOMMEND, negative_loss_weight=1.0, temperature=0.5, use_logq=False)
    z = np.exp(1.2) + np.exp(1.6) + np.exp(0.0)
    p_hard = np.array([np.exp(1.6), np.exp(0.0)]) / z
    softmax = -1.2 + np.log(z)
    assert_close(layer.per_example_loss(**inputs), [softmax + np.mean(-np.log1p(-p_hard))])


def test_terms_skip_padding_and_the_row_own_positive():
    padded = one_row_with_two_hard_negatives(hard_mask=(True, False))
    layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=1.0, temperature=0.5, use_logq=False)
    softmax = -1.2 + np.log(np.exp(1.2) + np.exp(1.6))
    assert_close(layer.per_example_loss(**padded), [softmax + np.log1p(np.exp(0.4))])
    same_as_positive = {**one_row_with_two_hard_negatives(), "hard_ids": i64([[1, 1]])}
    assert_close(layer.per_example_loss(**same_as_positive), [0.0])  # nothing left but the positive


@pytest.mark.parametrize("formulation", loss.NEGATIVE_LOSSES)
def test_without_hard_negatives_every_formulation_is_the_softmax(formulation: str):
    inputs = without(random_batch(batch=4, dim=3, num_random=5, num_hard=2), "hard")
    plain = loss.SampledSoftmaxLoss(temperature=0.1)
    layer = loss.RetrievalLoss(formulation, negative_loss_weight=5.0, temperature=0.1)
    assert_close(layer(**inputs), plain(**inputs))


def test_softmax_formulation_equals_the_sampled_softmax_with_its_hard_weight():
    inputs = random_batch(batch=4, dim=3, num_random=5, num_hard=2)
    assert_close(loss.RetrievalLoss(loss.SOFTMAX, temperature=0.1, hard_negative_weight=3.0)(**inputs),
                 loss.SampledSoftmaxLoss(temperature=0.1, hard_negative_weight=3.0)(**inputs))


def test_pairwise_gradient_pushes_the_negative_down_and_the_positive_up():
    inputs = one_row_with_two_hard_negatives()
    hard = tf.Variable(inputs.pop("hard"))
    positive = tf.Variable(inputs.pop("positive"))
    layer = loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=1.0, temperature=0.5, use_logq=False)
    with tf.GradientTape() as tape:
        value = layer(positive=positive, hard=hard, **inputs)
    hard_grad, positive_grad = tape.gradient(value, [hard, positive])
    assert hard_grad.numpy()[0, 0, 0] > 0  # a descent step lowers the negative's score along the query
    assert positive_grad.numpy()[0, 0] < 0  # and raises the positive's


def test_retrieval_loss_rejects_unknown_settings_and_round_trips_its_config():
    with pytest.raises(ValueError, match="negative_loss must be one of"):
        loss.RetrievalLoss("hinge")
    with pytest.raises(ValueError, match="negative_loss_weight"):
        loss.RetrievalLoss(loss.PAIRWISE, negative_loss_weight=-1.0)
    layer = loss.RetrievalLoss(loss.NOT_TO_RECOMMEND, negative_loss_weight=0.5, temperature=0.05)
    again = loss.RetrievalLoss.from_config(layer.get_config())
    assert (again.negative_loss, again.negative_loss_weight, again.softmax.temperature) == (
        loss.NOT_TO_RECOMMEND, 0.5, 0.05)


def test_shared_columns_are_left_out_of_the_real_negative_term_only():
    """A bias column (query 1, track b) moves the softmax but not the pairwise term when shared."""
    inputs = one_row_with_two_hard_negatives()
    with_bias = {**inputs,
                 "query": f32([[1.0, 0.0, 1.0]]), "positive": f32([[0.6, 0.8, 0.1]]),
                 "hard": f32([[[0.8, 0.6, 0.3], [0.0, 1.0, -0.2]]])}
    shared = loss.RetrievalLoss(loss.PAIRWISE, temperature=0.5, use_logq=False, shared_columns=1)
    # softmax over (s + b) / 0.5: positive 0.7 / 0.5 = 1.4, negatives 1.1 / 0.5 = 2.2 and -0.2 / 0.5 = -0.4
    softmax = -1.4 + np.log(np.exp(1.4) + np.exp(2.2) + np.exp(-0.4))
    pairwise = (np.log1p(np.exp(0.4)) + np.log1p(np.exp(-1.2))) / 2  # as without the bias column
    assert_close(shared.per_example_loss(**with_bias), [softmax + pairwise])
    whole = loss.RetrievalLoss(loss.PAIRWISE, temperature=0.5, use_logq=False)
    pairwise_with_bias = (np.log1p(np.exp(2.2 - 1.4)) + np.log1p(np.exp(-0.4 - 1.4))) / 2
    assert_close(whole.per_example_loss(**with_bias), [softmax + pairwise_with_bias])
    with pytest.raises(ValueError, match="shared_columns"):
        loss.RetrievalLoss(loss.PAIRWISE, shared_columns=-1)
