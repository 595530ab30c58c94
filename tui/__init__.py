"""evopilot's terminal user interface (Textual); imports only core.engine from the core."""
