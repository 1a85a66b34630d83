"""Reading DVC experiments (``dvc exp show --json``) and matching them to the rows of a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pipeline.tools.ablations import Setting, Table, apply_overrides


@dataclass
class Run:
    """One row of ``dvc exp show``: the baseline commit or one of its experiments."""

    name: str
    rev: str
    timestamp: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # metrics file -> its content
    is_baseline: bool

    @property
    def dataset_metrics(self) -> dict[str, Any] | None:
        """This run's metrics/<dataset>/metrics.json, if it has one."""
        return self.metrics.get(f"metrics/{self.params['dataset']['name']}/metrics.json") or None


def _run(record: dict[str, Any], baseline: bool) -> Run | None:
    data = record.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
    if record.get("error") or not params:
        return None
    metrics = {path: (entry or {}).get("data") or {} for path, entry in (data.get("metrics") or {}).items()}
    return Run(record.get("name") or str(record.get("rev", ""))[:7], str(record.get("rev", "")),
               data.get("timestamp") or "", params, metrics, baseline)


def collect_runs(exp_show: list[dict[str, Any]]) -> list[tuple[Run, list[Run]]]:
    """(baseline, its experiments) for every commit in ``dvc exp show --json`` output, newest first.

    The workspace row is left out (it is not a recorded result); failed or queued experiments
    (no params or an error) too.
    """
    if not isinstance(exp_show, list):
        raise ValueError("expected the JSON list printed by `dvc exp show --json`")
    groups = []
    for entry in exp_show:
        if entry.get("rev") == "workspace":
            continue
        baseline = _run(entry, baseline=True)
        if baseline is None:
            continue
        experiments = []
        for experiment in entry.get("experiments") or []:
            for record in experiment.get("revs") or []:
                run = _run(record, baseline=False)
                if run is not None:
                    experiments.append(run)
        groups.append((baseline, experiments))
    return groups


@dataclass
class Row:
    setting: Setting
    run: Run | None
    metrics: dict[str, Any] | None  # metrics.json of the run


def fill_table(table: Table, baseline: Run, experiments: Iterable[Run]) -> list[Row]:
    """For each setting, the newest run whose params are exactly baseline + the setting's overrides.

    The baseline itself counts for the setting it already is (its params need no override).
    """
    candidates = sorted([baseline, *experiments], key=lambda run: run.timestamp, reverse=True)
    rows = []
    for setting in table.settings:
        try:
            wanted = apply_overrides(baseline.params, setting.overrides)
        except KeyError:
            rows.append(Row(setting, None, None))
            continue
        run = next((run for run in candidates if run.params == wanted), None)
        rows.append(Row(setting, run, run.dataset_metrics if run else None))
    return rows
