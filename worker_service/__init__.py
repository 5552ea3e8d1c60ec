"""The long-running worker container's entry point."""
