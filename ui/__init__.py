"""Gradio front end (chat UI)."""
