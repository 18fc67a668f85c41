"""Media derived from stored results (preview images)."""
