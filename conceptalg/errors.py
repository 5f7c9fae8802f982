"""The error classes of conceptalg.

Every error the library raises on purpose derives from :class:`ConceptAlgError`, and each also
derives from the built-in exception a Python user would expect (``ValueError`` for bad text or
bad files, ``LookupError`` for unknown names, ``RuntimeError`` for a sampler that went wrong),
so ``except ValueError`` keeps working in code that knows nothing of this library.
"""

from __future__ import annotations

__all__ = [
    "ConceptAlgError",
    "ConceptSyntaxError",
    "UnknownConceptError",
    "CompileError",
    "SamplerError",
    "CheckpointError",
]


class ConceptAlgError(Exception):
    """Base class of every error raised by conceptalg."""


class ConceptSyntaxError(ConceptAlgError, ValueError):
    """A concept expression that does not parse.

    ``line`` and ``column`` are 1-based and count code points; ``message`` is the one-line cause
    (what was found, what was expected, a hint); ``str(error)`` adds the offending line with a
    caret under the position.

    Example:
        >>> from conceptalg import parse
        >>> try:
        ...     parse("a & or")
        ... except ConceptSyntaxError as e:
        ...     (e.line, e.column)
        (1, 5)
    """

    def __init__(self, message: str, *, text: str = "", line: int = 1, column: int = 1,
                 context: str = "") -> None:
        self.message = message
        self.text = text
        self.line = line
        self.column = column
        self.context = context
        full = f"line {line}, column {column}: {message}"
        if context:
            full += "\n" + context
        super().__init__(full)

    def __reduce__(self):  # keep the keyword-only fields when pickled by multiprocessing
        return (_rebuild_syntax_error, (self.message, self.text, self.line, self.column,
                                        self.context))


def _rebuild_syntax_error(message, text, line, column, context):
    return ConceptSyntaxError(message, text=text, line=line, column=column, context=context)


class UnknownConceptError(ConceptAlgError, LookupError):
    """A concept name that the library (or model) does not define, or defines ambiguously."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class CompileError(ConceptAlgError, ValueError):
    """An expression that parses but cannot be turned into an energy (e.g. an unanchored ``~a``)."""


class SamplerError(ConceptAlgError, RuntimeError):
    """A sampler that cannot go on: non-finite energies or gradients, or bad settings."""


class CheckpointError(ConceptAlgError, ValueError):
    """A checkpoint that is missing, truncated, altered or of an unknown version."""
