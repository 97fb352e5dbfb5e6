"""Long-running workers: each has a ``run(stop)`` coroutine that returns when ``stop`` is set."""
