"""Markdown tables of benchmark figures: per model and metric, jaxhub against TF and tf2jax.

Ratios are always "the other framework's cost over jaxhub's" (time, memory) or "jaxhub's
rate over the other's" (throughput), so a ratio of at least 1.0 means jaxhub is at least
as good.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

#: The table's framework columns, in order, with their headings.
COLUMNS = {"jaxhub": "jaxhub", "tf": "TF", "tf2jax": "tf2jax", "native": "native Flax"}
#: The ratio columns: jaxhub against each other framework.
RATIOS = {"tf": "TF / jaxhub", "tf2jax": "tf2jax / jaxhub", "native": "native / jaxhub"}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One row kind: where its figure is in a framework's results and how it reads.

    Attributes:
      label: the row's heading, with its unit.
      kind: which measurement holds it: ``"run"`` (which starts cold) or ``"warm"``.
      key: the figure's key in that measurement's results.
      fmt: formats the figure.
      higher_is_better: throughput, as opposed to times and memory.
    """

    label: str
    kind: str
    key: str
    fmt: Callable[[float], str]
    higher_is_better: bool = False


def _sig(value: float) -> str:
    """Three significant digits, without an exponent."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


METRICS = (
    Metric("latency, batch 1 (ms)", "run", "latency_ms", _sig),
    Metric("throughput, batch 32 (examples/s)", "run", "throughput", _sig, True),
    Metric("fine-tune step, batch 32 (ms)", "run", "finetune_ms", _sig),
    Metric("cold start (s)", "run", "start_s", _sig),
    Metric("warm start (s)", "warm", "start_s", _sig),
    Metric("peak memory, start to first output (MiB)", "run", "rss_start_mib", _sig),
    Metric("peak memory, whole run incl. fine-tune (MiB)", "run", "rss_finetune_mib", _sig),
)

Results = dict[str, dict[str, dict[str, dict[str, Any]]]]
"""``results[model][framework][kind]``: one measurement's figures (or ``"error"``)."""


def figure(results: Results, model: str, framework: str, metric: Metric) -> float | str:
    """The figure, or the text of the error that stands in its place."""
    measured = results.get(model, {}).get(framework, {}).get(metric.kind)
    if measured is None:
        return "not measured"
    if metric.key in measured:
        return measured[metric.key]
    return measured.get("error", "not measured")


def ratio(results: Results, model: str, other: str, metric: Metric) -> float | None:
    """jaxhub against ``other`` on ``metric`` (>= 1.0: jaxhub as good), or None."""
    ours = figure(results, model, "jaxhub", metric)
    theirs = figure(results, model, other, metric)
    if not isinstance(ours, float | int) or not isinstance(theirs, float | int) or not (
            ours > 0 and theirs > 0):
        return None
    return ours / theirs if metric.higher_is_better else theirs / ours


def details_table(results: Results) -> str:
    """Every model and metric: figures of each framework and jaxhub's ratios."""
    head = ["model", "metric", *COLUMNS.values(), *RATIOS.values()]
    rows = []
    for model in results:
        for metric in METRICS:
            cells = [model, metric.label]
            for framework in COLUMNS:
                value = figure(results, model, framework, metric)
                cells.append(metric.fmt(value) if isinstance(value, float | int)
                             else _text(value))
            for other in RATIOS:
                cells.append(_ratio_text(ratio(results, model, other, metric)))
            rows.append(cells)
    return _markdown(head, rows)


def summary_table(results: Results, other: str = "tf") -> str:
    """One row per model that ``other`` ran: jaxhub's ratio against it on every metric."""
    head = ["model", *(m.label.split(" (")[0] for m in METRICS)]
    rows = [[model, *(_ratio_text(ratio(results, model, other, m)) for m in METRICS)]
            for model in results if other in results[model]]
    return _markdown(head, rows)


def start_table(results: Results) -> str:
    """Where start-up goes in jaxhub, with and without JAX's persistent compilation cache.

    The first call's time (compiling, or reading the compiled code from the cache, then
    running) is shown apart from the total, which loading dominates.
    """
    parts = {"run": "cold (empty cache)", "nocache": "2nd process, no cache",
             "warm": "2nd process, cache"}
    head = ["model", "converting + loading (s)"]
    for label in parts.values():
        head += [f"{label}: load (s)", f"{label}: first call (s)", f"{label}: total (s)"]
    head.append("first call saved by the cache")
    rows = []
    for model, frameworks in results.items():
        measured = frameworks.get("jaxhub", {})
        prepared = measured.get("prepare", {})
        cells = [model, _cell(prepared, "load_s")]
        for kind in parts:
            cells += [_cell(measured.get(kind, {}), key)
                      for key in ("load_s", "first_call_s", "start_s")]
        without = measured.get("nocache", {}).get("first_call_s")
        cached = measured.get("warm", {}).get("first_call_s")
        cells.append(f"{(without - cached) / without:.0%}" if without and cached else "–")
        rows.append(cells)
    return _markdown(head, rows)


def _cell(measured: dict[str, Any], key: str) -> str:
    if key in measured:
        return _sig(measured[key])
    return _text(measured.get("error", "not measured"))


def _ratio_text(value: float | None) -> str:
    if value is None:
        return "–"
    return f"**{value:.2f}**" if value >= 1.0 else f"{value:.2f}"


def _text(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
