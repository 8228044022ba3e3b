"""Benchmarks of Valise against the bare primitives and peer formats. Run ``python -m bench``.

Every figure and its limit or peer are measured interleaved, round by round, in the same
process, and the best round is kept (the machine is shared and noisy). Nothing here
asserts on timings; the goals are printed for information.
"""
