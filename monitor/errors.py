"""The exception tree of inferwatch.

    InferwatchError                 base of every error this package raises on purpose
    ├── ConfigError                 a configuration file is invalid (names file, line, key)
    ├── UsageError                  command-line arguments that do not fit together
    └── RuntimeFailure              the daemon cannot run here (exit status 1)
        ├── StateError              the SQLite state file is unusable (corrupt, foreign, too new)
        └── StartupError            e.g. the listen address is taken

Third-party errors are wrapped where they enter (`raise ConfigError(...) from exc`), so
callers only ever catch this tree. The CLI prints `str(error)` as one line and exits with the
error's `exit_code`.
"""

from __future__ import annotations


class InferwatchError(Exception):
    """Base class; `exit_code` is what the CLI exits with when this reaches it."""

    exit_code = 2


class ConfigError(InferwatchError):
    """An invalid configuration; the message names file, line and key where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class UsageError(InferwatchError):
    """Command-line arguments that are individually valid but not together (exit status 2)."""


class RuntimeFailure(InferwatchError):
    """Not the user's input but the environment: exit status 1, so systemd restarts it."""

    exit_code = 1


class StateError(RuntimeFailure):
    """The state file cannot be used; the daemon refuses to start rather than re-read logs."""


class StartupError(RuntimeFailure):
    """Something the daemon needs at start-up is unavailable (an address in use, …)."""
