"""Model module sources shared by the tests: a header and table snippets to combine."""

HEADER = """
import sqlalchemy as sa
md = sa.MetaData()
"""

TASKS = """
sa.Table(
    "tasks", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(100)),
)
"""

PROJECTS = """
sa.Table(
    "projects", md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)
"""


def models(*tables: str) -> str:
    """A models module defining md with the given table snippets."""
    return HEADER + "".join(tables)
