"""What every tool runs the gateway with: one fake upstream, one process launcher, one stack.

Used by the end-to-end tier (tests/e2e), the benchmark (bench/), the reliability drill (drill/),
the fuzzing run (fuzz/) and the smoke test (.ci/smoke.py). The gateway never imports it.
"""
