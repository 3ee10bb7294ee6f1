"""gridplace placement engine: a pure library, free of Kubernetes."""

__version__ = "0.1.0"
