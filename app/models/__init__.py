"""Data shapes that cross the service boundary: events, the schema of every model, request
validation (`validation`) and the check of upstream answers (`projection`)."""
