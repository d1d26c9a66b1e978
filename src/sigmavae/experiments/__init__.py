"""The paper's experiments: its published numbers (this package's ``published.csv``)."""

from .published import PublishedValue, published, published_values

__all__ = ["PublishedValue", "published", "published_values"]
