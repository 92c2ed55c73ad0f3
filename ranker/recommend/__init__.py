"""Recommendations: similar items and personal picks, explained."""
