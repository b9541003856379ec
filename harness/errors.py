"""Errors the command line turns into one clear line and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: the message names the bad value and the valid choices."""


def choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> UsageError:
    return UsageError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, valid))}")
