"""A hub with OAuth and an issue tracker over seven releases (2017-2023), in the classic style:
`Column()` attributes on classes of a `registry().generate_base()` base and plain Table() objects,
no naming convention (the database names the constraints).

What changes, release by release (the comments in _models say the same next to each column):

v1 2017  users (auth_state Text), api_tokens, oauth_clients, oauth_codes, oauth_code_scopes
         (child of oauth_codes), groups, user_group_map (Table, m2m), projects, issues,
         issue_comments
v2 2018  issues.priority NOT NULL server_default '3'; new labels (two-column UNIQUE),
         issue_labels (Table, m2m); an index on users.last_activity (old table, rows)
v3 2019  users.auth_state removed; projects.name String(50) -> String(200); issues.number
         Integer -> BigInteger; api_tokens.expires_at
v4 2020  users.user_info Text (the type of the removed auth_state); api_tokens.client_id, a
         foreign key to oauth_clients on an old table; issues.estimate Numeric(12, 2)
v5 2021  issues.status server default 'open' -> 'new'; oauth_codes and oauth_code_scopes
         removed together; groups.properties JSON; new
         milestones (server_default false) and issues.milestone_id, a foreign key to it
v6 2022  issues.priority server default 3 -> 2; issues.status String(50) -> String(20) (the
         data fits); users.is_service NOT NULL with
         only default=False; issues.external_id Uuid with an index; UNIQUE (project_id,
         number) on issues; api_tokens.note renamed to description (info renamed_from)
v7 2023  new issue_links (Enum, two foreign keys to issues); issues.resolution, an Enum column
         on an old table; api_tokens.scopes JSON; issue_comments.edited_at with an index;
         labels.color removed; issues.id Integer -> BigInteger together with the foreign key
         columns that refer to it (issue_comments.issue_id, issue_labels.issue_id)
"""

import functools
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import registry

from . import History, Seeder, Version, utcnow


def _new_cookie() -> str:
    return uuid.uuid4().hex


def _models(v: int) -> MetaData:
    """The models of release v (1-7)."""
    reg = registry()
    Base: Any = reg.generate_base()
    md = reg.metadata

    class User(Base):
        __tablename__ = "users"
        id = Column(Integer, primary_key=True, autoincrement=True)
        name = Column(String(255), unique=True, nullable=False)
        admin = Column(Boolean, default=False)
        created = Column(DateTime, default=utcnow)
        last_activity = Column(DateTime, nullable=True, index=v >= 2)
        cookie_id = Column(String(255), default=_new_cookie, nullable=False, unique=True)
        if v < 3:  # v3: removed (encrypted state moved elsewhere)
            auth_state = Column(Text)
        if v >= 4:  # the type of the removed auth_state
            user_info = Column(Text)
        if v >= 6:
            # NOT NULL with only a Python default, on a table with rows
            is_service = Column(Boolean, default=False, nullable=False)

    class APIToken(Base):
        __tablename__ = "api_tokens"
        id = Column(Integer, primary_key=True)
        hashed = Column(String(255), unique=True)
        prefix = Column(String(16), index=True)
        user_id = Column(Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
        created = Column(DateTime, default=utcnow)
        last_activity = Column(DateTime)
        if v < 6:
            note = Column(String(1023))
        else:  # v6: renamed, the data moves with it
            description = Column(String(1023), info={"renamed_from": "note"})
        if v >= 3:
            expires_at = Column(DateTime)
        if v >= 4:
            # a foreign key column on an old table
            client_id = Column(Integer, ForeignKey("oauth_clients.id", ondelete="CASCADE"))
        if v >= 7:
            scopes = Column(JSON)

    class OAuthClient(Base):
        __tablename__ = "oauth_clients"
        id = Column(Integer, primary_key=True, autoincrement=True)
        identifier = Column(String(255), unique=True)
        secret = Column(String(255))
        redirect_uri = Column(String(1023))

    if v < 5:  # v5: oauth_codes and its child oauth_code_scopes removed together

        class OAuthCode(Base):
            __tablename__ = "oauth_codes"
            id = Column(Integer, primary_key=True, autoincrement=True)
            client_id = Column(
                String(255), ForeignKey("oauth_clients.identifier", ondelete="CASCADE")
            )
            code = Column(String(36))
            expires_at = Column(Integer)
            redirect_uri = Column(String(1023))
            user_id = Column(Integer, ForeignKey("users.id", ondelete="CASCADE"))

        Table(
            "oauth_code_scopes",
            md,
            Column(
                "code_id",
                Integer,
                ForeignKey("oauth_codes.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            Column("scope", String(100), primary_key=True),
        )

    class Group(Base):
        __tablename__ = "groups"
        id = Column(Integer, primary_key=True, autoincrement=True)
        name = Column(String(255), unique=True)
        if v >= 5:
            properties = Column(JSON)

    Table(
        "user_group_map",
        md,
        Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    )

    class Project(Base):
        __tablename__ = "projects"
        id = Column(Integer, primary_key=True)
        key = Column(String(10), unique=True, nullable=False)
        # v3: widened from String(50)
        name = Column(String(200 if v >= 3 else 50), nullable=False)
        description = Column(Text)

    # v7: issues.id widened (ids ran out), with every column that refers to it; BIGINT is no
    # rowid alias on SQLite, hence the variant
    issue_pk = BigInteger().with_variant(Integer(), "sqlite") if v >= 7 else Integer
    issue_fk = BigInteger if v >= 7 else Integer

    class Issue(Base):
        __tablename__ = "issues"
        id = Column(issue_pk, primary_key=True)
        project_id = Column(Integer, ForeignKey("projects.id"), nullable=False)
        # v3: widened from Integer
        number = Column(BigInteger if v >= 3 else Integer, nullable=False)
        title = Column(String(200), nullable=False)
        # v6: narrowed from String(50); every status fits
        # v5: its server default changes from 'open' to 'new'
        status = Column(
            String(20 if v >= 6 else 50), nullable=False, server_default="new" if v >= 5 else "open"
        )
        reporter_id = Column(Integer, ForeignKey("users.id"))
        created = Column(DateTime, default=utcnow)
        if v >= 2:
            # v6: its server default changes from 3 to 2
            priority = Column(Integer, nullable=False, server_default="2" if v >= 6 else "3")
        if v >= 4:
            estimate = Column(Numeric(12, 2))
        if v >= 5:
            # a foreign key column on an old table, to a new one
            milestone_id = Column(Integer, ForeignKey("milestones.id"))
        if v >= 7:
            # an Enum column on an old table
            resolution = Column(Enum("fixed", "wontfix", "duplicate", name="issue_resolution"))
        if v >= 6:
            external_id = Column(Uuid, index=True)
            __table_args__ = (
                UniqueConstraint("project_id", "number", name="uq_issues_project_number"),
            )

    class IssueComment(Base):
        __tablename__ = "issue_comments"
        id = Column(Integer, primary_key=True)
        issue_id = Column(issue_fk, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False)
        author_id = Column(Integer, ForeignKey("users.id"))
        body = Column(Text, nullable=False)
        created = Column(DateTime, default=utcnow)
        if v >= 7:
            edited_at = Column(DateTime, index=True)

    if v >= 2:

        class Label(Base):
            __tablename__ = "labels"
            __table_args__ = (UniqueConstraint("project_id", "name"),)
            id = Column(Integer, primary_key=True)
            project_id = Column(Integer, ForeignKey("projects.id"), nullable=False)
            name = Column(String(50), nullable=False)
            if v < 7:  # v7: removed
                color = Column(String(7))

        Table(
            "issue_labels",
            md,
            Column("issue_id", ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
            Column("label_id", ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
        )

    if v >= 5:

        class Milestone(Base):
            __tablename__ = "milestones"
            id = Column(Integer, primary_key=True)
            project_id = Column(Integer, ForeignKey("projects.id"), nullable=False)
            title = Column(String(100), nullable=False)
            due = Column(DateTime)
            closed = Column(Boolean, nullable=False, server_default=false())

    if v >= 7:

        class IssueLink(Base):
            __tablename__ = "issue_links"
            id = Column(Integer, primary_key=True)
            source_id = Column(issue_fk, ForeignKey("issues.id", ondelete="CASCADE"))
            target_id = Column(issue_fk, ForeignKey("issues.id", ondelete="CASCADE"))
            link_type = Column(
                Enum("blocks", "duplicates", "relates", name="issue_link_type"), nullable=False
            )
            created = Column(DateTime, default=utcnow)

    return md


def _seed(v: int, s: Seeder) -> None:
    """A few rows in every table of release v, written as that release's code writes them."""
    t = s.tag
    users = []
    for i in range(3):
        values: dict[str, Any] = {"name": f"{t}-user{i}", "last_activity": utcnow()}
        if i == 0:
            values["admin"] = True
        if s.has("users", "auth_state"):
            values["auth_state"] = '{"access_token": "%s-%d"}' % (t, i)  # noqa: UP031
        if s.has("users", "user_info"):
            values["user_info"] = f"info of {t}-user{i}" if i != 2 else None
        if s.has("users", "is_service") and i == 2:
            values["is_service"] = True
        users.append(s.add("users", **values))

    clients = []
    for i in range(2):
        clients.append(
            s.add(
                "oauth_clients",
                identifier=f"{t}-client{i}",
                secret=f"secret{i}",
                redirect_uri=f"https://app{i}.example.com/oauth_callback",
            )
        )
    for i in range(2):
        values = {
            "hashed": f"sha512:{t}:{i}",
            "prefix": f"{t}{i}"[:16],
            "user_id": users[i],
        }
        # v6 renamed note to description
        values["description" if s.has("api_tokens", "description") else "note"] = f"token {i}"
        if s.has("api_tokens", "expires_at"):
            values["expires_at"] = utcnow()
        if s.has("api_tokens", "client_id"):
            values["client_id"] = clients[i] if i == 0 else None
        if s.has("api_tokens", "scopes"):
            values["scopes"] = ["read:issues", "write:comments"] if i == 0 else None
        s.add("api_tokens", **values)

    if s.has("oauth_codes"):
        code = s.add(
            "oauth_codes",
            client_id=f"{t}-client0",
            code=str(uuid.uuid4()),
            expires_at=1_700_000_000 + v,
            redirect_uri="https://app0.example.com/oauth_callback",
            user_id=users[0],
        )
        s.add("oauth_code_scopes", code_id=code, scope="read:user")
        s.add("oauth_code_scopes", code_id=code, scope="read:issues")

    groups = []
    for i in range(2):
        values = {"name": f"{t}-group{i}"}
        if s.has("groups", "properties"):
            values["properties"] = {"quota": 10 * (i + 1), "tags": [t]} if i == 0 else None
        groups.append(s.add("groups", **values))
    s.add("user_group_map", user_id=users[0], group_id=groups[0])
    s.add("user_group_map", user_id=users[1], group_id=groups[0])
    s.add("user_group_map", user_id=users[1], group_id=groups[1])

    project = s.add(
        "projects", key=f"P{v}{s.seq()}", name=f"Project of {t}", description="Issue tracker"
    )
    s.add("projects", key=f"Q{v}{s.seq()}", name=f"Side project of {t}", description=None)

    milestone = None
    if s.has("milestones"):
        milestone = s.add("milestones", project_id=project, title=f"{t} GA", due=utcnow())
        s.add("milestones", project_id=project, title=f"{t} beta", closed=True)

    issues = []
    for i in range(3):
        values = {
            "project_id": project,
            **({"id": 5_000_000_000 + s.seq()} if v >= 7 and i == 2 else {}),  # over 2**31
            "number": i + 1 if v < 3 else 5_000_000_000 + i,  # over 2**31 once BIGINT
            "title": f"Issue {i} of {t}",
            "reporter_id": users[i % 2],
        }
        if i == 1:
            values["status"] = "closed"
        if s.has("issues", "priority") and i == 0:
            values["priority"] = 1
        if s.has("issues", "estimate"):
            values["estimate"] = Decimal("3.25") if i == 0 else None
        if s.has("issues", "milestone_id"):
            values["milestone_id"] = milestone if i < 2 else None
        if s.has("issues", "external_id"):
            values["external_id"] = uuid.UUID(int=v * 100 + i)
        if s.has("issues", "resolution") and i == 1:
            values["resolution"] = "wontfix"
        issues.append(s.add("issues", **values))

    comment: dict[str, Any] = {"issue_id": issues[0], "author_id": users[1], "body": f"Seen on {t}"}
    if s.has("issue_comments", "edited_at"):
        comment["edited_at"] = utcnow()
    s.add("issue_comments", **comment)
    s.add("issue_comments", issue_id=issues[0], author_id=None, body="Me too")

    if s.has("labels"):
        values = {"project_id": project, "name": "bug"}
        if s.has("labels", "color"):
            values["color"] = "#d73a4a"
        bug = s.add("labels", **values)
        s.add("labels", project_id=project, name="help wanted")
        s.add("issue_labels", issue_id=issues[0], label_id=bug)
        s.add("issue_labels", issue_id=issues[1], label_id=bug)

    if s.has("issue_links"):
        s.add("issue_links", source_id=issues[0], target_id=issues[1], link_type="blocks")
        s.add("issue_links", source_id=issues[2], target_id=issues[0], link_type="duplicates")


_RELEASES = [
    "v1 (2017, hub and tracker)",
    "v2 (2018, labels and priorities)",
    "v3 (2019, auth_state removed, wider columns)",
    "v4 (2020, token clients, user_info, estimates)",
    "v5 (2021, OAuth codes removed, milestones)",
    "v6 (2022, service users, external ids, status narrowed)",
    "v7 (2023, issue links, token scopes)",
]

HISTORY = History(
    "tracker",
    tuple(
        Version(name, functools.partial(_models, i), functools.partial(_seed, i))
        for i, name in enumerate(_RELEASES, start=1)
    ),
)
