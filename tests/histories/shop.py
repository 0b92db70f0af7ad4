"""A web shop over seven releases (2016-2022): SQLAlchemy 2 declarative classes with a naming
convention for keys, indexes and foreign keys (CHECKs are named by hand or left unnamed), a
native Enum for the order state and a non-native one with its CHECK for the payment method.

What changes, release by release (the comments in _models say the same next to each column):

v1 2016  categories, products (status server_default 'draft', stock server_default '0',
         is_active NOT NULL with only default=True, created_at without a default), customers
         (newsletter Boolean without a default), orders (state Enum order_state: pending, paid,
         shipped; payment Enum payment_method, not native, with its CHECK), order_items (key
         order_id, line_no), product_prices (key product_id, currency; valid_from NOT NULL)
v2 2017  products.status server default 'draft' -> 'active'; order_state gains 'cancelled';
         comments on products (table) and products.sku; a named CHECK on order_items
         (quantity > 0), a table with rows
v3 2018  products.stock loses its server default 0; products.is_active and customers.newsletter
         get a server default (true, false); products.created_at gets server default now();
         an unnamed CHECK on products (price >= 0); both comments changed, a column comment on
         customers.email; order_state gains 'refunded'
v4 2019  product_prices.valid_from joins the primary key (a price history); the named CHECK on
         order_items dropped (credit lines have negative quantities)
v5 2020  order_state gains 'returned'; orders.returned_at and a named CHECK that uses the new
         value (a returned order has its date), in the same release
v6 2021  order_state gains 'packed' between 'paid' and 'shipped'
v7 2022  payment_method gains 'paypal' (the CHECK of its values widens)
"""

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Optional

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    func,
    true,
)
from sqlalchemy import false as sql_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from . import History, KnownBug, Seeder, Version, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def order_states(v: int) -> tuple[str, ...]:
    """The values of order_state in release v, in the models' order."""
    states = ["pending", "paid", "shipped"]
    if v >= 2:
        states.append("cancelled")
    if v >= 3:
        states.append("refunded")
    if v >= 5:
        states.append("returned")
    if v >= 6:  # v6: between paid and shipped, where it belongs
        states.insert(states.index("shipped"), "packed")
    return tuple(states)


def payment_methods(v: int) -> tuple[str, ...]:
    return ("card", "invoice", "paypal") if v >= 7 else ("card", "invoice")


def _models(v: int) -> MetaData:
    """The models of release v (1-7)."""
    md = MetaData(naming_convention=NAMING_CONVENTION)

    class Base(DeclarativeBase):
        metadata = md

    class Category(Base):
        __tablename__ = "categories"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str] = mapped_column(String(80), unique=True)

    sku_comment = None
    if v >= 2:
        sku_comment = "Stock keeping unit" if v < 3 else "Stock keeping unit, unique in the shop"

    class Product(Base):
        __tablename__ = "products"
        if v >= 3:  # v3: an unnamed CHECK, on a table with rows
            __table_args__ = (
                CheckConstraint("price >= 0"),
                {"comment": "Items in the catalogue, one row per SKU"},
            )
        elif v >= 2:  # v2: a table comment
            __table_args__ = {"comment": "Catalogue items"}
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        # v2: a comment; v3: another one
        sku: Mapped[str] = mapped_column(String(32), unique=True, comment=sku_comment)
        name: Mapped[str] = mapped_column(String(200))
        price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        category_id: Mapped[Optional[int]] = mapped_column(  # noqa: UP045
            ForeignKey("categories.id")
        )
        # v2: its server default changes from 'draft' to 'active'
        status: Mapped[str] = mapped_column(
            String(20), server_default="active" if v >= 2 else "draft"
        )
        # v3: its server default 0 is dropped (the code always says how many)
        stock: Mapped[int] = mapped_column(Integer, server_default="0" if v < 3 else None)
        # v3: a server default true besides the Python one
        is_active: Mapped[bool] = mapped_column(
            Boolean, default=True, server_default=true() if v >= 3 else None
        )
        # v3: a server default now() on a column with rows
        created_at: Mapped[Optional[datetime]] = mapped_column(  # noqa: UP045
            DateTime, server_default=func.now() if v >= 3 else None
        )

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        # v3: a column comment, with a quote in it
        email: Mapped[str] = mapped_column(
            String(254), unique=True, comment="The customer's login" if v >= 3 else None
        )
        name: Mapped[str] = mapped_column(String(200))
        # v3: a server default false
        newsletter: Mapped[Optional[bool]] = mapped_column(  # noqa: UP045
            Boolean, server_default=sql_false() if v >= 3 else None
        )

    class Order(Base):
        __tablename__ = "orders"
        if v >= 5:  # v5: a named CHECK that uses the value this release adds
            __table_args__ = (
                CheckConstraint(
                    "state <> 'returned' OR returned_at IS NOT NULL",
                    name="ck_orders_returned_dated",
                ),
            )
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
        # v2, v3, v5, v6: values added (v6 in the middle)
        state: Mapped[str] = mapped_column(
            Enum(*order_states(v), name="order_state"), server_default="pending"
        )
        # v7: 'paypal' added: a VARCHAR everywhere, with the CHECK of its values
        payment: Mapped[str] = mapped_column(
            Enum(
                *payment_methods(v),
                name="payment_method",
                native_enum=False,
                create_constraint=True,
            )
        )
        placed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
        total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        if v >= 5:
            returned_at: Mapped[Optional[datetime]] = mapped_column(DateTime)  # noqa: UP045

    class OrderItem(Base):
        __tablename__ = "order_items"
        if 2 <= v < 4:  # v2: a named CHECK on a table with rows; v4: dropped
            __table_args__ = (
                CheckConstraint("quantity > 0", name="ck_order_items_quantity_positive"),
            )
        order_id: Mapped[int] = mapped_column(
            ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
        )
        line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
        quantity: Mapped[int] = mapped_column(Integer)
        unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    class ProductPrice(Base):
        __tablename__ = "product_prices"
        # v4: valid_from joins the key (a history of prices per currency)
        __table_args__ = (
            PrimaryKeyConstraint("product_id", "currency", *(["valid_from"] if v >= 4 else [])),
        )
        product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
        currency: Mapped[str] = mapped_column(String(3))
        valid_from: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
        amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    return md


def _seed(v: int, s: Seeder) -> None:
    """A few rows in every table of release v, written as that release's code writes them."""
    t = s.tag
    category = s.add("categories", name=f"{t}-garden")

    products = []
    for i in range(3):
        values: dict[str, object] = {
            "sku": f"{t}-sku-{i}",
            "name": f"Product {i} of {t}",
            "price": Decimal("19.90") + i,
            "category_id": category if i else None,
        }
        if i == 0:
            values["status"] = "discontinued"
        if v >= 3 or i == 1:  # from v3 the code always gives the stock
            values["stock"] = 5 * i
        if i == 2:
            values["is_active"] = False
            values["created_at"] = datetime(2015, 12, 24, 18, 30)
        products.append(s.add("products", **values))

    customers = []
    for i in range(2):
        values = {"email": f"{t}-buyer{i}@example.com", "name": f"Buyer {i} ({t})"}
        if i == 1:
            values["newsletter"] = True
        customers.append(s.add("customers", **values))

    states = order_states(v)
    methods = payment_methods(v)
    orders = []
    for i, state in enumerate(states):
        values = {
            "customer_id": customers[i % 2],
            "payment": methods[i % len(methods)],
            "total": Decimal("39.80"),
        }
        if i:  # the first one gets the server default 'pending'
            values["state"] = state
        if state == "returned":
            values["returned_at"] = utcnow()
        orders.append(s.add("orders", **values))
    if "paypal" in methods:
        s.add("orders", customer_id=customers[0], payment="paypal", total=Decimal("5.00"))

    for line, product in enumerate(products[:2], start=1):
        s.add(
            "order_items",
            order_id=orders[0],
            line_no=line,
            product_id=product,
            quantity=line,
            unit_price=Decimal("19.90"),
        )
    if v >= 4:  # a credit line, since the CHECK is gone
        s.add(
            "order_items",
            order_id=orders[1],
            line_no=1,
            product_id=products[0],
            quantity=-1,
            unit_price=Decimal("19.90"),
        )

    now = utcnow()
    s.add("product_prices", product_id=products[0], currency="EUR", amount=Decimal("19.90"))
    s.add(
        "product_prices",
        product_id=products[0],
        currency="CHF",
        valid_from=now - timedelta(days=30),
        amount=Decimal("21.50"),
    )
    if v >= 4:  # the same product and currency, an older price
        s.add(
            "product_prices",
            product_id=products[0],
            currency="EUR",
            valid_from=now - timedelta(days=365),
            amount=Decimal("17.90"),
        )


_RELEASES = [
    "v1 (2016, launch)",
    "v2 (2017, cancellations, quantity check, comments)",
    "v3 (2018, refunds, new server defaults, price check)",
    "v4 (2019, price history, credit lines)",
    "v5 (2020, returns)",
    "v6 (2021, packing)",
    "v7 (2022, PayPal)",
]

# The package bugs these releases meet (see KnownBug), per release and backend: none now. The
# releases were written when three of them failed: a new enum value used in the same release on
# PostgreSQL, a value inserted in the middle of a PostgreSQL enum, and an Enum's CHECK that kept
# its old values.
_KNOWN_BUGS: dict[int, dict[str, KnownBug]] = {}

HISTORY = History(
    "shop",
    tuple(
        Version(
            name,
            functools.partial(_models, i),
            functools.partial(_seed, i),
            _KNOWN_BUGS.get(i, {}),
        )
        for i, name in enumerate(_RELEASES, start=1)
    ),
)
