"""Alerts: conditions over the matrix, their lifecycle, and notifiers."""
