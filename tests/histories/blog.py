"""A blog / CMS over eight releases (2019-2026): SQLAlchemy 2 declarative classes with mixins and
plain Table() objects in one MetaData with a full naming convention.

What changes, release by release (the comments in _models say the same next to each column):

v1 2019  users, posts, comments, categories, post_categories (Table), tags, post_tags (Table),
         settings (Table), media, pages
v2 2020  users.bio, users.display_name; posts.view_count NOT NULL server_default '0'; posts
         .published gets an index; comments.approved NOT NULL with only a Python default=False
         (comments has rows); new post_revisions, subscribers (Uuid token, unique)
v3 2021  users.username String(50) -> String(200) (a unique column); media.size Integer ->
         BigInteger; posts.excerpt (NOT NULL, no default) removed; pages.menu_order NOT NULL
         server_default '0'; categories.parent_id, a foreign key to categories, on an old table
v4 2022  posts.meta_description and posts.canonical_url String(255), the type of the removed
         posts.excerpt; comments.user_id, a foreign key to users, on an old table; users
         .preferences JSON; new donations (Numeric(12, 2), a CHECK), post_likes (Table, m2m)
v5 2023  posts.slug String(200) -> String(100) (unique; the data fits); post_revisions.id
         Integer -> BigInteger (the primary key); tags and post_tags removed together;
         users.locale NOT NULL server_default 'en'; media.uploaded_at NOT NULL
         server_default now()
v6 2024  users.public_id Uuid unique; users.is_verified NOT NULL with only default=False;
         users.last_seen_at with an index; pages removed; new webhooks (JSON); a two-column
         index on comments
v7 2025  subscribers.email String(120) -> String(254); donations.fee Numeric(12, 2) NOT NULL
         server_default '0'; posts.reading_minutes; users.display_name removed
v8 2026  donations: the CHECK amount_non_negative dropped (refunds are negative donations), a
         CHECK fee_non_negative added (both named by the convention); users.locale server
         default 'en' -> 'en-US'; comments on webhooks (table) and webhooks.events
"""

import functools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from . import History, Seeder, Version, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _models(v: int) -> MetaData:
    """The models of release v (1-8)."""
    md = MetaData(naming_convention=NAMING_CONVENTION)

    class Base(DeclarativeBase):
        metadata = md

    class IdMixin:
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    class TimestampMixin:
        created_at: Mapped[datetime] = mapped_column(
            DateTime, nullable=False, server_default=func.now()
        )
        updated_at: Mapped[Optional[datetime]] = mapped_column(  # noqa: UP045
            DateTime, default=utcnow, onupdate=utcnow
        )

    class User(IdMixin, TimestampMixin, Base):
        __tablename__ = "users"
        # v3: widened from String(50)
        username: Mapped[str] = mapped_column(String(200 if v >= 3 else 50), unique=True)
        email: Mapped[str] = mapped_column(String(120), unique=True)
        password_hash: Mapped[str] = mapped_column(String(128))
        is_admin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
        if v >= 2:
            bio: Mapped[Optional[str]] = mapped_column(Text)  # noqa: UP045
        if 2 <= v < 7:  # v7: removed
            display_name: Mapped[Optional[str]] = mapped_column(String(100))  # noqa: UP045
        if v >= 4:
            preferences: Mapped[Optional[Any]] = mapped_column(JSON)  # noqa: UP045
        if v >= 5:
            # v8: its server default changes from 'en' to 'en-US'
            locale: Mapped[str] = mapped_column(
                String(10), server_default="en-US" if v >= 8 else "en"
            )
        if v >= 6:
            public_id: Mapped[Optional[uuid.UUID]] = mapped_column(  # noqa: UP045
                Uuid, unique=True
            )
            # NOT NULL with only a Python default, on a table with rows
            is_verified: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
        if v >= 6:
            last_seen_at: Mapped[Optional[datetime]] = mapped_column(  # noqa: UP045
                DateTime, index=True
            )

    class Post(IdMixin, TimestampMixin, Base):
        __tablename__ = "posts"
        author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
        title: Mapped[str] = mapped_column(String(200))
        # v5: narrowed from String(200); every slug fits
        slug: Mapped[str] = mapped_column(String(100 if v >= 5 else 200), unique=True)
        if v < 3:  # v3: removed (NOT NULL without a default)
            excerpt: Mapped[str] = mapped_column(String(255))
        body: Mapped[str] = mapped_column(Text)
        published: Mapped[bool] = mapped_column(
            Boolean, default=False, nullable=False, index=v >= 2
        )
        if v >= 2:
            view_count: Mapped[int] = mapped_column(Integer, server_default="0")
        if v >= 4:  # the type of the removed excerpt
            meta_description: Mapped[Optional[str]] = mapped_column(String(255))  # noqa: UP045
            canonical_url: Mapped[Optional[str]] = mapped_column(String(255))  # noqa: UP045
        if v >= 7:
            reading_minutes: Mapped[Optional[int]] = mapped_column(Integer)  # noqa: UP045

    class Comment(IdMixin, TimestampMixin, Base):
        __tablename__ = "comments"
        post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
        author_name: Mapped[str] = mapped_column(String(80))
        author_email: Mapped[Optional[str]] = mapped_column(String(120))  # noqa: UP045
        body: Mapped[str] = mapped_column(Text)
        if v >= 2:
            # NOT NULL with only a Python default, on a table with rows
            approved: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
        if v >= 4:
            # a foreign key column on an old table
            user_id: Mapped[Optional[int]] = mapped_column(  # noqa: UP045
                ForeignKey("users.id"), index=True
            )
        if v >= 6:
            __table_args__ = (Index("ix_comments_post_created", "post_id", "created_at"),)

    class Category(IdMixin, Base):
        __tablename__ = "categories"
        name: Mapped[str] = mapped_column(String(50), unique=True)
        description: Mapped[Optional[str]] = mapped_column(Text)  # noqa: UP045
        if v >= 3:
            # a self-referencing foreign key column on an old table
            parent_id: Mapped[Optional[int]] = mapped_column(  # noqa: UP045
                ForeignKey("categories.id")
            )

    Table(
        "post_categories",
        md,
        Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
        Column("category_id", ForeignKey("categories.id"), primary_key=True),
    )

    if v < 5:  # v5: tags and post_tags removed together

        class Tag(IdMixin, Base):
            __tablename__ = "tags"
            name: Mapped[str] = mapped_column(String(30), unique=True)

        Table(
            "post_tags",
            md,
            Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
            Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
        )

    Table(
        "settings",
        md,
        Column("key", String(64), primary_key=True),
        Column("value", Text),
    )

    class Media(IdMixin, TimestampMixin, Base):
        __tablename__ = "media"
        post_id: Mapped[Optional[int]] = mapped_column(ForeignKey("posts.id"))  # noqa: UP045
        filename: Mapped[str] = mapped_column(String(255))
        # v3: widened from Integer (videos)
        size: Mapped[int] = mapped_column(BigInteger if v >= 3 else Integer)
        mime_type: Mapped[Optional[str]] = mapped_column(String(100))  # noqa: UP045
        if v >= 5:
            # NOT NULL with a computed server default, on a table with rows
            uploaded_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    if v < 6:  # v6: removed

        class Page(IdMixin, TimestampMixin, Base):
            __tablename__ = "pages"
            title: Mapped[str] = mapped_column(String(200))
            slug: Mapped[str] = mapped_column(String(200), unique=True)
            body: Mapped[Optional[str]] = mapped_column(Text)  # noqa: UP045
            if v >= 3:
                menu_order: Mapped[int] = mapped_column(Integer, server_default="0")

    if v >= 2:

        class PostRevision(Base):
            __tablename__ = "post_revisions"
            # v5: the primary key widened (BIGINT is no rowid alias on SQLite)
            id: Mapped[int] = mapped_column(
                BigInteger().with_variant(Integer(), "sqlite") if v >= 5 else Integer,
                primary_key=True,
            )
            post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
            editor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))  # noqa: UP045
            body: Mapped[str] = mapped_column(Text)
            created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

        class Subscriber(IdMixin, TimestampMixin, Base):
            __tablename__ = "subscribers"
            # v7: widened from String(120)
            email: Mapped[str] = mapped_column(String(254 if v >= 7 else 120), unique=True)
            confirmed: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
            token: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)

    if v >= 4:

        class Donation(IdMixin, TimestampMixin, Base):
            __tablename__ = "donations"
            # v8: amount_non_negative dropped, fee_non_negative added
            __table_args__ = (
                CheckConstraint("fee >= 0", name="fee_non_negative")
                if v >= 8
                else CheckConstraint("amount >= 0", name="amount_non_negative"),
            )
            user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
            amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
            currency: Mapped[str] = mapped_column(String(3), server_default="EUR")
            note: Mapped[Optional[str]] = mapped_column(Text)  # noqa: UP045
            if v >= 7:
                fee: Mapped[Decimal] = mapped_column(Numeric(12, 2), server_default="0")

        Table(
            "post_likes",
            md,
            Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
            Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
            Column("created_at", DateTime, nullable=False, server_default=func.now()),
        )

    if v >= 6:

        class Webhook(IdMixin, TimestampMixin, Base):
            __tablename__ = "webhooks"
            if v >= 8:  # v8: comments
                __table_args__ = {"comment": "Outgoing HTTP callbacks, one row per URL"}
            owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
            url: Mapped[str] = mapped_column(String(500))
            secret: Mapped[Optional[str]] = mapped_column(String(64))  # noqa: UP045
            events: Mapped[Any] = mapped_column(
                JSON, comment="The event names to send, or a filter object" if v >= 8 else None
            )
            active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)

    return md


def _seed(v: int, s: Seeder) -> None:
    """A few rows in every table of release v, written as that release's code writes them."""
    t = s.tag
    users = []
    for i in range(2):
        values: dict[str, Any] = {
            "username": f"{t}-writer{i}",
            "email": f"{t}-writer{i}@example.org",
            "password_hash": f"pbkdf2${t}${i}",
        }
        if i == 0:
            values["is_admin"] = True
        if s.has("users", "bio"):
            values["bio"] = f"Writes about release {t}." if i == 0 else None
        if s.has("users", "display_name"):
            values["display_name"] = f"Writer {i} ({t})"
        if s.has("users", "preferences"):
            values["preferences"] = {"theme": "dark", "digest": [t, i]}
        if s.has("users", "locale") and i == 1:
            values["locale"] = "de-CH"
        if s.has("users", "public_id"):
            values["public_id"] = uuid.uuid4()
        if s.has("users", "is_verified") and i == 0:
            values["is_verified"] = True
        if s.has("users", "last_seen_at") and i == 0:
            values["last_seen_at"] = utcnow()
        users.append(s.add("users", **values))

    posts = []
    for i in range(2):
        values = {
            "author_id": users[i],
            "title": f"Post {i} of {t}",
            "slug": f"{t}-post-{i}",
            "body": f"Body of post {i} written by release {t}.",
            "published": i == 0,
        }
        if s.has("posts", "excerpt"):
            values["excerpt"] = f"Excerpt {i} ({t})"
        if s.has("posts", "view_count") and i == 0:
            values["view_count"] = 42
        if s.has("posts", "meta_description"):
            values["meta_description"] = f"About post {i} ({t})"
            values["canonical_url"] = f"https://blog.example.org/{t}/{i}"
        if s.has("posts", "reading_minutes"):
            values["reading_minutes"] = 3 + i
        posts.append(s.add("posts", **values))

    for i in range(2):
        values = {
            "post_id": posts[0],
            "author_name": f"Reader {i}",
            "author_email": f"reader{i}@example.net" if i else None,
            "body": f"Comment {i} on {t}",
        }
        if s.has("comments", "approved") and i == 0:
            values["approved"] = True
        if s.has("comments", "user_id"):
            values["user_id"] = users[1] if i else None
        s.add("comments", **values)

    cat_values: dict[str, Any] = {"name": f"{t}-news", "description": "News"}
    news = s.add("categories", **cat_values)
    child: dict[str, Any] = {"name": f"{t}-releases", "description": None}
    if s.has("categories", "parent_id"):
        child["parent_id"] = news
    releases = s.add("categories", **child)
    s.add("post_categories", post_id=posts[0], category_id=news)
    s.add("post_categories", post_id=posts[1], category_id=releases)

    if s.has("tags"):
        tag = s.add("tags", name=f"{t}-python")
        s.add("post_tags", post_id=posts[0], tag_id=tag)
        s.add("post_tags", post_id=posts[1], tag_id=tag)

    s.add("settings", key=f"{t}.site_title", value=f"The {t} blog")
    s.add("settings", key=f"{t}.empty", value=None)

    s.add(
        "media",
        post_id=posts[0],
        filename=f"{t}-cover.png",
        size=3_000_000_000 if v >= 3 else 204_800,  # over 2**31 once it is a BIGINT
        mime_type="image/png",
    )
    s.add("media", post_id=None, filename=f"{t}-logo.svg", size=1024, mime_type=None)

    if s.has("pages"):
        values = {"title": f"About ({t})", "slug": f"{t}-about", "body": "Who we are"}
        if s.has("pages", "menu_order"):
            values["menu_order"] = 2
        s.add("pages", **values)
        s.add("pages", title=f"Imprint ({t})", slug=f"{t}-imprint", body=None)

    if s.has("post_revisions"):
        s.add("post_revisions", post_id=posts[0], editor_id=users[0], body="first draft")
        s.add("post_revisions", post_id=posts[0], editor_id=None, body="second draft")
        s.add("subscribers", email=f"{t}-fan@example.com")
        s.add(
            "subscribers",
            email=f"{t}-fan2@example.com",
            confirmed=True,
            token=uuid.UUID(int=v * 1000 + s.seq()),
        )

    if s.has("donations"):
        values = {"user_id": users[0], "amount": Decimal("12.50"), "note": "Thanks!"}
        if s.has("donations", "fee"):
            values["fee"] = Decimal("0.35")
        s.add("donations", **values)
        s.add("donations", user_id=users[1], amount=Decimal("1234567890.99"), currency="CHF")
        if v >= 8:  # a refund, now that amounts may be negative
            s.add("donations", user_id=users[1], amount=Decimal("-12.50"), note="Refund")
        s.add("post_likes", user_id=users[0], post_id=posts[1])
        s.add("post_likes", user_id=users[1], post_id=posts[1])

    if s.has("webhooks"):
        s.add(
            "webhooks",
            owner_id=users[0],
            url=f"https://hooks.example.com/{t}",
            events=["post.published", "comment.created"],
        )
        s.add(
            "webhooks",
            owner_id=users[1],
            url=f"https://hooks.example.com/{t}/off",
            secret="s3cr3t",
            events={"all": False},
            active=False,
        )


_RELEASES = [
    "v1 (2019, launch)",
    "v2 (2020, revisions and subscribers)",
    "v3 (2021, wider columns, excerpt removed)",
    "v4 (2022, donations, likes, comment authors)",
    "v5 (2023, tags removed, slug narrowed)",
    "v6 (2024, webhooks, pages removed)",
    "v7 (2025, fees)",
    "v8 (2026, refunds, comments)",
]

HISTORY = History(
    "blog",
    tuple(
        Version(name, functools.partial(_models, i), functools.partial(_seed, i))
        for i, name in enumerate(_RELEASES, start=1)
    ),
)
