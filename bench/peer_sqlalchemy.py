"""The SQLAlchemy side of :mod:`bench.peers`: a SQLAlchemy 2 ORM model with a version column.

The mapper's ``version_id_col`` makes every flush ``UPDATE … WHERE id = ? AND
version = ?`` and raises when another writer got there first, as closeloop does.
Each :class:`SQLAlchemySide` has its own engine on its own fresh file (WAL,
``synchronous=NORMAL``); every unit of work opens a new session, as a web request
would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.peers import CASES, COMMENT, LISTED, seed, target_for

__all__ = ["SQLAlchemySide"]

#: The workflow's transitions, as an app without a state-machine library would write them.
ALLOWED = {("open", "progress"), ("progress", "open"), ("open", "closed"), ("progress", "closed"),
           ("closed", "open")}


class Base(DeclarativeBase):
    """The declarative base of the two tables."""


class Case(Base):
    """closeloop's case fields as a mapped class."""

    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    assignee: Mapped[str | None] = mapped_column(String(200))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    response_ids: Mapped[list[str]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_by: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
    __table_args__ = (Index("cases_by_assignee", "assignee", "opened_at", "id"),)


class Event(Base):
    """One history row per change."""

    __tablename__ = "events"
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class SQLAlchemySide:
    """The 500 cases in a fresh SQLite file through the SQLAlchemy ORM."""

    def __init__(self, path: Path) -> None:
        self.engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _pragmas)
        Base.metadata.create_all(self.engine)
        with Session(self.engine) as session, session.begin():
            session.add_all(Case(status="open", version=1, **row) for row in seed())
            session.add_all(Event(case_id=row["id"], seq=1, kind="opened", actor=row["opened_by"],
                                  at=row["opened_at"], data={"status": "open"}) for row in seed())
        self.ids = [row["id"] for row in seed()]

    def change_statuses(self, changes: int) -> None:
        ids = self.ids
        for change in range(changes):
            target = target_for(change).value
            with Session(self.engine) as session, session.begin():
                case = session.get(Case, ids[change % CASES])
                if case is None or (case.status, target) not in ALLOWED:
                    raise AssertionError("SQLAlchemy side lost track of a case")
                source, case.status = case.status, target
                case.updated_at = now = datetime.now(UTC)
                session.add(Event(case_id=case.id, seq=case.version + 1, kind="status_changed",
                                  actor="bench", at=now, comment=COMMENT,
                                  data={"from_status": source, "to_status": target}))

    def list_cases(self, times: int) -> None:
        statement = (select(Case).where(Case.assignee == LISTED)
                     .order_by(Case.opened_at, Case.id).limit(100))
        for _ in range(times):
            with Session(self.engine) as session:
                if len(session.scalars(statement).all()) != 100:
                    raise AssertionError("SQLAlchemy listed the wrong cases")

    def count(self, times: int) -> None:
        statement = select(Case.status, func.count()).group_by(Case.status)
        for _ in range(times):
            with Session(self.engine) as session:
                counts = {status: n for status, n in session.execute(statement).all()}
            if sum(counts.values()) != CASES:
                raise AssertionError("SQLAlchemy counted wrong")

    def close(self) -> None:
        self.engine.dispose()


def _pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
