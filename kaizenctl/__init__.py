"""kaizenctl: a declarative GitOps reconciler for Kaizen Studio."""

__version__ = "0.1.0"

# The command line's garbage-collector thresholds (kaizenctl.cli.main sets them; the
# benchmarks time a plan with the same). A run allocates a plan's worth of small objects
# and exits: the default (a young collection every 700 allocations) spent ~13% of an
# apply's CPU in the collector, and more as the set grows.
CLI_GC_THRESHOLDS = (50_000, 10, 10)
