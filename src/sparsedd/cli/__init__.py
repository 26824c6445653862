"""The command line: ``main`` (run, results, presets, status) and ``analysis`` (analyze,
plot, report, export)."""
