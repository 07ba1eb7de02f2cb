"""kaizenctl: a declarative GitOps reconciler for Kaizen Studio."""

__version__ = "0.1.0"
