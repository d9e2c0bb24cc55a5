"""A sweep that runs every planned trial: a grid's points, or one experiment's models, gaps and
seeds (forecast.plan). One of the runner's two strategies; an Optuna search is the other
(:class:`forecast.search.OptunaSearch`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from forecast import plots
from forecast.config import ExperimentConfig
from forecast.evaluation import max_solved_gap, seed_intervals
from forecast.execution import TrialContext, Work, timed_trial
from forecast.progress import solved_line
from forecast.results import Results
from forecast.tracker import SweepRecord, TrialReport
from forecast.trial import Trial


@dataclass(frozen=True)
class GridSweep:
    """Every trial of the plan, each once."""

    trials: list[Trial]

    def params(self) -> dict[str, Any]:
        """What the sweep's record shows of it besides the config."""
        return {
            "gaps": sorted({trial.gap for trial in self.trials}),
            "sweep_points": len({trial.point for trial in self.trials}),
        }

    def begin(
        self,
        name: str,
        sweep: SweepRecord,
        context: TrialContext,
        done: dict[str, TrialReport],
        where: str,
        log: Callable[[str], None],
    ) -> Work:
        """The trials a resumed sweep has not finished, the longest first."""
        pending = [trial for trial in self.trials if trial.digest not in done]
        resuming = f" (resuming run {sweep.id}: {len(done)} finished)" if sweep.resumed else ""
        log(f"{name}: {len(self.trials)} trials on {where}{resuming}")
        # In parallel, the longest trials first, so that no long one starts last while the
        # other workers sit idle (longest-processing-time-first scheduling).
        in_order = sorted(pending, key=lambda trial: trial.work, reverse=True)
        return Work(pending, in_order, functools.partial(timed_trial, context=context), pending)

    def reports(
        self, done: dict[str, TrialReport], collected: dict[str, TrialReport]
    ) -> list[TrialReport]:
        """Every trial's report in plan order, whether it ran now or before an interruption."""
        reports = {**done, **collected}
        return [reports[trial.digest] for trial in self.trials]

    def summary(
        self,
        name: str,
        sweep: SweepRecord,
        config: ExperimentConfig,
        found: Results,
        reports: list[TrialReport],
        tables: dict[str, Any],
        log: Callable[[str], None],
    ) -> tuple[dict[str, float], dict[str, Figure]]:
        """The sweep's metrics and figures: a task's largest solved gap per model, ratio against
        gap and effective memory; every model's gradient flow at the largest gap and the first
        seed."""
        metrics, figures = {}, {}
        trials_table = found.trials
        if config.task is not None:
            ratio = found.kind.ratio
            solved = max_solved_gap(trials_table, config.solved_ratio, ratio)
            log(solved_line(solved))
            metrics = {f"max_solved_gap.{model}": gap for model, gap in solved.items()}
            intervals = seed_intervals(trials_table, ratio)
            loss = "MSE" if ratio == "mse_ratio" else "cross-entropy"
            figures["ratio_vs_gap.png"] = plots.ratio_vs_gap(
                intervals, config.solved_ratio, name, loss
            )
            memory = trials_table.get("effective_memory")
            if memory is not None and memory.notna().any():
                figures["effective_memory.png"] = plots.effective_memory(
                    trials_table, f"{name}: how far back each trained model looks"
                )
        flow_gap, flow_seed = max(trial.gap for trial in self.trials), config.seeds[0]
        flows = {
            f"{trial.label} {when}": np.asarray(curve)
            for trial, report in zip(self.trials, reports, strict=True)
            if trial.gap == flow_gap and trial.seed == flow_seed
            for when, curve in report.flow.items()
        }
        if flows:
            title = f"Gradient flow at gap {flow_gap}, seed {flow_seed}"
            figures["gradient_flow.png"] = plots.gradient_flow(flows, title)
        return metrics, figures
