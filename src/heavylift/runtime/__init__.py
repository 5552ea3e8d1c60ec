"""The worker runtime: dispatch, offloading, shutdown, health."""
