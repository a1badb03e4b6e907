"""The retrieval loss (docs/design.md §5): sampled softmax with temperature over four blocks of candidates.

For query row i (batch size B, embedding dim D, N shared random negatives, H hard negatives per row) the
logits have the columns, in this order:

| columns               | score                  | logQ-corrected | masked where                                  |
|-----------------------|------------------------|----------------|-----------------------------------------------|
| 0                     | dot(q_i, c_pos_i)      | no             | never (it is the label)                       |
| 1 .. B                | dot(q_i, c_pos_j)      | yes            | j == i; id_j == id_pos_i (accidental hit);    |
|                       |                        |                | user_j == user_i (a same-user positive)       |
| 1+B .. B+N            | dot(q_i, c_rand_n)     | yes            | id_rand_n == id_pos_i                         |
| 1+B+N .. B+N+H        | dot(q_i, c_hard_i,h)   | no, + log(w)   | padding; id_hard_i,h == id_pos_i              |

The label is always column 0 (POSITIVE_COLUMN). A masked column is set to MASKED_LOGIT, whose exp
underflows to exactly 0 next to any real logit, so it takes no probability and no gradient; the positive is
never masked, so a row with everything else masked has a finite loss of 0.

Order of operations, and why it is not "divide everything by the temperature last": the temperature scales
the similarities only (score / temperature); the corrections are added afterwards
(- log_q, + log(hard_negative_weight)), then the mask. The logQ correction belongs on the logits the softmax
actually sees (Yi et al. 2019, "Sampling-bias-corrected neural modeling"; TFRS `Retrieval` also applies the
temperature before `SamplingProbablityCorrection`), and only then does a hard negative weight w multiply that
negative's exp(logit) in the denominator by exactly w (dividing log(w) by the temperature would make it
w ** (1 / temperature)).

logQ convention: log_q is the log of the candidate's EXPECTED COUNT among one batch's negatives of its
block, i.e. log(draws * p(id)):
- in-batch: the batch's B positives are B draws from the data distribution, so
  log_q = log(B * count(id) / total)  (`in_batch_log_q`);
- random: the N shared negatives are N draws with replacement from the sampler's p, so
  log_q = log(N * p(id))  (`CandidateSampler.sample`).
With expected counts, each corrected block is on its own an unbiased estimate of the full-catalog softmax
denominator, so the two blocks are weighted consistently whatever B and N are.

Reduction: `SampledSoftmaxLoss.per_example_loss` returns [B]; calling the layer returns their mean.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import numpy as np
import tensorflow as tf

from models.params import (CANDIDATES_ALL, CANDIDATES_NEW, CANDIDATES_NONE, NEGATIVE_LOSSES, NOT_TO_RECOMMEND, PAIRWISE,
                           POPULARITY, SAMPLERS, SOFTMAX, TERM_CANDIDATES, UNIFORM)

MASKED_LOGIT = -1e9
"""The logit of a masked column: finite (no inf - inf = NaN), and exp(MASKED_LOGIT - any real logit) == 0."""
POSITIVE_COLUMN = 0
"""The label: every row's positive is its first logit."""
NO_WEIGHT = 1.0
"""A hard negative weight that leaves the softmax unchanged."""
NOT_TO_RECOMMEND_EPSILON = 1e-6
"""p(neg) is clipped to 1 - this, so -log(1 - p) stays finite when a rejected track takes all the mass."""

DISTRIBUTIONS: tuple[str, ...] = SAMPLERS
MIN_COUNT = 1.0
"""In-batch logQ treats a track counted 0 times (e.g. the OOV id) as counted once, so its log_q is finite."""

SeedLike = Union[tf.Tensor, tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class ScoreOffsets:
    """Per-row additions to the scores of each block, before the temperature (models.memory): [B, 1] for the
    positive, [B, B] in-batch, [B, N] random, [B, H] hard; None adds nothing to that block."""

    positive: Optional[tf.Tensor] = None
    in_batch: Optional[tf.Tensor] = None
    random: Optional[tf.Tensor] = None
    hard: Optional[tf.Tensor] = None


NO_OFFSETS = ScoreOffsets()


def _plus(scores: tf.Tensor, offset: Optional[tf.Tensor]) -> tf.Tensor:
    return scores if offset is None else scores + tf.cast(offset, scores.dtype)


# --- Layers with one job each ------------------------------------------------------------------------------
class PositiveLogits(tf.keras.layers.Layer):
    """Scores each query against its own positive: the label column."""

    def call(self, query: tf.Tensor, positive: tf.Tensor) -> tf.Tensor:
        """query, positive: [B, D]. Returns [B, 1]."""
        return tf.reduce_sum(query * positive, axis=-1, keepdims=True)


class InBatchLogits(tf.keras.layers.Layer):
    """Scores each query against every row's positive, and says which of those may act as negatives.

    Row j's positive is no negative for row i when j == i (it is row i's label), when it is the same track
    as row i's positive (an accidental hit), or when row j belongs to the same user (a track that user
    chose elsewhere in the batch is no evidence against it).
    """

    def call(
        self, query: tf.Tensor, positive: tf.Tensor, positive_ids: tf.Tensor, user_ids: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """query, positive: [B, D]; positive_ids: [B] int64; user_ids: [B] string or int.

        Returns (logits [B, B], valid [B, B] bool): logits[i, j] = dot(q_i, c_pos_j).
        """
        logits = tf.linalg.matmul(query, positive, transpose_b=True)
        # j == i is both a same-track and a same-user column, so it needs no test of its own.
        same_track = tf.equal(positive_ids[:, tf.newaxis], positive_ids[tf.newaxis, :])
        same_user = tf.equal(user_ids[:, tf.newaxis], user_ids[tf.newaxis, :])
        valid = tf.logical_not(same_track | same_user)
        return logits, valid


class RandomNegativeLogits(tf.keras.layers.Layer):
    """Scores each query against the catalog sample the whole batch shares."""

    def call(
        self, query: tf.Tensor, random: tf.Tensor, random_ids: tf.Tensor, positive_ids: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """query: [B, D]; random: [N, D]; random_ids: [N] int64; positive_ids: [B] int64.

        Returns (logits [B, N], valid [B, N] bool); a sample that is row i's positive is not its negative.
        """
        logits = tf.linalg.matmul(query, random, transpose_b=True)
        valid = tf.not_equal(positive_ids[:, tf.newaxis], random_ids[tf.newaxis, :])
        return logits, valid


class HardNegativeLogits(tf.keras.layers.Layer):
    """Scores each query against its own row's hard negatives only (never another row's)."""

    def call(
        self,
        query: tf.Tensor,
        hard: tf.Tensor,
        hard_ids: tf.Tensor,
        hard_mask: tf.Tensor,
        positive_ids: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """query: [B, D]; hard: [B, H, D]; hard_ids: [B, H] int64; hard_mask: [B, H] bool, True = real.

        Returns (logits [B, H], valid [B, H] bool); padding and a hard negative that is the row's own
        positive are invalid.
        """
        logits = tf.einsum("bd,bhd->bh", query, hard)
        valid = tf.logical_and(hard_mask, tf.not_equal(hard_ids, positive_ids[:, tf.newaxis]))
        return logits, valid


class LogQCorrection(tf.keras.layers.Layer):
    """Subtracts each candidate column's log sampling weight, so frequently drawn candidates are not
    over-penalised (see the module docstring for the expected-count convention)."""

    def call(self, logits: tf.Tensor, log_q: tf.Tensor) -> tf.Tensor:
        """logits: [B, C]; log_q: [C], one value per candidate column. Returns [B, C]."""
        return logits - tf.cast(log_q, logits.dtype)[tf.newaxis, :]


class MaskLogits(tf.keras.layers.Layer):
    """Replaces invalid columns by MASKED_LOGIT, so they take exactly zero probability and gradient."""

    def call(self, logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """logits: [B, C]; valid: [B, C] bool. Returns [B, C]."""
        return tf.where(valid, logits, tf.constant(MASKED_LOGIT, dtype=logits.dtype))


# --- The loss ----------------------------------------------------------------------------------------------
class SampledSoftmaxLoss(tf.keras.layers.Layer):
    """Sampled softmax cross-entropy of each row's positive against in-batch, random and hard negatives.

    Inputs (all tensors; B rows, D dims, N random negatives, H hard negatives per row, either may be 0):
      query [B, D], positive [B, D]: tower outputs (the towers L2-normalise them);
      positive_ids [B] int64: track id of each row's positive;
      user_ids [B] string or int: whose row it is (same-user positives are masked);
      positive_log_q [B] float: in-batch log_q of each row's positive (`in_batch_log_q`);
      random [N, D], random_ids [N] int64, random_log_q [N] float: optional, together
        (`CandidateSampler.sample`; random_log_q may be omitted when use_logq is False);
      hard [B, H, D], hard_ids [B, H] int64, hard_mask [B, H] bool (True = real): optional, together.
    See the module docstring for the column layout and the order of operations.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        hard_negative_weight: float = NO_WEIGHT,
        use_logq: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        """temperature > 0 scales similarities; hard_negative_weight > 0 multiplies each real hard
        negative's exp(logit) in the denominator; use_logq switches the logQ correction; layer_kwargs
        (name, dtype, ...) go to tf.keras.layers.Layer."""
        super().__init__(**layer_kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not hard_negative_weight > 0:
            raise ValueError(f"hard_negative_weight must be > 0, got {hard_negative_weight}")
        self.temperature = float(temperature)
        self.hard_negative_weight = float(hard_negative_weight)
        self.use_logq = use_logq
        self._positive = PositiveLogits()
        self._in_batch = InBatchLogits()
        self._random = RandomNegativeLogits()
        self._hard = HardNegativeLogits()
        self._log_q = LogQCorrection()
        self._mask = MaskLogits()

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "hard_negative_weight": self.hard_negative_weight,
            "use_logq": self.use_logq,
        }

    def logits(
        self,
        query: tf.Tensor,
        positive: tf.Tensor,
        positive_ids: tf.Tensor,
        user_ids: tf.Tensor,
        positive_log_q: Optional[tf.Tensor] = None,
        *,
        random: Optional[tf.Tensor] = None,
        random_ids: Optional[tf.Tensor] = None,
        random_log_q: Optional[tf.Tensor] = None,
        hard: Optional[tf.Tensor] = None,
        hard_ids: Optional[tf.Tensor] = None,
        hard_mask: Optional[tf.Tensor] = None,
        offsets: ScoreOffsets = NO_OFFSETS,
    ) -> tf.Tensor:
        """The masked, corrected, temperature-scaled logits [B, 1 + B + N + H]; the label is column 0. `offsets`
        are added to the scores before the temperature."""
        if self.use_logq and positive_log_q is None:
            raise ValueError("use_logq is on: pass positive_log_q (models.loss.in_batch_log_q)")
        blocks = [_plus(self._positive(query, positive), offsets.positive) / self.temperature]
        valids = [tf.ones_like(blocks[0], dtype=tf.bool)]

        in_batch, valid = self._in_batch(query, positive, positive_ids, user_ids)
        in_batch = _plus(in_batch, offsets.in_batch) / self.temperature
        if self.use_logq:
            in_batch = self._log_q(in_batch, positive_log_q)
        blocks.append(in_batch)
        valids.append(valid)

        if _given("random", random=random, random_ids=random_ids):
            if self.use_logq and random_log_q is None:
                raise ValueError("use_logq is on: pass random_log_q with the random negatives")
            sampled, valid = self._random(query, random, random_ids, positive_ids)
            sampled = _plus(sampled, offsets.random) / self.temperature
            if self.use_logq:
                sampled = self._log_q(sampled, random_log_q)
            blocks.append(sampled)
            valids.append(valid)

        if _given("hard", hard=hard, hard_ids=hard_ids, hard_mask=hard_mask):
            own, valid = self._hard(query, hard, hard_ids, hard_mask, positive_ids)
            own = _plus(own, offsets.hard) / self.temperature
            if self.hard_negative_weight != NO_WEIGHT:
                own = own + tf.math.log(tf.constant(self.hard_negative_weight, dtype=own.dtype))
            blocks.append(own)
            valids.append(valid)

        return self._mask(tf.concat(blocks, axis=1), tf.concat(valids, axis=1))

    def per_example_loss(
        self,
        query: tf.Tensor,
        positive: tf.Tensor,
        positive_ids: tf.Tensor,
        user_ids: tf.Tensor,
        positive_log_q: Optional[tf.Tensor] = None,
        *,
        random: Optional[tf.Tensor] = None,
        random_ids: Optional[tf.Tensor] = None,
        random_log_q: Optional[tf.Tensor] = None,
        hard: Optional[tf.Tensor] = None,
        hard_ids: Optional[tf.Tensor] = None,
        hard_mask: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        """Cross-entropy of each row's positive, [B]; the arguments of `logits`."""
        logits = self.logits(
            query, positive, positive_ids, user_ids, positive_log_q,
            random=random, random_ids=random_ids, random_log_q=random_log_q,
            hard=hard, hard_ids=hard_ids, hard_mask=hard_mask,
        )
        labels = tf.fill(tf.shape(logits)[:1], POSITIVE_COLUMN)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def call(
        self,
        query: tf.Tensor,
        positive: tf.Tensor,
        positive_ids: tf.Tensor,
        user_ids: tf.Tensor,
        positive_log_q: Optional[tf.Tensor] = None,
        *,
        random: Optional[tf.Tensor] = None,
        random_ids: Optional[tf.Tensor] = None,
        random_log_q: Optional[tf.Tensor] = None,
        hard: Optional[tf.Tensor] = None,
        hard_ids: Optional[tf.Tensor] = None,
        hard_mask: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        """The mean of `per_example_loss` over the batch (a scalar); the arguments of `logits`."""
        per_example = self.per_example_loss(
            query, positive, positive_ids, user_ids, positive_log_q,
            random=random, random_ids=random_ids, random_log_q=random_log_q,
            hard=hard, hard_ids=hard_ids, hard_mask=hard_mask,
        )
        return tf.reduce_mean(per_example)


# --- Terms for the listener's own real negatives, next to the softmax ---------------------------------------
class PairwiseTerm(tf.keras.layers.Layer):
    """Each row's positive against each of its own real negatives: mean softplus((s_neg - s_pos) / T).

    This is the pairwise logistic (BPR) loss on exactly the pairs the evaluator's pairwise accuracy counts.
    In the softmax a handful of real negatives are a rounding error next to the in-batch and random blocks
    (each of which stands for the whole catalog); here every real negative takes a full share of its row's
    gradient, as in the paper's per-position binary cross-entropy.
    """

    def call(self, positive_logit: tf.Tensor, hard_logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """positive_logit: [B, 1] = s_pos / T; hard_logits: [B, H] = s_neg / T; valid: [B, H] bool.

        Returns [B]: each row's mean over its valid negatives (0 for a row without any).
        """
        losses = tf.nn.softplus(hard_logits - positive_logit)
        return _masked_row_mean(losses, valid)


class NotToRecommendTerm(tf.keras.layers.Layer):
    """-log(1 - p(neg)) for each real negative, p from the same sampled softmax the positive is trained in.

    The negative-feedback-aware objective of Wang et al., "Learning from Negative User Feedback and Measuring
    Responsiveness for Sequential Recommenders" (RecSys 2023): the log-likelihood of NOT recommending a track
    the listener rejected. Its gradient is about p(neg), so it only pushes down rejected tracks the model
    would actually recommend.
    """

    def call(self, logits: tf.Tensor, num_hard: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        """logits: [B, C] masked, corrected logits whose last num_hard columns are the hard block;
        valid: [B, num_hard] bool. Returns [B]: each row's mean over its valid negatives."""
        log_z = tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        p = tf.exp(logits[:, -num_hard:] - log_z)
        losses = -tf.math.log1p(-tf.minimum(p, 1.0 - NOT_TO_RECOMMEND_EPSILON))
        return _masked_row_mean(losses, valid)


def _masked_row_mean(losses: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    weights = tf.cast(valid, losses.dtype)
    return tf.reduce_sum(losses * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class RetrievalLoss(tf.keras.layers.Layer):
    """The Trainer's objective: the sampled softmax, plus one term for the real negatives (`negative_loss`).

    negative_loss:
      'softmax'           the softmax alone (real negatives only in its denominator, at hard_negative_weight);
      'pairwise'          + negative_loss_weight x PairwiseTerm;
      'not_to_recommend'  + negative_loss_weight x NotToRecommendTerm.
    Without hard negatives (hard_negatives_in_loss=False, or none in a row) every formulation is the softmax
    alone, so a random-only run is the same model whatever negative_loss says. Takes the inputs of
    SampledSoftmaxLoss; calling it returns the batch mean of `per_example_loss`.
    """

    def __init__(self, negative_loss: str = PAIRWISE, negative_loss_weight: float = 1.0,
                 temperature: float = 1.0, hard_negative_weight: float = NO_WEIGHT, use_logq: bool = True,
                 shared_columns: int = 0, term_moves_candidates: str = CANDIDATES_ALL, **layer_kwargs: Any) -> None:
        """shared_columns: trailing embedding columns that score every listener alike (the item bias); the
        real-negative term leaves them out, so one listener's rejection shapes what is personal to them and
        not the track's standing with everyone (the softmax still trains them).
        term_moves_candidates: which embeddings the term's gradient reaches (pipeline/configs.py
        negative_loss_on_candidates): 'all'; 'new', all but the real negatives that `hard_in_history` marks;
        'none', neither the positive's nor the real negatives'. The score offsets get it in every case."""
        super().__init__(**layer_kwargs)
        if negative_loss not in NEGATIVE_LOSSES:
            raise ValueError(f"negative_loss must be one of {NEGATIVE_LOSSES}, got {negative_loss!r}")
        if not negative_loss_weight >= 0:
            raise ValueError(f"negative_loss_weight must be >= 0, got {negative_loss_weight}")
        self.negative_loss = negative_loss
        self.negative_loss_weight = float(negative_loss_weight)
        if shared_columns < 0:
            raise ValueError(f"shared_columns must be >= 0, got {shared_columns}")
        self.shared_columns = int(shared_columns)
        if term_moves_candidates not in TERM_CANDIDATES:
            raise ValueError(f"term_moves_candidates must be one of {TERM_CANDIDATES}, got {term_moves_candidates!r}")
        self.term_moves_candidates = term_moves_candidates
        self.softmax = SampledSoftmaxLoss(temperature, hard_negative_weight, use_logq)
        self._positive = PositiveLogits()
        self._hard = HardNegativeLogits()
        self._pairwise = PairwiseTerm()
        self._not_to_recommend = NotToRecommendTerm()

    def get_config(self) -> dict:
        own = {key: value for key, value in self.softmax.get_config().items()
               if key in ("temperature", "hard_negative_weight", "use_logq")}
        return {**super().get_config(), **own, "negative_loss": self.negative_loss,
                "negative_loss_weight": self.negative_loss_weight, "shared_columns": self.shared_columns,
                "term_moves_candidates": self.term_moves_candidates}

    def per_example_loss(self, query: tf.Tensor, positive: tf.Tensor, positive_ids: tf.Tensor,
                         user_ids: tf.Tensor, positive_log_q: Optional[tf.Tensor] = None, *,
                         random: Optional[tf.Tensor] = None, random_ids: Optional[tf.Tensor] = None,
                         random_log_q: Optional[tf.Tensor] = None, hard: Optional[tf.Tensor] = None,
                         hard_ids: Optional[tf.Tensor] = None, hard_mask: Optional[tf.Tensor] = None,
                         offsets: ScoreOffsets = NO_OFFSETS, term_query: Optional[tf.Tensor] = None,
                         hard_in_history: Optional[tf.Tensor] = None) -> tf.Tensor:
        """[B]: each row's softmax cross-entropy plus its weighted real-negative term (both with `offsets`).

        term_query: the query the real-negative term scores with, when it must differ from `query` (equal in
        value, with some of its gradient stopped: pipeline/configs.py negative_loss_on_query).
        hard_in_history: [B, H] bool, the real negatives that are in the row's history (for 'new')."""
        logits = self.softmax.logits(
            query, positive, positive_ids, user_ids, positive_log_q,
            random=random, random_ids=random_ids, random_log_q=random_log_q,
            hard=hard, hard_ids=hard_ids, hard_mask=hard_mask, offsets=offsets,
        )
        labels = tf.fill(tf.shape(logits)[:1], POSITIVE_COLUMN)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if (self.negative_loss == SOFTMAX or self.negative_loss_weight == 0
                or not _given("hard", hard=hard, hard_ids=hard_ids, hard_mask=hard_mask)):
            return per_example
        query = query if term_query is None else term_query
        if self.term_moves_candidates == CANDIDATES_NONE:
            positive, hard = tf.stop_gradient(positive), tf.stop_gradient(hard)
        elif self.term_moves_candidates == CANDIDATES_NEW:
            if hard_in_history is None:
                raise ValueError("term_moves_candidates='new' needs hard_in_history")
            hard = tf.where(hard_in_history[..., None], tf.stop_gradient(hard), hard)
        if self.shared_columns:
            query, positive, hard = (tensor[..., :-self.shared_columns] for tensor in (query, positive, hard))
        hard_logits, valid = self._hard(query, hard, hard_ids, hard_mask, positive_ids)
        if self.negative_loss == PAIRWISE:
            positive_logit = _plus(self._positive(query, positive), offsets.positive) / self.softmax.temperature
            term = self._pairwise(positive_logit, _plus(hard_logits, offsets.hard) / self.softmax.temperature, valid)
        elif self.negative_loss == NOT_TO_RECOMMEND:
            term = self._not_to_recommend(logits, tf.shape(hard)[1], valid)
        else:
            raise AssertionError(f"unhandled negative_loss {self.negative_loss!r}")
        return per_example + self.negative_loss_weight * term

    def call(self, query: tf.Tensor, positive: tf.Tensor, positive_ids: tf.Tensor, user_ids: tf.Tensor,
             positive_log_q: Optional[tf.Tensor] = None, *, random: Optional[tf.Tensor] = None,
             random_ids: Optional[tf.Tensor] = None, random_log_q: Optional[tf.Tensor] = None,
             hard: Optional[tf.Tensor] = None, hard_ids: Optional[tf.Tensor] = None,
             hard_mask: Optional[tf.Tensor] = None, offsets: ScoreOffsets = NO_OFFSETS,
             term_query: Optional[tf.Tensor] = None, hard_in_history: Optional[tf.Tensor] = None) -> tf.Tensor:
        """The batch mean of `per_example_loss` (a scalar)."""
        return tf.reduce_mean(self.per_example_loss(
            query, positive, positive_ids, user_ids, positive_log_q, random=random, random_ids=random_ids,
            random_log_q=random_log_q, hard=hard, hard_ids=hard_ids, hard_mask=hard_mask, offsets=offsets,
            term_query=term_query, hard_in_history=hard_in_history))


def _given(block: str, **tensors: Optional[tf.Tensor]) -> bool:
    """Whether an optional block of inputs was passed; half a block is a caller bug, so it fails."""
    missing = [name for name, tensor in tensors.items() if tensor is None]
    if len(missing) == len(tensors):
        return False
    if missing:
        raise ValueError(f"{block} negatives need {sorted(tensors)} together; missing {missing}")
    return True


# --- Sampling probabilities from vocabulary counts ---------------------------------------------------------
def _checked_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array (count of id i at row i), got {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("counts must be finite and >= 0")
    return counts


def in_batch_log_q(counts: np.ndarray, batch_size: int) -> np.ndarray:
    """log_q of each id as an in-batch negative: log(batch_size * count / total), float32 [V].

    Index it with the batch's positive ids to get `positive_log_q`. Ids counted 0 times count as MIN_COUNT
    so the log is finite. Pass the counts with an entry for every row of the track table (append the OOV
    bucket's 0 to `features.read_track_frequencies`).
    """
    counts = _checked_counts(counts)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("counts are all 0: no in-batch sampling probability")
    return np.log(batch_size * np.maximum(counts, MIN_COUNT) / total).astype(np.float32)


class CandidateSampler:
    """Draws the batch's shared random negatives from the catalog, uniformly or by popularity ** alpha.

    Sampling is with replacement, so a drawn id's log_q is log(num_samples * p(id)) (the module's
    expected-count convention). Ids are rows of `counts`; with POPULARITY an id counted 0 times has p = 0
    (unless alpha == 0, which is UNIFORM) and is never drawn.
    """

    def __init__(self, counts: np.ndarray, distribution: str = POPULARITY, alpha: float = 1.0) -> None:
        counts = _checked_counts(counts)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if distribution == UNIFORM:
            weights = np.ones_like(counts)
        else:
            weights = np.power(counts, alpha)  # 0 ** 0 == 1: alpha = 0 is uniform
        if weights.sum() <= 0:
            raise ValueError("counts are all 0: nothing to sample by popularity")
        self.probabilities: np.ndarray = weights / weights.sum()
        """p(id), float64 [V], sums to 1."""
        with np.errstate(divide="ignore"):
            self._log_p = tf.constant(np.log(self.probabilities), dtype=tf.float32)

    @property
    def num_ids(self) -> int:
        return int(self.probabilities.size)

    def log_q(self, ids: tf.Tensor, num_samples: int) -> tf.Tensor:
        """log(num_samples * p(id)) of the given ids, float32."""
        return tf.gather(self._log_p, ids) + tf.math.log(tf.cast(num_samples, tf.float32))

    def sample(self, num_samples: int, seed: SeedLike) -> tuple[tf.Tensor, tf.Tensor]:
        """num_samples ids (int64 [N]) and their log_q (float32 [N]); the same seed gives the same ids.

        seed is a stateless seed, shape [2] ints (e.g. derived from the training step).
        """
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        ids = tf.random.stateless_categorical(
            self._log_p[tf.newaxis, :], num_samples, seed=seed, dtype=tf.int64
        )[0]
        return ids, self.log_q(ids, num_samples)
