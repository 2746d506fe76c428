"""The one exception type for bad input: the CLI prints its message on one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a config key). The message names the thing and what was expected."""

    exit_code = 2
