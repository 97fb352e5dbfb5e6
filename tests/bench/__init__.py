"""Benchmarks (not tests): ``./dev bench [name ...]``. Each reports ratios against a raw
limit measured in the same run, because the machine is shared and noisy."""
