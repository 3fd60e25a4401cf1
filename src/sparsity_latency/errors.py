"""The failure the command line reports as bad input (exit code 2); any other failure is exit code 1."""


class InputError(Exception):
    """Bad input from the user: a missing or corrupt file, a bad config value, a wrong schema.

    The command line prints the message as one line and exits with code 2.
    """


class NonFiniteLossError(Exception):
    """The training loss became NaN or infinite: the run failed (exit code 1), its last checkpoint kept."""
