"""The app's tabs and dialogs (one module per screen or pane)."""
