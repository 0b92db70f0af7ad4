"""History: the recorder, sole reader and writer of the tool's own tables."""
