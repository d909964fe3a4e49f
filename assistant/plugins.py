"""Plugins: file loaders, embedding models, chat (LLM) backends and stores, through pluggy.

A plugin is a module (or object) with `@hookimpl` functions named after the hooks in `Hookspecs`;
each receives a `register` callable and calls it once per thing it provides. Other packages are
found through the entry-point group `assistant`, e.g. in their pyproject.toml:

    [project.entry-points.assistant]
    csv = "assistant_csv_plugin"

The built-ins (`DEFAULT_PLUGINS`) are registered exactly the same way, so the core has no list
of formats, models, backends or stores of its own. Lookups go through one `Registry` per hook,
whose errors name what is registered. A name registered twice goes to the plugin registered
last (a third-party plugin over a built-in).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

if TYPE_CHECKING:
    from assistant.index import Store
    from assistant.llm import ChatBackend
    from assistant.loaders import LoadedDocument
    from assistant.settings import Settings

    Loader = Callable[[Path], LoadedDocument]
    ModelFolder = Callable[[], Path]
    ChatFactory = Callable[[Settings], ChatBackend]
    StoreOpener = Callable[[Settings, str, int, bool], Store]

GROUP = "assistant"  # the pluggy project name and the entry-point group
hookspec = pluggy.HookspecMarker(GROUP)
hookimpl = pluggy.HookimplMarker(GROUP)

# Modules holding the built-in hook implementations, registered before any entry point.
DEFAULT_PLUGINS = (
    "assistant.loaders",
    "assistant.embed",
    "assistant.llm.openai_backend",
    "assistant.llm.local",
    "assistant.index.builtin_stores",
)
INSTALL_HINT = f"install a plugin that provides one (entry-point group {GROUP!r})"

T = TypeVar("T")


class Hookspecs:
    """What a plugin may provide; every hook gets `register(name, thing)`."""

    @hookspec
    def register_loaders(self, register: Callable[[str, Loader], None]) -> None:
        """register(".csv", loader): `loader(path)` returns a `LoadedDocument` or raises `LoadError`."""

    @hookspec
    def register_embedding_models(self, register: Callable[[str, ModelFolder], None]) -> None:
        """register(name, folder): `folder()` returns the sentence-transformers model's local folder."""

    @hookspec
    def register_chat_backends(self, register: Callable[[str, ChatFactory], None]) -> None:
        """register(name, factory): `factory(settings)` returns a `ChatBackend` (assistant.llm)."""

    @hookspec
    def register_stores(self, register: Callable[[str, StoreOpener], None]) -> None:
        """register(url_scheme, opener): `opener(settings, model_name, dim, writable)` returns a `Store`
        for `settings.store` URLs of that scheme ("" is the local index folder, `settings.store` empty)."""


class NotRegistered(ValueError):
    """A name no plugin registered; the message lists the registered ones."""


class Registry(Generic[T]):
    """Names (suffixes, model names, backend names, URL schemes) to what plugins registered."""

    install_hint = INSTALL_HINT  # what error messages suggest when a name is missing

    def __init__(self, kind: str, entries: dict[str, T]) -> None:
        self.kind = kind
        self.entries = entries

    def names(self) -> list[str]:
        return list(self.entries)

    def find(self, name: str) -> T | None:
        return self.entries.get(name)

    def get(self, name: str) -> T:
        found = self.entries.get(name)
        if found is None:
            raise NotRegistered(f"no {self.kind} {name!r}; known: {', '.join(self.entries) or '(none)'}; "
                                f"{self.install_hint}")
        return found


_lock = threading.RLock()  # re-entrant: a plugin module may look something up while it is imported
_manager: pluggy.PluginManager | None = None
_extra: list[tuple[object, str | None]] = []  # plugins registered in-process with `register()`
_registries: dict[str, Registry[Any]] = {}


def manager() -> pluggy.PluginManager:
    """The plugin manager: built-ins, then entry-point plugins, then in-process ones; built once."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(GROUP)
            pm.add_hookspecs(Hookspecs)
            for module in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(module), name=module)
            pm.load_setuptools_entrypoints(GROUP)
            for plugin, name in _extra:
                pm.register(plugin, name=name)
            _manager = pm
        return _manager


def register(plugin: object, name: str | None = None) -> None:
    """Add a plugin in this process (an application embedding the assistant, or a test)."""
    with _lock:
        _extra.append((plugin, name))
        if _manager is not None:
            _manager.register(plugin, name=name)
        _registries.clear()


def reset() -> None:
    """Forget every plugin and lookup; the next lookup finds the built-ins and entry points afresh."""
    global _manager
    with _lock:
        _manager = None
        _extra.clear()
        _registries.clear()


def _registry(hook: str, kind: str, key: Callable[[str], str] = str) -> Registry[Any]:
    with _lock:
        if hook not in _registries:
            entries: dict[str, Any] = {}

            def add(name: str, thing: Any) -> None:
                entries[key(name)] = thing

            # Registration order (pluggy calls the other way round): a later plugin overrides a built-in.
            for impl in getattr(manager().hook, hook).get_hookimpls():
                impl.function(**{arg: add for arg in impl.argnames})
            _registries[hook] = Registry(kind, entries)
        return _registries[hook]


def _suffix(name: str) -> str:
    suffix = name.lower()
    return suffix if suffix.startswith(".") else "." + suffix


def loaders() -> Registry[Loader]:
    return _registry("register_loaders", "loader for", _suffix)


def embedding_models() -> Registry[ModelFolder]:
    return _registry("register_embedding_models", "embedding model")


def chat_backends() -> Registry[ChatFactory]:
    return _registry("register_chat_backends", "chat backend")


def stores() -> Registry[StoreOpener]:
    return _registry("register_stores", "store for URL scheme", str.lower)
