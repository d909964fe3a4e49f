"""Gradio front end (chat UI): `build_ui(service)` returns the `gr.Blocks` the server mounts at /ui."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

    from assistant.service import AssistantService

__all__ = ["build_ui"]


def build_ui(service: AssistantService) -> gr.Blocks:
    """The chat + documents UI over one shared service (gradio is imported only when this is called)."""
    from assistant.ui.app import build_ui as _build

    return _build(service)
