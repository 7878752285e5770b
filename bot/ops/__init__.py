"""The process around the workflow: CLI, wiring, HTTP server, Bolt app, scheduler, logs, checks, exports."""
