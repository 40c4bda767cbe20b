"""Reads for people: query parameters, time courses, overview, study metadata, exports."""
