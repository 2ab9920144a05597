"""The evidence pipeline: benchmark scripts, the registry of training experiments, and the report built from
their collected results. Run its modules from the repository root as `python -m benchmarks.NAME`."""
