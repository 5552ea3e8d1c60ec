"""The long-running worker container's entry point.

`heavylift-worker` calls `start` here rather than `worker_service.main.main`: the process pool's
spawned children re-run the console script's imports as their `__mp_main__`, and this module
imports nothing until it is called (`worker_service.main` would bring the queue engine, Redis,
telemetry and the CLI into every pool process: 80 MB at rest instead of ~40 MB).
"""


def start() -> None:
    from worker_service.main import main  # only in the worker itself: see above

    main()
