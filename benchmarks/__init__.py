"""The benchmarks behind benchmarks/RESULTS.md, each run from the repository root as `python -m benchmarks.NAME`.

Side-by-side timings go through benchmarks.harness, on the gate's interleaved loop (gate_calibration and search call
the gate's own entry points on it); a benchmark that times another way says why in its docstring. Not part of the
installed package.
"""
