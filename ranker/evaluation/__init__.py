"""Offline evaluation: relevance metrics per pipeline, significance of a difference, list diversity, and recommendation hold-out metrics."""
