"""CLI commands, one module each; heavy imports stay inside the command bodies
so that ``kaizenctl --help`` starts fast."""
