"""A tiny app whose tasks the benchmarks enqueue."""
