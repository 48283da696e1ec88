"""Measurements of the service (`make bench`): not tests, never asserted."""
