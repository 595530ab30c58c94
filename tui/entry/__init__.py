"""evopilot: a terminal workbench for experiments on remote machines.

This folder is the ``evopilot`` package itself (pyproject maps it); the code lives in
``evopilot.core`` (the asyncio core) and ``evopilot.tui`` (the CLI and the app).
"""
