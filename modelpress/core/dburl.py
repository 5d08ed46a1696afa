"""Database URLs as users write them, made to work with what is installed, and shown without passwords."""

from __future__ import annotations

import importlib.util


def with_installed_driver(url: str) -> str:
    """postgresql:// with the driver that is installed.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; modelpress and its image install psycopg2.
    """
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and tags."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given; it holds no parsed password
        return url
