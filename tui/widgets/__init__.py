"""Reusable Textual widgets of the evopilot UI (one module per widget)."""
