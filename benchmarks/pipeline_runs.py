"""Real pipeline runs on simulated logs, made once per (log, settings) and shared by the sections.

The training section needs a run's Transform output, the serving section its exported model, the pipeline
section its timings; when their logs and settings are the same (--quick, --tiny) one run serves all three.
Each run is `pipeline.local_runner.run` in a fresh spawned process (harness.pipeline_jobs, as
experiments.reproduce runs its pipelines), its TFX/Beam/TensorFlow chatter in a log file, with caching off so
every step really runs. With `--pipeline-root` (a finished `pipeline.local_runner` root) every section that
needs a run uses that root's newest run instead, read back from its MLMD store: nothing is simulated or run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil
import time
from typing import Any, Callable, Optional

from benchmarks.measure import PeakRssSampler, ResourceSample
from benchmarks.settings import Profile
from harness.pipeline_jobs import PipelineJob, run_in_child
from listening_logs import presets

CACHE_OFF = "enable_cache=false"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a run depends on: the simulated log's sizes and the pipeline settings."""

    users: int
    tracks: int
    events: int
    days: int
    seed: int
    preset: str
    """The simulator preset of the log (listening_logs.presets)."""
    settings: tuple[str, ...]

    @classmethod
    def of(cls, profile: Profile, prefix: str, scale: float = 1.0) -> "RunSpec":
        """The 'model' or 'pipeline' log of a profile, its plays, listeners and catalog times `scale`; spans
        cover every simulated day, caching is off."""
        sizes = profile.log(prefix)
        sizes.update({key: max(1, round(sizes[key] * scale)) for key in ("users", "tracks", "events")})
        settings = (f"spans=1-{sizes['days']}", CACHE_OFF, *profile.settings(prefix))
        preset = profile.model_preset if prefix == "model" else presets.DEFAULT
        return cls(**sizes, preset=preset, settings=settings)

    @property
    def name(self) -> str:
        digest = hashlib.sha1("\n".join(self.settings).encode()).hexdigest()[:8]
        preset = "" if self.preset == presets.DEFAULT else f"-{self.preset}"
        return f"{self.events}-plays-{self.users}-users-{self.tracks}-tracks{preset}-{digest}"


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One finished run: where its log and artifacts are, what it returned, how long it took."""

    spec: Optional[RunSpec]
    """None for a run given with --pipeline-root (its log and settings are not this command's)."""
    data_dir: Optional[pathlib.Path]
    root: pathlib.Path
    log_path: Optional[pathlib.Path]
    result: Any
    """pipeline.local_runner.RunResult."""
    plays: int
    simulate_s: Optional[float]
    wall_s: Optional[float]
    """Around local_runner.run in its process, including that process's start and imports (None when given)."""
    timeline: Optional[list[ResourceSample]] = None
    """The run's process tree sampled while it ran: RSS and CPU seconds by time (None when given)."""

    def output(self, component: str, key: str) -> str:
        uris = self.result.outputs.get(component, {}).get(key)
        if not uris:
            raise LookupError(f"pipeline run {self.root} has no {component}.{key} output")
        return uris[0]


def given_run(root: pathlib.Path) -> PipelineRun:
    """The newest run under a finished `pipeline.local_runner` root; its plays are those FeedbackLabeler read."""
    from pipeline import local_runner, run_outputs

    result = local_runner.read_result(root)
    uris = result.outputs.get("FeedbackLabeler", {}).get("feedback_stats")
    if not uris:
        raise LookupError(f"--pipeline-root {root}: its newest run has no FeedbackLabeler output")
    stats = run_outputs.read_feedback_stats(uris[0])
    plays = int(stats["valid_plays"]) + sum(int(count) for count in stats["quarantined"].values())
    return PipelineRun(None, None, root, None, result, plays, None, None)


class PipelineRuns:
    """Makes each distinct run once, under `<out>/pipeline-runs/<name>/`; or hands out the one run given."""

    def __init__(self, out: pathlib.Path, say: Callable[[str], None], given: Optional[pathlib.Path] = None) -> None:
        self.out = out
        self.say = say
        self.given = given
        """A finished local_runner root (--pipeline-root): every get() returns its newest run."""
        self._runs: dict[RunSpec, PipelineRun] = {}
        self._given_run: Optional[PipelineRun] = None

    def get(self, spec: RunSpec) -> PipelineRun:
        if self.given is not None:
            if self._given_run is None:
                self._given_run = given_run(self.given)
            self.say(f"pipeline: using the newest run in {self.given} (--pipeline-root; nothing simulated or run)")
            return self._given_run
        if spec not in self._runs:
            self._runs[spec] = self._make(spec)
        else:
            self.say(f"pipeline: reusing the run of {spec.events:,} plays in {self._runs[spec].root}")
        return self._runs[spec]

    def _make(self, spec: RunSpec) -> PipelineRun:
        from listening_logs import simulate, spans
        from pipeline import configs

        pipeline_config = configs.with_overrides(configs.PipelineConfig(), spec.settings)
        folder = self.out / "pipeline-runs" / spec.name
        if folder.exists():
            shutil.rmtree(folder)
        data_dir, root, log_path = folder / "data", folder / "root", folder / "pipeline.log"
        began = time.perf_counter()
        config = simulate.preset_config(spec.preset, users=spec.users, tracks=spec.tracks, events=spec.events,
                                        days=spec.days, seed=spec.seed, file_format=spans.PIPELINE_FORMAT)
        summary = simulate.simulate(config, data_dir, preset=spec.preset)
        simulate_s = time.perf_counter() - began
        self.say(f"pipeline: simulated {summary['events']:,} plays in {simulate_s:.1f} s; running "
                 f"pipeline.local_runner (settings {list(spec.settings)}; log {log_path})")
        with PeakRssSampler(keep_timeline=True) as sampler:
            result, wall = run_in_child(PipelineJob(spec.name, data_dir, root, pipeline_config, log_path))
        self.say(f"pipeline: run finished in {wall:.1f} s -> {root}")
        return PipelineRun(spec, data_dir, root, log_path, result, int(summary["events"]), simulate_s, wall,
                           sampler.timeline)
