"""The benchmarks behind benchmarks/RESULTS.md, each run from the repository root as `python -m benchmarks.NAME`.

Every side-by-side timing goes through benchmarks.harness (the gate's interleaved rounds); a benchmark that times
another way says why in its docstring. Not part of the installed package.
"""
