"""What the ``closeloop`` command prints: tables for people, JSON and CSV for programs.

JSON: every duration is a number of seconds under a key ending in
``_seconds`` (``median_time_to_close_seconds``), datetimes are ISO 8601,
statuses their values. The report's CSV has one metric per row,
``metric,dimension,value``, numbers without units beyond the metric's name. A
workflow's own statuses are dimensions ``custom_status=waiting``, close reasons
``close_reason=solved``.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from closeloop.calendar import BusinessHours
from closeloop.model import Case, Status
from closeloop.reporting import Durations, Report

__all__ = ["case_rows", "csv_text", "json_text", "report_metrics", "report_rows", "table", "to_json"]


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data; a duration field ``x`` becomes ``x_seconds``."""
    if attrs.has(type(value)):
        data: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if "timedelta" in str(field.type):  # the type decides the key, even when None
                data[f"{field.name}_seconds"] = None if item is None else _seconds(item)
            else:
                data[field.name] = to_json(item)
        return data
    if isinstance(value, BusinessHours):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _seconds(value)
    if isinstance(value, Mapping):
        return {str(to_json(key)): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [to_json(item) for item in value]
    return value


def _seconds(value: timedelta) -> float | int:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def json_text(value: Any) -> str:
    """``value`` as indented JSON (see :func:`to_json`)."""
    return json.dumps(to_json(value), indent=2)


def csv_text(rows: list[list[str]]) -> str:
    """Rows as CSV, ``\\n``-terminated."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def table(rows: list[list[str]]) -> str:
    """A header row and data rows as aligned columns; ``(nothing)`` when there is no data."""
    if len(rows) <= 1:
        return "(nothing)" if not rows else "  ".join(rows[0]) + "\n(nothing)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _span(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours:02}h {minutes:02}m" if days else f"{hours}h {minutes:02}m"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def report_rows(report: Report) -> list[list[str]]:
    """The report as (section, item, value) rows for people: the table format."""
    rows = [["section", "item", "value"]]
    rows += [["status", s.display_name, str(report.status_counts[s])] for s in Status]
    rows.append(["status", "Unassigned", str(report.unassigned)])
    for user, stats in sorted(report.by_assignee.items()):
        counts = ", ".join(f"{s.display_name} {stats.status_counts[s]}" for s in Status)
        rows.append(["assignee", user,
                     f"{counts}; median to close {_span(stats.median_time_to_close)}"])
    for reason, by_status in sorted(report.by_reason.items()):
        rows.append(["reason", reason,
                     ", ".join(f"{s.display_name} {by_status[s]}" for s in Status)])
    rows += [["custom status", name, str(count)]
             for name, count in report.custom_status_counts.items()]
    for name, durations in _durations_kpis(report):
        rows.append(["kpi", name.replace("_", " "), _durations(durations)])
    rows += [["close reason", reason, _durations(took)]
             for reason, took in report.by_close_reason.items()]
    rows += [["time in status", name, _durations(took)]
             for name, took in report.time_in_status.items()]
    rows.append(["kpi", "overdue", str(report.overdue)])
    rows.append(["kpi", "closed within SLA", _share(report.closed_within_sla)])
    rows += [["aging", bucket, str(count)] for bucket, count in report.aging.items()]
    recovery = report.recovery
    rows.append(["recovery", "customers back", str(recovery.customers)])
    rows.append(["recovery", "detractors recovered",
                 f"{recovery.recovered} of {recovery.detractors} ({_share(recovery.rate)})"])
    return rows


def _durations_kpis(report: Report) -> list[tuple[str, Durations]]:
    """The report's overall durations, the business-time ones when it has a calendar."""
    kpis = [("time_to_first_action", report.time_to_first_action),
            ("time_to_close", report.time_to_close)]
    for name, value in (("business_time_to_first_action", report.business_time_to_first_action),
                        ("business_time_to_close", report.business_time_to_close)):
        if value is not None:
            kpis.append((name, value))
    return kpis


def _durations(value: Durations) -> str:
    if not value.count:
        return "no cases"
    return (f"n={value.count} mean {_span(value.mean)}, median {_span(value.median)}, "
            f"p90 {_span(value.p90)}")


def _number(value: float | int | timedelta | None) -> str:
    if value is None:
        return ""
    if isinstance(value, timedelta):
        value = _seconds(value)
    return str(value)


def report_metrics(report: Report) -> list[list[str]]:
    """The report as ``metric,dimension,value`` rows: one number per row, for programs.

    A dimension is ``key=value`` pairs joined by ``;`` (``assignee=alice;status=open``),
    empty for a total; a value is a plain number, empty when undefined (no cases).
    """
    rows = [["metric", "dimension", "value"]]
    rows += [["cases", f"status={s.value}", str(report.status_counts[s])] for s in Status]
    rows.append(["cases_unassigned", "", str(report.unassigned)])
    for user, stats in sorted(report.by_assignee.items()):
        rows += [["cases", f"assignee={user};status={s.value}", str(stats.status_counts[s])]
                 for s in Status]
        rows.append(["median_time_to_close_seconds", f"assignee={user}",
                     _number(stats.median_time_to_close)])
    for reason, by_status in sorted(report.by_reason.items()):
        rows += [["cases", f"reason={reason};status={s.value}", str(by_status[s])] for s in Status]
    rows += [["cases", f"custom_status={name}", str(count)]
             for name, count in report.custom_status_counts.items()]
    spans = [(name, "", durations) for name, durations in _durations_kpis(report)]
    spans += [("time_to_close", f"close_reason={reason}", took)
              for reason, took in report.by_close_reason.items()]
    spans += [("time_in_status", f"custom_status={name}", took)
              for name, took in report.time_in_status.items()]
    for name, dimension, durations in spans:
        rows.append([f"{name}_count", dimension, str(durations.count)])
        rows += [[f"{name}_{stat}_seconds", dimension, _number(getattr(durations, stat))]
                 for stat in ("mean", "median", "p90")]
    rows.append(["overdue", "", str(report.overdue)])
    rows.append(["closed_within_sla_ratio", "", _number(report.closed_within_sla)])
    rows += [["cases_by_age", f"age={bucket}", str(count)] for bucket, count in report.aging.items()]
    recovery = report.recovery
    rows += [
        ["recovery_customers", "", str(recovery.customers)],
        ["recovery_detractors", "", str(recovery.detractors)],
        ["recovery_recovered", "", str(recovery.recovered)],
        ["recovery_rate", "", _number(recovery.rate)],
        ["recovery_mean_score_before", "", _number(recovery.mean_score_before)],
        ["recovery_mean_score_after", "", _number(recovery.mean_score_after)],
    ]
    return rows


def case_rows(cases: list[Case]) -> list[list[str]]:
    """Cases as a header row and one row each: the table and CSV formats."""
    rows = [["case", "customer", "status", "assignee", "priority", "opened", "due",
             "custom status", "close reason"]]
    for case in cases:
        rows.append([
            case.id, case.customer_id, case.status.display_name, case.assignee or "-",
            case.priority.value, case.opened_at.isoformat(timespec="minutes"),
            case.due_at.isoformat(timespec="minutes") if case.due_at else "-",
            case.custom_status, case.close_reason or "-",
        ])
    return rows
