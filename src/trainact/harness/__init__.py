"""Experiment harness for trainact: datasets, models, training loop, results and plots.

Nothing is imported here, so `import trainact` stays torch-only; import the submodules you need
(`trainact.harness.data`, `trainact.harness.models`, ...).
"""
