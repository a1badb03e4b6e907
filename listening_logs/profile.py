"""Profile of a listening log: the few statistics that decide how a log behaves for the models.

    python -m listening_logs.profile --data DIR [--json]

Why: every modelling choice is judged on some log, and two logs with the same label shares can still
disagree on what matters most, chiefly whether what listeners reject is less popular than what they like
(then the most-popular baseline is hard to beat). The profile puts a simulated log and a converted real one
side by side on the same numbers:

- plays, listeners, tracks, and the rows the contract quarantined (by reason, never a crash);
- label counts and shares, by `schema.contract.label_ids` (the one labelling rule);
- per-listener like / dislike / skip counts (mean and quantiles, listeners with none counted as 0);
- popularity of the tracks of liked, listened, skipped and disliked plays: the track's play-count
  percentile within this log (mid-rank: 100 x (tracks played less + half the tracks played as often,
  itself included) / tracks, so a log where every track is played equally often gives 50 everywhere);
- the most-popular baseline's pairwise accuracy on the pairs the evaluator uses: each target like against
  each of its hard negatives, built by `components.feedback_labeler.sequences` with the pipeline's default
  labelling parameters; a track scores its play count in this log, ties count half. The same with the
  negatives restricted to dislikes and to skips, and like+listen targets against skips (the only pairs a
  log without thumbs, such as MSSD, has);
- the share of listeners who never use thumbs; the time span and plays per calendar day.

`profile_log()` computes all of it from a frame or from rows; the CLI reads the `span-N/events.csv` or
`.parquet` folders that `listening_logs.simulate` and `listening_logs.convert` write.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import pathlib
import sys
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from components.feedback_labeler import sequences
from listening_logs import spans
from schema import contract, span_folders

PROG = "python -m listening_logs.profile"
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
PER_LISTENER_LABELS: tuple[str, ...] = (contract.LIKE, contract.DISLIKE, contract.SKIP)
CONVERSION_SUMMARY = "summary.json"
"""`listening_logs.convert` writes it beside the spans; its `quarantined` counts rows that never reached them."""

LogInput = Union[pd.DataFrame, Iterable[Mapping[str, Any]]]


# --- Reading a log folder -------------------------------------------------------------------------------

def span_files(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """The events file of every `span-N` folder, in span order; one format per log."""
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data {data_dir} is not a directory; give the folder holding span-N/ folders")
    found: dict[int, list[pathlib.Path]] = collections.defaultdict(list)
    for fmt in spans.FORMATS:
        for path in data_dir.glob(f"{span_folders.GLOB}/{spans.EVENTS_STEM}.{fmt}"):
            number = span_folders.number_of(path.parent.name)
            if number is not None:
                found[number].append(path)
    if not found:
        raise FileNotFoundError(
            f"no {span_folders.folder_name('N')}/{spans.EVENTS_STEM}.csv or .parquet under {data_dir}; write a log "
            "there with `python -m listening_logs.simulate` or `python -m listening_logs.convert` first")
    mixed = sorted(number for number, paths in found.items() if len(paths) > 1)
    if mixed:
        raise ValueError(f"span folders {mixed} under {data_dir} hold both csv and parquet events; keep one format")
    return [found[number][0] for number in sorted(found)]


def read_events(path: pathlib.Path) -> pd.DataFrame:
    """One span file as text cells ('' for empty), so `contract.validate_row` judges every value itself."""
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = pd.read_parquet(path)
    return frame.astype(object).where(frame.notna(), None)


def read_log(data_dir: pathlib.Path) -> pd.DataFrame:
    """Every span of a log folder as one frame, rows unchanged."""
    return pd.concat([read_events(path) for path in span_files(data_dir)], ignore_index=True)


def conversion_quarantine(data_dir: pathlib.Path) -> Optional[dict[str, int]]:
    """Rows `listening_logs.convert` quarantined before writing the spans (None for other logs)."""
    path = pathlib.Path(data_dir) / CONVERSION_SUMMARY
    if not path.is_file():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    quarantined = document.get("quarantined") if isinstance(document, dict) else None
    return {str(k): int(v) for k, v in quarantined.items()} if isinstance(quarantined, dict) else None


# --- Validation and labels ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ValidPlays:
    """The plays that pass the contract, as arrays, and the count of those that did not, by reason."""

    user: np.ndarray  # str
    track: np.ndarray  # str
    station: np.ndarray  # str
    timestamp_ms: np.ndarray  # int64
    label: np.ndarray  # label id (index into contract.LABELS)
    quarantined: dict[str, int]

    def __len__(self) -> int:
        return len(self.user)


def _records(log: LogInput) -> Iterable[Mapping[str, Any]]:
    if isinstance(log, pd.DataFrame):
        plain = log.astype(object).where(log.notna(), None)  # pandas' NA/NaN -> None, which the contract reads as empty
        return plain.to_dict("records")
    return log


def validate_plays(log: LogInput, thresholds: contract.LabelThresholds) -> ValidPlays:
    """Every row through `contract.validate_row`; valid rows labelled by `contract.label_ids`."""
    quarantined: collections.Counter[str] = collections.Counter()
    rows: list[contract.CanonicalRow] = []
    for raw in _records(log):
        validation = contract.validate_row(raw)
        if validation.row is None:
            quarantined[str(validation.reason)] += 1
        else:
            rows.append(validation.row)
    column = lambda name: [row[name] for row in rows]  # noqa: E731
    durations = {name: np.array([np.nan if v is None else v for v in column(name)], dtype=np.float64)
                 for name in (contract.LISTEN_MS, contract.TRACK_MS)}
    labels = contract.label_ids(np.array(column(contract.FEEDBACK), dtype=object), durations[contract.LISTEN_MS],
                                durations[contract.TRACK_MS], thresholds)
    return ValidPlays(
        user=np.array(column(contract.USER_ID), dtype=object),
        track=np.array(column(contract.TRACK_ID), dtype=object),
        station=np.array(column(contract.STATION_ID), dtype=object),
        timestamp_ms=np.array(column(contract.TIMESTAMP_MS), dtype=np.int64),
        label=labels,
        quarantined=dict(sorted(quarantined.items())),
    )


# --- Statistics -----------------------------------------------------------------------------------------

def _number(value: float) -> Optional[float]:
    """A rounded float for the report; None where nothing was measured (keeps --json strict)."""
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def label_counts(plays: ValidPlays) -> dict[str, int]:
    counts = np.bincount(plays.label, minlength=len(contract.LABELS))
    return {name: int(counts[i]) for i, name in enumerate(contract.LABELS)}


def distribution(values: np.ndarray) -> dict[str, Optional[float]]:
    """Mean, quantiles (numpy's linear interpolation) and max; None for an empty array."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, **{f"p{round(q * 100)}": None for q in QUANTILES}, "max": None}
    quantiles = np.quantile(values, QUANTILES)
    return {"mean": _number(values.mean()), **{f"p{round(q * 100)}": _number(v) for q, v in zip(QUANTILES, quantiles)},
            "max": _number(values.max())}


def per_listener_counts(plays: ValidPlays) -> dict[str, dict[str, Optional[float]]]:
    """How many likes, dislikes and skips each listener has (listeners with none count as 0)."""
    _, user_index = np.unique(plays.user, return_inverse=True)
    n_users = int(user_index.max()) + 1 if len(user_index) else 0
    return {name: distribution(np.bincount(user_index, weights=plays.label == contract.LABEL_IDS[name],
                                           minlength=n_users))
            for name in PER_LISTENER_LABELS}


def track_play_counts(plays: ValidPlays) -> dict[str, int]:
    """Plays per track in this log: the most-popular baseline's score and the basis of the percentiles."""
    tracks, counts = np.unique(plays.track, return_counts=True)
    return dict(zip(tracks.tolist(), counts.tolist()))


def popularity_percentiles(counts: Mapping[str, int]) -> dict[str, float]:
    """Each track's mid-rank play-count percentile: 100 x (tracks played less + half of those played as often)."""
    values = np.array(list(counts.values()), dtype=np.int64)
    ordered = np.sort(values)
    less = np.searchsorted(ordered, values, side="left")
    equal = np.searchsorted(ordered, values, side="right") - less
    percentile = 100.0 * (less + 0.5 * equal) / len(values)
    return dict(zip(counts.keys(), percentile.tolist()))


def popularity_by_label(plays: ValidPlays, percentiles: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Mean and median popularity percentile of the tracks of each label's plays (one value per play)."""
    per_play = np.array([percentiles[track] for track in plays.track], dtype=np.float64)
    result = {}
    for name in contract.LABELS:
        chosen = per_play[plays.label == contract.LABEL_IDS[name]]
        result[name] = {"plays": int(len(chosen)),
                        "mean": _number(chosen.mean()) if len(chosen) else None,
                        "median": _number(np.median(chosen)) if len(chosen) else None}
    return result


def listeners_without_thumbs_share(plays: ValidPlays) -> Optional[float]:
    """Share of listeners with no thumbs up and no thumbs down at all."""
    users = np.unique(plays.user)
    if len(users) == 0:
        return None
    thumbs = np.isin(plays.label, [contract.LABEL_IDS[contract.LIKE], contract.LABEL_IDS[contract.DISLIKE]])
    return _number(1.0 - len(np.unique(plays.user[thumbs])) / len(users))


def time_profile(plays: ValidPlays) -> dict[str, Any]:
    """Time range; plays per day are per calendar day from the first play's UTC day to the last's."""
    first, last = int(plays.timestamp_ms.min()), int(plays.timestamp_ms.max())
    days = plays.timestamp_ms // spans.DAY_MS
    calendar_days = int(days.max() - days.min() + 1)
    return {"first_ms": first, "last_ms": last, "span_days": _number((last - first) / spans.DAY_MS),
            "calendar_days": calendar_days, "days_with_plays": int(len(np.unique(days))),
            "plays_per_day": _number(len(plays) / calendar_days)}


# --- The most-popular baseline on the evaluator's pairs -------------------------------------------------

def default_labeling_params() -> sequences.LabelingParams:
    """FeedbackLabeler's settings as the pipeline runs by default (pipeline/configs.py holds the defaults).

    Imported here, not at module level, because pipeline.configs pulls in TensorFlow: callers that pass
    their own params never pay for it.
    """
    from pipeline.configs import PipelineConfig  # noqa: PLC0415 (deliberately lazy, see above)

    return PipelineConfig().labeling_params()


def plays_by_listener(plays: ValidPlays) -> dict[str, list[sequences.Play]]:
    """The labeller's per-listener input: `sequences.Play` tuples (label names, as FeedbackLabeler gives)."""
    grouped: dict[str, list[sequences.Play]] = collections.defaultdict(list)
    names = np.array(contract.LABELS, dtype=object)[plays.label]
    for user, timestamp, track, station, label in zip(plays.user.tolist(), plays.timestamp_ms.tolist(),
                                                      plays.track.tolist(), plays.station.tolist(), names.tolist()):
        grouped[user].append(sequences.Play(timestamp, track, station, label))
    return grouped


def _capped(user_plays: list[sequences.Play], cap: int) -> list[sequences.Play]:
    """A listener's `max_events_per_user` most recent plays, as FeedbackLabeler keeps them."""
    return sorted(user_plays)[-cap:] if len(user_plays) > cap else user_plays


def most_popular_pairs(grouped: Mapping[str, list[sequences.Play]], params: sequences.LabelingParams,
                       cutoffs: sequences.Cutoffs, counts: Mapping[str, int]) -> dict[str, Any]:
    """Pairwise accuracy of scoring tracks by play count, over every (target, hard negative) pair.

    Targets and hard negatives come from `sequences.build_user_examples`, so the pairs are exactly those
    FeedbackLabeler writes (all splits together, and each split alone).
    """
    wins: collections.Counter[str] = collections.Counter()
    pairs: collections.Counter[str] = collections.Counter()
    for user, user_plays in grouped.items():
        result = sequences.build_user_examples(user, _capped(user_plays, params.max_events_per_user), params, cutoffs)
        for example in result.examples:
            target = counts[example.target_track_id]
            for negative_track in example.hard_negative_track_ids:
                negative = counts[negative_track]
                score = 1.0 if target > negative else 0.5 if target == negative else 0.0
                for key in ("all", example.split):
                    wins[key] += score
                    pairs[key] += 1
    accuracy = {key: (_number(wins[key] / pairs[key]) if pairs[key] else None) for key in ("all",) + contract.SPLITS}
    return {"pairwise_accuracy": accuracy["all"], "pairs": int(pairs["all"]),
            "by_split": {split: {"pairwise_accuracy": accuracy[split], "pairs": int(pairs[split])}
                         for split in contract.SPLITS},
            "positive_policy": params.positive_policy, "negative_policy": params.negative_policy}


PAIR_VARIANTS: dict[str, dict[str, str]] = {
    "like_vs_dislikes": {"negative_policy": "dislikes"},
    "like_vs_skips": {"negative_policy": "skips"},
    "like_listen_vs_skips": {"positive_policy": "like+listen", "negative_policy": "skips"},
}
"""Other pairings, each the labeller's own rule with one or two settings changed: which rejection carries
the popularity signal, and a measure for logs without thumbs (MSSD)."""


def most_popular_profile(plays: ValidPlays, params: sequences.LabelingParams,
                         counts: Mapping[str, int]) -> dict[str, Any]:
    """The evaluator's pairs under `params`, and the variants of PAIR_VARIANTS."""
    grouped = plays_by_listener(plays)
    cutoffs = sequences.resolve_cutoffs(params, int(plays.timestamp_ms.min()), int(plays.timestamp_ms.max()))
    result = most_popular_pairs(grouped, params, cutoffs, counts)
    result["variants"] = {}
    for name, change in PAIR_VARIANTS.items():
        variant = most_popular_pairs(grouped, dataclasses.replace(params, **change), cutoffs, counts)
        result["variants"][name] = {key: variant[key] for key in ("pairwise_accuracy", "pairs")}
    return result


# --- The whole profile ----------------------------------------------------------------------------------

def profile_log(log: LogInput, params: Optional[sequences.LabelingParams] = None) -> dict[str, Any]:
    """Every statistic of the module docstring for one log (a frame, or rows as mappings).

    Rows that break the contract are counted under `quarantined` by reason and left out of every other
    number. `params` are the labelling settings (skip thresholds, policies, hard-negative window); by
    default the pipeline's. Raises ValueError when no row is valid, since nothing could be measured.
    """
    params = params or default_labeling_params()
    plays = validate_plays(log, params.thresholds())
    rows_read = len(plays) + sum(plays.quarantined.values())
    if len(plays) == 0:
        raise ValueError(f"none of the {rows_read} rows passes the data contract (quarantined: "
                         f"{plays.quarantined or 'no rows at all'}); fix the log or its conversion first")
    counts = track_play_counts(plays)
    labels = label_counts(plays)
    return {
        "rows_read": rows_read,
        "plays": len(plays),
        "quarantined": plays.quarantined,
        "listeners": int(len(np.unique(plays.user))),
        "tracks": len(counts),
        "labels": labels,
        "label_shares": {name: _number(count / len(plays)) for name, count in labels.items()},
        "per_listener": per_listener_counts(plays),
        "popularity_percentile": popularity_by_label(plays, popularity_percentiles(counts)),
        "most_popular": most_popular_profile(plays, params, counts),
        "listeners_without_thumbs_share": listeners_without_thumbs_share(plays),
        "time": time_profile(plays),
        "labeling": dataclasses.asdict(params),
    }


def profile_dir(data_dir: pathlib.Path, params: Optional[sequences.LabelingParams] = None) -> dict[str, Any]:
    """`profile_log` of a log folder, plus what its conversion (if any) quarantined before the spans."""
    profile = {"data": str(data_dir), **profile_log(read_log(data_dir), params)}
    profile["conversion_quarantined"] = conversion_quarantine(data_dir)
    return profile


# --- Text report and CLI --------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _distribution_line(stats: Mapping[str, Any]) -> str:
    return "  ".join(f"{key} {_fmt(value, 1)}" for key, value in stats.items())


def format_profile(profile: Mapping[str, Any]) -> str:
    """The profile as a short human-readable text."""
    shares = profile["label_shares"]
    mp = profile["most_popular"]
    lines = [
        f"plays {profile['plays']}  listeners {profile['listeners']}  tracks {profile['tracks']}  "
        f"(rows read {profile['rows_read']}, quarantined {sum(profile['quarantined'].values())}"
        + "".join(f"; {reason} {n}" for reason, n in profile["quarantined"].items()) + ")",
        "labels: " + "  ".join(f"{name} {profile['labels'][name]} ({_fmt(100 * shares[name], 1)}%)"
                               for name in contract.LABELS),
        "per listener:",
        *[f"  {name:8s} {_distribution_line(stats)}" for name, stats in profile["per_listener"].items()],
        "popularity percentile of the played track (mean / median):",
        *[f"  {name:8s} {_fmt(stats['mean'], 1)} / {_fmt(stats['median'], 1)}  ({stats['plays']} plays)"
          for name, stats in profile["popularity_percentile"].items()],
        f"most-popular pairwise accuracy ({mp['positive_policy']} vs {mp['negative_policy']}): "
        f"{_fmt(mp['pairwise_accuracy'])} over {mp['pairs']} pairs; "
        + ", ".join(f"{split} {_fmt(s['pairwise_accuracy'])} ({s['pairs']})" for split, s in mp["by_split"].items()),
        *[f"  {name}: {_fmt(v['pairwise_accuracy'])} over {v['pairs']} pairs" for name, v in mp["variants"].items()],
        f"listeners who never use thumbs: {_fmt(100 * (profile['listeners_without_thumbs_share'] or 0.0), 1)}%",
        f"time: {_fmt(profile['time']['span_days'], 2)} days ({profile['time']['calendar_days']} calendar days, "
        f"{profile['time']['days_with_plays']} with plays), {_fmt(profile['time']['plays_per_day'], 2)} plays per day",
    ]
    if profile.get("conversion_quarantined"):
        lines.append("quarantined by the conversion: " + ", ".join(
            f"{reason} {n}" for reason, n in profile["conversion_quarantined"].items()))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].strip(),
        epilog="Numbers use FeedbackLabeler's default settings (pipeline/configs.py). Exit status: 0 profiled; "
               "1 no valid play; 2 fix the command or the folder first.")
    parser.add_argument("--data", required=True, type=pathlib.Path, metavar="DIR",
                        help="log folder holding span-N/events.csv or span-N/events.parquet")
    parser.add_argument("--json", action="store_true", help="print the profile as one JSON document")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        files = span_files(args.data)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # exits 2 with the message
    try:
        profile = profile_dir(args.data)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(profile, indent=2, sort_keys=False))
    else:
        print(f"{args.data} ({len(files)} span files)")
        print(format_profile(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
