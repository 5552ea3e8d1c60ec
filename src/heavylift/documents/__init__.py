"""Document building blocks: detect the type, extract pages, chunk. Pure functions, picklable."""
