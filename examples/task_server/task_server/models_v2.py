"""Version 2 of the task server's models: a tags table, tasks.priority, a float estimate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of version 2, separate from version 1's."""


class Project(Base):
    """A project groups tasks."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime, server_default=func.current_timestamp()
    )


class Task(Base):
    """A task of a project."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default="pending", index=True
    )
    # INTEGER -> REAL is another SQLite storage class, so this migrates by a table rebuild.
    estimate: Mapped[float | None] = mapped_column(Float, nullable=True)
    # NOT NULL needs a server default to be added to a table that already has rows.
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3", index=True)


class Tag(Base):
    """A label on a task."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    label: Mapped[str] = mapped_column(String(50), nullable=False)
