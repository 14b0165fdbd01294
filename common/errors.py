"""The one error type that preprocessing raises for bad input: printed as a single line by the runner."""


class PreprocessError(RuntimeError):
    """Bad input or a failed step. The message is one line that names the file and what is wrong."""
