"""evopilot's terminal user interface: the Textual app, its screens and widgets."""
