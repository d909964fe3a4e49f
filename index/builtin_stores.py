"""The two built-in stores, registered through the plugin hook `register_stores` like any other.

"" (an empty `settings.store`): the local folder `index_dir` (FAISS + SQLite, `IndexStore`);
"postgresql" / "postgres": PostgreSQL with pgvector (`PostgresStore`), `settings.store` being the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant import plugins
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.index import Store


def open_local(settings: Settings, model_name: str, dim: int, writable: bool) -> Store:
    from assistant.index.store import IndexStore

    return IndexStore.open(settings.index_dir, model_name, dim, writable, settings)


def open_postgres(settings: Settings, model_name: str, dim: int, writable: bool) -> Store:
    from assistant.index.postgres import PostgresStore

    return PostgresStore.open(settings.store, model_name, dim, writable, settings)


@plugins.hookimpl
def register_stores(register: Callable[[str, Callable[[Settings, str, int, bool], Store]], None]) -> None:
    register("", open_local)
    register("postgresql", open_postgres)
    register("postgres", open_postgres)
