"""``ModuleExporter``: export a module as training goes, keeping the latest or best.

The counterpart of TF Hub's ``LatestModuleExporter``. Each export is a complete module
directory ``<directory>/<step>`` (written atomically by :meth:`jaxhub.Module.export`);
``<directory>/exports.json`` records the steps kept and their metrics, and is replaced
atomically after each export, so a reader (or a restarted run) sees only whole modules.

A writer killed mid-export leaves its hidden temporary directory (``.<step>.<random>.tmp``)
behind. Every exporter holds a shared lock on ``<directory>/.exporter.lock`` while it
writes, and the kernel drops the lock of a process that dies; an export first tries the
lock exclusively, and only when no writer holds it removes the temporaries left over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping

import jax

from jaxhub._src.module import Module

RECORD_FILE = "exports.json"
LOCK_FILE = ".exporter.lock"
Metrics = Mapping[str, float]
_STEP_DIR = re.compile(r"^\d+$")
# What a killed writer leaves: Module.export's ``.<step>.<random>.tmp`` (``.<step>.export.tmp``
# in a multi-process run) and the record's ``.exports.json.<random>.tmp``.
_LEFTOVER = re.compile(r"^\.(\d+|" + re.escape(RECORD_FILE) + r")\..+\.tmp$")


@dataclasses.dataclass(frozen=True)
class Export:
    """One exported module.

    Attributes:
      step: the training step it was exported at.
      path: its directory.
      metrics: the metrics given with it.
    """

    step: int
    path: pathlib.Path
    metrics: Mapping[str, float]


class ModuleExporter:
    """Exports a module's current params every ``every_n_steps`` steps and at the end.

    Call :meth:`maybe_export` after each training step and :meth:`finish` after the last.

    Keeps the ``keep`` most recent exports, or with ``best_metric`` the ``keep`` best by
    that metric (and always the most recent one, to resume from). Exports already in
    ``directory`` (from an earlier run) count as kept ones.

    Args:
      directory: where the exports go, one subdirectory per step.
      module: the module whose functions are exported; the params are given per export.
      every_n_steps: export when ``step % every_n_steps == 0``.
      keep: how many exports to keep.
      best_metric: the metric that ranks exports (given to :meth:`maybe_export`).
      mode: ``"min"`` or ``"max"``: which values of ``best_metric`` are better.

    Raises:
      ValueError: bad ``every_n_steps``, ``keep`` or ``mode``.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.zeros(4)},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))})
      >>> x, y = jnp.ones((8, 4)), jnp.full(8, 2.0)
      >>> loss = lambda params: jnp.mean((module.apply(params, x) - y) ** 2)
      >>> evaluate = lambda params: float(loss(params))
      >>> exporter = ModuleExporter("exports", module, every_n_steps=10, keep=2,
      ...                           best_metric="val_loss")
      >>> params, steps = module.params, 30
      >>> for step in range(1, steps + 1):
      ...     grads = jax.grad(loss)(params)
      ...     params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
      ...     _ = exporter.maybe_export(step, params,
      ...                               metrics=lambda: {"val_loss": evaluate(params)})
      >>> _ = exporter.finish(steps, params, {"val_loss": evaluate(params)})   # the end
      >>> best = jaxhub.load(exporter.best.path)
      >>> exporter.best.step, round(evaluate(best.params), 3) == round(evaluate(params), 3)
      (30, True)
    """

    def __init__(self, directory: str | os.PathLike, module: Module, *, every_n_steps: int,
                 keep: int = 5, best_metric: str | None = None, mode: str = "min"):
        if every_n_steps < 1 or keep < 1:
            raise ValueError(f"every_n_steps and keep must be positive, got "
                             f"{every_n_steps} and {keep}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self._directory = pathlib.Path(directory).absolute()
        self._module = module
        self._every = every_n_steps
        self._keep = keep
        self._metric = best_metric
        self._sign = 1.0 if mode == "min" else -1.0
        self._exports = _read_record(self._directory)

    @property
    def exports(self) -> tuple[Export, ...]:
        """The exports kept, oldest first."""
        return tuple(self._exports)

    @property
    def latest(self) -> Export | None:
        """The most recent export, if any."""
        return self._exports[-1] if self._exports else None

    @property
    def best(self) -> Export | None:
        """The best export by ``best_metric`` (the latest without one), if any."""
        ranked = self._ranked()
        return ranked[0] if ranked else None

    def should_export(self, step: int) -> bool:
        """Whether :meth:`maybe_export` exports at ``step``."""
        return step % self._every == 0 and all(e.step != step for e in self._exports)

    def maybe_export(self, step: int, params: Mapping[str, Any],
                     metrics: Metrics | Callable[[], Metrics] | None = None
                     ) -> Export | None:
        """Exports ``params`` if ``step`` is an export step.

        Args:
          step: the current training step.
          params: the module's params tree (see :meth:`jaxhub.nnx.HubLayer.module_params`).
          metrics: a dict of floats, or a function returning one: called only when
            exporting (an evaluation can be costly).

        Returns:
          The new export, or None.
        """
        if not self.should_export(step):
            return None
        return self.export(step, params, metrics() if callable(metrics) else metrics)

    def export(self, step: int, params: Mapping[str, Any],
               metrics: Metrics | None = None) -> Export:
        """Exports ``params`` now (at the end of training, say), then prunes old exports.

        Raises:
          ValueError: ``best_metric`` is set but missing from ``metrics``.
        """
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        if self._metric is not None and self._metric not in metrics:
            raise ValueError(f"export at step {step}: metrics {sorted(metrics)} lack the "
                             f"best_metric {self._metric!r}")
        path = self._directory / str(step)
        self._directory.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            remove_abandoned(self._directory)
        with _writing(self._directory):
            if path.exists():  # the same step again (a restarted run): this export replaces it
                shutil.rmtree(path)
            self._module.export(path, params)
            export = Export(step, path, metrics)
            self._exports = sorted([e for e in self._exports if e.step != step] + [export],
                                   key=lambda e: e.step)
            self._prune()
        return export

    def finish(self, step: int, params: Mapping[str, Any],
               metrics: Metrics | Callable[[], Metrics] | None = None) -> Export:
        """Exports at the end of training, unless ``step`` was exported already.

        Returns:
          The export of ``step``.
        """
        for export in self._exports:
            if export.step == step:
                return export
        return self.export(step, params, metrics() if callable(metrics) else metrics)

    def _ranked(self) -> list[Export]:
        """Exports from best to worst (the most recent first, when there is no metric)."""
        if self._metric is None:
            return self._exports[::-1]
        def badness(e: Export) -> tuple[float, int]:
            value = e.metrics.get(self._metric, math.nan)
            return (math.inf if math.isnan(value) else self._sign * value, -e.step)
        return sorted(self._exports, key=badness)

    def _prune(self) -> None:
        kept = self._ranked()[:self._keep]
        if self._exports[-1] not in kept:
            kept.append(self._exports[-1])
        self._exports = sorted(kept, key=lambda e: e.step)
        # Record first, then delete: a crash in between leaves extra directories, never a
        # record naming a missing one.
        _write_record(self._directory, self._exports)
        names = {str(e.step) for e in self._exports}
        for child in self._directory.iterdir():
            if _STEP_DIR.match(child.name) and child.name not in names and child.is_dir():
                shutil.rmtree(child)


@contextlib.contextmanager
def _lock(directory: pathlib.Path, how: int) -> Iterator[bool]:
    """Holds ``flock(how)`` on the directory's lock file; yields False if it was refused
    (held by another process, with ``fcntl.LOCK_NB``) or the filesystem has no locks:
    then nothing may be removed, and writing goes on unlocked."""
    with open(directory / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, how)
        except OSError:  # BlockingIOError: held; ENOLCK and the like: no locks here
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _writing(directory: pathlib.Path) -> Iterator[None]:
    """Marks this process as a live writer of ``directory`` (a shared lock)."""
    with _lock(directory, fcntl.LOCK_SH):
        yield


def remove_abandoned(directory: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporaries that killed writers left in an export directory.

    Nothing is removed while any writer of ``directory`` is alive: the exclusive lock is
    refused as long as one holds its shared lock, and a new writer waits for it before
    making a temporary directory. Only writers that take the lock (every
    :class:`ModuleExporter`) are seen; keep other writers out of the directory.

    Returns:
      What was removed (nothing when a writer is alive).
    """
    directory = pathlib.Path(directory)
    with _lock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB) as alone:
        if not alone:
            return []
        removed = sorted(p for p in directory.iterdir() if _LEFTOVER.match(p.name))
        for leftover in removed:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return removed


def _read_record(directory: pathlib.Path) -> list[Export]:
    record = directory / RECORD_FILE
    if not record.is_file():
        return []
    entries = json.loads(record.read_text())["exports"]
    exports = [Export(e["step"], directory / str(e["step"]), e["metrics"]) for e in entries]
    return [e for e in exports if e.path.is_dir()]


def _write_record(directory: pathlib.Path, exports: list[Export]) -> None:
    data = {"exports": [{"step": e.step, "metrics": dict(e.metrics)} for e in exports]}
    fd, tmp = tempfile.mkstemp(prefix=f".{RECORD_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, directory / RECORD_FILE)
    except BaseException:
        os.unlink(tmp)
        raise
