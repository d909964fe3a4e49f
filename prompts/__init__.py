"""Prompt templates as plain files (used by generative answerers)."""
