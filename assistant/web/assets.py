"""Pages and assets as files: one jinja2 environment (autoescape on) renders every template, and
the shipped .js/.css files go in as trusted markup. The /embed page's CSP allows exactly its
script and style, by hashes computed from those files at start-up."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

HERE = Path(__file__).parent

# Templates of the web layer and of the chat UI (assistant.ui: templates/ beside its modules).
ENV = jinja2.Environment(
    loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(HERE / "templates"),
                                jinja2.PackageLoader("assistant.ui", "templates")]),
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(template: str, **context: object) -> str:
    """A template rendered with autoescaping: every value is text unless it is `Markup`."""
    return ENV.get_template(template).render(**context)


@cache
def static_text(package_dir: Path, name: str) -> Markup:
    """A shipped asset (ours, not user data), as markup to place verbatim in a page."""
    return Markup((package_dir / "static" / name).read_text(encoding="utf-8"))


def csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def embed_page(auth: bool, frame_ancestors: list[str]) -> tuple[str, str]:
    """The /embed page and its Content-Security-Policy."""
    script, style = static_text(HERE, "embed.js"), static_text(HERE, "embed.css")
    html = render("embed.html", auth="1" if auth else "0", style=style, script=script)
    csp = (f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
           f"frame-ancestors {' '.join(frame_ancestors)}")
    return html, csp
