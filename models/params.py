"""The Trainer's settings as one validated object; defaults live in pipeline/configs.py (the one source)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Optional

UNIFORM = "uniform"
POPULARITY = "popularity"
SAMPLERS: tuple[str, ...] = (UNIFORM, POPULARITY)
"""How random negatives are drawn (models.loss.CandidateSampler)."""
SOFTMAX = "softmax"
PAIRWISE = "pairwise"
NOT_TO_RECOMMEND = "not_to_recommend"
NEGATIVE_LOSSES: tuple[str, ...] = (SOFTMAX, PAIRWISE, NOT_TO_RECOMMEND)
"""How the listener's real negatives enter the loss (models.loss.RetrievalLoss)."""
PAIRWISE_ACCURACY = "pairwise_accuracy"
RECALL_AT_100 = "recall_at_100"
PAIRWISE_PLUS_RECALL = "pairwise_accuracy+recall_at_100"
ACCURACY_WITH_RECALL_FLOOR = "pairwise_accuracy_with_recall_floor"
"""Best eval pairwise accuracy among the epochs whose eval recall@100 reaches most-popular's (the floor)."""
SUM_WITH_FLOORS = "pairwise_accuracy+recall_at_100_with_floors"
"""Best sum of eval pairwise accuracy and recall@100 among the epochs that reach most-popular's on both."""
EARLY_STOPPING_RULES: tuple[str, ...] = (SUM_WITH_FLOORS, ACCURACY_WITH_RECALL_FLOOR, PAIRWISE_PLUS_RECALL,
                                         PAIRWISE_ACCURACY, RECALL_AT_100)
"""What the Trainer's early stopping maximises on the eval split (models.trainer.early_stopping_value)."""
MOST_POPULAR_FLOOR_RULES: tuple[str, ...] = (SUM_WITH_FLOORS, ACCURACY_WITH_RECALL_FLOOR)
"""The rules that need most-popular's eval numbers (the Trainer computes them once, before epoch 1)."""
HISTORY_GAINS_OFF = "off"
HISTORY_GAIN_STARTS: dict[str, float] = {"signed": -1.0, "zero": 0.0, "learned": 1.0}
"""Where the learned gain on a skipped or disliked history track's embedding starts (models.towers.QueryTower);
'off' has no gain: every history token adds its track's embedding as it is."""
HISTORY_GAINS: tuple[str, ...] = (HISTORY_GAINS_OFF, *HISTORY_GAIN_STARTS)
POOL_ALL = "all"
POOL_POSITIVES = "positives"
HISTORY_POOLINGS: tuple[str, ...] = (POOL_ALL, POOL_POSITIVES)
"""Which history tokens the query tower averages after the transformer (models.towers.pooling_weights)."""
DIRECT_OFF = "off"
DIRECT_REJECTIONS = "rejections"
DIRECT_ALL = "all"
DIRECT_FEEDBACK: tuple[str, ...] = (DIRECT_OFF, DIRECT_REJECTIONS, DIRECT_ALL)
"""Which feedback types also reach the query directly, as a learned multiple of the mean candidate vector of the
history tracks with that type (models.towers.direct_feedback_vector): none, skips and dislikes, or every type."""
QUERY_ALL = "all"
QUERY_DIRECT = "direct"
QUERY_DISLIKES = "dislikes"
QUERY_NONE = "none"
TERM_QUERY_PARTS: tuple[str, ...] = (QUERY_ALL, QUERY_DIRECT, QUERY_DISLIKES, QUERY_NONE)
"""What of the query tower the real-negative term may move (models.trainer.RetrievalModel.loss_queries)."""
CANDIDATES_ALL = "all"
CANDIDATES_NEW = "new"
CANDIDATES_NONE = "none"
TERM_CANDIDATES: tuple[str, ...] = (CANDIDATES_ALL, CANDIDATES_NEW, CANDIDATES_NONE)
"""Which candidate embeddings the real-negative term may move (models.loss.RetrievalLoss): every one it scores,
all but the real negatives already in the row's history (their repeats are the history memory's), or none."""
ADAM = "adam"
LAZY_ADAM = "lazy_adam"
OPTIMIZERS: tuple[str, ...] = (ADAM, LAZY_ADAM)
"""The Trainer's optimizer (models.optimizer.make_optimizer): tf_keras' Adam, or Adam with row-wise updates of
the embedding tables (models.optimizer.LazyAdam)."""
DEFAULT_STRATEGY = "default"
MIRRORED_STRATEGY = "mirrored"
MULTI_WORKER_STRATEGY = "multi_worker_mirrored"
STRATEGIES: tuple[str, ...] = (DEFAULT_STRATEGY, MIRRORED_STRATEGY, MULTI_WORKER_STRATEGY)
"""tf.distribute strategies the Trainer can run under (models.distribution.make_strategy)."""


@dataclasses.dataclass(frozen=True)
class DislikePenalty:
    """The dislike-neighbour rule's two settings (models/neighbours.py; pipeline/configs.py dislike_neighbour_weight,
    dislike_neighbour_floor)."""

    weight: float
    floor: float

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"dislike_neighbour_weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.floor < 1.0:
            raise ValueError(f"dislike_neighbour_floor must be within [0, 1), got {self.floor}")

    @property
    def active(self) -> bool:
        return self.weight > 0

    @classmethod
    def of_training(cls, training: Mapping[str, Any]) -> Optional["DislikePenalty"]:
        """The rule of a model config's "training" entry; None when off or when the model predates it."""
        if "dislike_neighbour_weight" not in training:
            return None
        rule = cls(float(training["dislike_neighbour_weight"]), float(training["dislike_neighbour_floor"]))
        return rule if rule.active else None



@dataclasses.dataclass(frozen=True)
class TrainingParams:
    max_history: int
    max_hard_negatives: int
    num_random_negatives: int
    sampler: str
    sampler_alpha: float
    hard_negatives_in_loss: bool
    hard_negative_weight: float
    negative_loss: str
    negative_loss_weight: float
    item_bias: bool
    item_bias_prior_scale: float
    history_gains: str
    history_pooling: str
    direct_feedback: str
    direct_feedback_scale: float
    history_memory: str
    negative_loss_on_bias: bool
    negative_loss_on_candidates: str
    negative_loss_on_query: str
    dislike_neighbour_weight: float
    dislike_neighbour_floor: float
    temperature: float
    embedding_dim: int
    num_layers: int
    num_heads: int
    dropout: float
    learning_rate: float
    optimizer: str
    batch_size: int
    epochs: int
    patience: int
    early_stopping: str
    seed: int
    warm_start: bool
    distribution_strategy: str

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.negative_loss not in NEGATIVE_LOSSES:
            raise ValueError(f"negative_loss must be one of {NEGATIVE_LOSSES}, got {self.negative_loss!r}")
        if self.negative_loss_weight < 0:
            raise ValueError(f"negative_loss_weight must be >= 0, got {self.negative_loss_weight}")
        if self.history_gains not in HISTORY_GAINS:
            raise ValueError(f"history_gains must be one of {HISTORY_GAINS}, got {self.history_gains!r}")
        if self.history_pooling not in HISTORY_POOLINGS:
            raise ValueError(f"history_pooling must be one of {HISTORY_POOLINGS}, got {self.history_pooling!r}")
        if self.direct_feedback not in DIRECT_FEEDBACK:
            raise ValueError(f"direct_feedback must be one of {DIRECT_FEEDBACK}, got {self.direct_feedback!r}")
        if self.negative_loss_on_query not in TERM_QUERY_PARTS:
            raise ValueError(f"negative_loss_on_query must be one of {TERM_QUERY_PARTS}, "
                             f"got {self.negative_loss_on_query!r}")
        if self.negative_loss_on_candidates not in TERM_CANDIDATES:
            raise ValueError(f"negative_loss_on_candidates must be one of {TERM_CANDIDATES}, "
                             f"got {self.negative_loss_on_candidates!r}")
        if self.history_memory not in DIRECT_FEEDBACK:
            raise ValueError(f"history_memory must be one of {DIRECT_FEEDBACK}, got {self.history_memory!r}")
        if self.early_stopping not in EARLY_STOPPING_RULES:
            raise ValueError(f"early_stopping must be one of {EARLY_STOPPING_RULES}, got {self.early_stopping!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.distribution_strategy not in STRATEGIES:
            raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {self.distribution_strategy!r}")
        positive = ("max_history", "embedding_dim", "num_heads", "batch_size", "epochs", "patience")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_hard_negatives", "num_random_negatives", "num_layers", "sampler_alpha", "item_bias_prior_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("temperature", "learning_rate", "hard_negative_weight", "direct_feedback_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        DislikePenalty(self.dislike_neighbour_weight, self.dislike_neighbour_floor)  # validates both
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be within [0, 1), got {self.dropout}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be a multiple of num_heads ({self.num_heads})")

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "TrainingParams":
        """Rebuilds the params the pipeline passed as the Trainer's custom_config (types restored)."""
        hints = typing.get_type_hints(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in custom_config]
        if missing:
            raise ValueError(f"Trainer custom_config lacks {missing}; build it with PipelineConfig.training_params()")
        return cls(**{f.name: hints[f.name](custom_config[f.name]) for f in dataclasses.fields(cls)})
