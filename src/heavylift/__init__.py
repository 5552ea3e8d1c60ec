"""heavylift: thin HTTP functions in front, BullMQ workers behind."""
