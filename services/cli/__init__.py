"""The `ringback` program: the one place that composes the services (CLI, runner, dev tooling)."""
