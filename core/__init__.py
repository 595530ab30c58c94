"""evopilot's asyncio core. Nothing below this package imports Textual or the tui package."""
