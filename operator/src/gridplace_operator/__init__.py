"""gridplace operator: kopf handlers, planner loop, reconcile, signals and the CLI."""

__version__ = "0.1.0"
