"""The life of an alert: pending, firing, resolved, with hysteresis.

A condition that starts to hold makes a *pending* alert; one that held for
its rule's `for` duration *fires* (notified once). A firing alert whose
condition stops holding *resolves* only after it stayed false for
`resolve_after` (notified once), so a flapping pair does not notify on every
round; if the condition returns in between, the alert simply keeps firing. A
pending alert whose condition stops holding is dropped without a word.

Conditions about a container that just started, stopped, restarted, paused
or unpaused are ignored for the grace period: a lifecycle is not a network
fault. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from netwatch.alerts.rules import AlertKey, Condition
from netwatch.config import AlertSettings


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    rule: str
    labels: Mapping[str, str]
    summary: str
    value: float | None
    state: AlertState
    active_since: float
    fired_at: float | None = None
    clear_since: float | None = None
    resolved_at: float | None = None

    @property
    def key(self) -> AlertKey:
        return tuple(sorted(self.labels.items()))


@dataclass(frozen=True)
class Transition:
    """An alert that fired or resolved: what notifiers hear about."""

    alert: Alert

    @property
    def kind(self) -> str:
        return "resolved" if self.alert.state is AlertState.RESOLVED else "fired"


class AlertBook:
    """Every pending and firing alert; `update` moves them along."""

    def __init__(self, settings: AlertSettings) -> None:
        self._settings = settings
        self._alerts: dict[AlertKey, Alert] = {}

    def active(self) -> list[Alert]:
        return sorted(self._alerts.values(), key=lambda a: (a.state, a.active_since))

    def with_settings(self, settings: AlertSettings) -> AlertBook:
        """A book under new rules that keeps every pending and firing alert,
        so that a reload neither forgets nor notifies again what fired."""
        book = AlertBook(settings)
        book._alerts = dict(self._alerts)
        return book

    def update(
        self,
        conditions: Mapping[AlertKey, Condition],
        now: float,
        in_grace: Callable[[Condition], bool] = lambda _: False,
    ) -> list[Transition]:
        transitions: list[Transition] = []
        for key, condition in conditions.items():
            alert = self._alerts.get(key)
            if in_grace(condition) and (
                alert is None or alert.state is AlertState.PENDING
            ):
                self._alerts.pop(key, None)
                continue
            if alert is None:
                alert = Alert(
                    rule=condition.rule,
                    labels=dict(condition.labels),
                    summary=condition.summary,
                    value=condition.value,
                    state=AlertState.PENDING,
                    active_since=now,
                )
            alert = _refresh(alert, condition)
            wait = getattr(self._settings.rules, condition.rule).for_
            if alert.state is AlertState.PENDING and now - alert.active_since >= wait:
                alert = replace(alert, state=AlertState.FIRING, fired_at=now)
                transitions.append(Transition(alert))
            self._alerts[key] = alert

        for key in [k for k in self._alerts if k not in conditions]:
            alert = self._alerts[key]
            if alert.state is AlertState.PENDING:
                del self._alerts[key]
                continue
            clear_since = alert.clear_since if alert.clear_since is not None else now
            if now - clear_since >= self._settings.resolve_after:
                del self._alerts[key]
                resolved = replace(
                    alert,
                    state=AlertState.RESOLVED,
                    resolved_at=now,
                    summary=f"resolved; while firing: {alert.summary}",
                )
                transitions.append(Transition(resolved))
            else:
                self._alerts[key] = replace(alert, clear_since=clear_since)
        return transitions


def _refresh(alert: Alert, condition: Condition) -> Alert:
    """The alert with the condition's latest words and value; not clearing."""
    return replace(
        alert, summary=condition.summary, value=condition.value, clear_since=None
    )
