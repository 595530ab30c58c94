"""The key bindings of ``core.bindings`` as Textual ``Binding``s.

Keys are kept apart from what they do (as in Harlequin): widgets build their ``BINDINGS`` from
the specs, every binding has an id like ``jobs.kill``, and ``[keys]`` in config.toml maps ids to
other keys (``"jobs.kill" = "ctrl+k"``; several keys are comma separated). The config checks the
overrides (``core.bindings.keys_problem``); the app applies them with Textual's keymap support
(``App.set_keymap``), so a remapped key works in every widget, in the footer and in the command
palette.
"""

from __future__ import annotations

from textual.binding import Binding

from evopilot.core.bindings import (  # noqa: F401 - the tables, for the widgets
    APP, ARCHIVE, COMPARE, CONFIRM, DIALOG, GROUPS, HEATMAP, HELP, HOSTS, JOB_FIND, JOB_TABLE, JOBS, LOG,
    LOG_SEARCH,
    PROJECTS, SCOPES, TASK_BOARD, TASK_DIFF, TASKS, Spec, all_specs, by_id,
)

_GROUPS = {name: Binding.Group(name, compact=compact) for name, compact in GROUPS.items()}


def binding(spec: Spec) -> Binding:
    return Binding(spec.key, spec.action, spec.description, show=spec.show, id=spec.id,
                   priority=spec.priority, group=_GROUPS[spec.group] if spec.group else None)


def bindings(*specs: list[Spec]) -> list[Binding]:
    return [binding(s) for group in specs for s in group]


def rank(binding_id: str | None) -> int:
    """The key bar's place for a binding (see ``Spec.rank``)."""
    spec = by_id().get(binding_id or "")
    return spec.rank if spec else 3
