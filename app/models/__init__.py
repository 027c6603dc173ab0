"""Data shapes that cross the service boundary: events (users live in the data service)."""
