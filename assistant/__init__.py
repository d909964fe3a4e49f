"""Document question answering where every claim cites the passage it came from."""

__version__ = "0.1.0"
