"""The inverse of each change, for rollback by SQL: the changes that undo it, built from
Alembic's own reverse of the operation. None where only the backup can undo it (data removed,
an enum value removed, a generated column redefined)."""

from __future__ import annotations

import dataclasses

from alembic.operations import ops

from ..model.changes import KINDS, Change, ChangeKind

_OPPOSITE = {
    ChangeKind.ADD_TABLE: ChangeKind.DROP_TABLE,
    ChangeKind.ADD_COLUMN: ChangeKind.DROP_COLUMN,
    ChangeKind.ADD_INDEX: ChangeKind.DROP_INDEX,
    ChangeKind.DROP_INDEX: ChangeKind.ADD_INDEX,
    ChangeKind.ADD_UNIQUE: ChangeKind.DROP_UNIQUE,
    ChangeKind.DROP_UNIQUE: ChangeKind.ADD_UNIQUE,
    ChangeKind.ADD_FK: ChangeKind.DROP_FK,
    ChangeKind.DROP_FK: ChangeKind.ADD_FK,
    ChangeKind.ADD_CHECK: ChangeKind.DROP_CHECK,
    ChangeKind.DROP_CHECK: ChangeKind.ADD_CHECK,
    ChangeKind.SET_NOT_NULL: ChangeKind.DROP_NOT_NULL,
    ChangeKind.DROP_NOT_NULL: ChangeKind.SET_NOT_NULL,
    ChangeKind.ALTER_TYPE: ChangeKind.ALTER_TYPE,
    ChangeKind.ALTER_DEFAULT: ChangeKind.ALTER_DEFAULT,
    ChangeKind.ALTER_COMMENT: ChangeKind.ALTER_COMMENT,
    ChangeKind.ALTER_TABLE_COMMENT: ChangeKind.ALTER_TABLE_COMMENT,
}


def inverse(change: Change) -> list[Change] | None:
    """The changes that undo change, in the order to apply them; None when SQL cannot."""
    if change.kind is ChangeKind.RENAME_TABLE:  # a server renames it back
        back = f"rename table {change.table} back to {change.name}"
        return [
            dataclasses.replace(change, table=str(change.name), name=change.table, description=back)
        ]
    if change.destructive or not KINDS[change.kind].sql_reversible:
        return None
    if change.kind is ChangeKind.RENAME_COLUMN:
        back = f"rename column {change.table}.{change.column} back to {change.name}"
        return [
            dataclasses.replace(change, column=change.name, name=change.column, description=back)
        ]
    if change.kind is ChangeKind.RETIRE_COLUMN:
        return [_not_null_again(change)]
    if change.kind is ChangeKind.ALTER_CHECK:
        op = change.op
        old = ops.CreateCheckConstraintOp(
            op.constraint_name, op.table_name, change.values[0], schema=op.schema
        )
        back = f"put check {change.name} on {change.table} back to ({change.values[0]})"
        return [dataclasses.replace(change, op=old, values=(str(op.condition),), description=back)]
    if change.kind is ChangeKind.ADD_ENUM_VALUE and isinstance(change.op, dict):
        shown = ", ".join(repr(v) for v in change.values)
        return [
            dataclasses.replace(
                change,
                kind=ChangeKind.REMOVE_ENUM_VALUES,
                description=f"remove {shown} from enum type {change.name} again",
            )
        ]
    if change.kind is ChangeKind.ALTER_PRIMARY_KEY:
        key = ops.CreatePrimaryKeyOp(change.name, change.table, list(change.columns))
        back = f"put the primary key of {change.table} back on ({', '.join(change.columns)})"
        return [
            dataclasses.replace(change, op=key, columns=tuple(change.op.columns), description=back)
        ]
    opposite = _OPPOSITE.get(change.kind)
    if opposite is None or change.op is None:
        return None
    original = getattr(change.op, "_reverse", None)
    try:
        # A dropped index comes back as reflected, its dialect options (a partial WHERE) too.
        is_index = change.kind is ChangeKind.DROP_INDEX and isinstance(original, ops.CreateIndexOp)
        reversed_op = original if is_index else change.op.reverse()
    except (ValueError, AttributeError, NotImplementedError):
        return None  # a drop whose original Alembic did not reflect
    return [
        Change(
            opposite,
            change.table,
            f"undo: {change.description}",
            column=change.column,
            name=change.name,
            op=reversed_op,
        )
    ]


def _not_null_again(change: Change) -> Change:
    """A retired column was made nullable (it was NOT NULL): its inverse makes it so again."""
    column = change.op.to_column()
    op = ops.AlterColumnOp(
        change.table,
        column.name,
        modify_nullable=False,
        existing_type=column.type,
        existing_nullable=True,
        existing_server_default=column.server_default,
        existing_comment=column.comment,
    )
    return Change(
        ChangeKind.SET_NOT_NULL,
        change.table,
        f"set NOT NULL on {change.table}.{column.name} again",
        column=column.name,
        op=op,
    )
