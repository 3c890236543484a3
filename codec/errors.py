"""Typed errors raised by the codec core.

Every error a user can provoke with bad input (a file, a bitstream, a weights file or a
parameter) is one of these, with a message that names the bad value and, where there is one,
the valid choices. Callers (CLI, GUI) show ``str(err)`` as is.
"""

__all__ = ["LicError", "ImageError", "BitstreamError", "PictureMismatchError", "WeightsError",
           "ParameterError"]


class LicError(Exception):
    """Base class of all errors lic-studio reports to a user."""


class ImageError(LicError):
    """An input image cannot be read or is outside what the codecs accept.

    Attributes:
        source: the file name (or ``"<bytes>"``) the image came from.
        reason: what is wrong with it.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class BitstreamError(LicError):
    """A ``.lic`` bitstream is malformed, corrupt, or needs something this install lacks."""


class PictureMismatchError(BitstreamError):
    """A well-formed file decoded to another picture than the encoder's (its picture check).

    Attributes:
        result: the picture as decoded here (a :class:`codec.base.CodecResult`), for a caller
            that chooses to keep it anyway.
    """

    def __init__(self, message: str, result):
        self.result = result
        super().__init__(message)


class WeightsError(LicError):
    """A weights file is missing, tampered with, or does not fit the model asked for."""


class ParameterError(LicError, ValueError):
    """A codec parameter is unknown or outside its range."""
