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
    "ConceptArgumentError",
    "SamplerError",
    "CheckpointError",
    "TrainingDiverged",
]


class ConceptAlgError(Exception):
    """Base class of every error raised by conceptalg."""


class _InText:
    """The fields of an error at a place in expression text (a mixin of the two below).

    ``line`` and ``column`` are 1-based and count code points (``None`` when the expression
    was not given as text); ``message`` is the one-line cause; ``context`` is the offending line
    with a caret under the position; ``str(error)`` is ``line L, column C: message`` followed
    by the context.
    """

    _FIELDS: tuple[str, ...] = ("text", "line", "column", "context")

    def __init__(self, message: str, *, text: str = "", line: int | None = None,
                 column: int | None = None, context: str = "") -> None:
        self.message = message
        self.text = text
        self.line = line
        self.column = column
        self.context = context
        full = message if line is None else f"line {line}, column {column}: {message}"
        if context:
            full += "\n" + context
        super().__init__(full)

    def __reduce__(self):  # keep the keyword-only fields when pickled by multiprocessing
        return (_rebuild_in_text, (type(self), self.message,
                                   {k: getattr(self, k) for k in self._FIELDS}))


def _rebuild_in_text(cls, message, fields):
    return cls(message, **fields)


class ConceptSyntaxError(_InText, ConceptAlgError, ValueError):
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
        super().__init__(message, text=text, line=line, column=column, context=context)


class UnknownConceptError(ConceptAlgError, LookupError):
    """A concept name that the library (or model) does not define, or defines ambiguously."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class CompileError(ConceptAlgError, ValueError):
    """An expression that parses but cannot be turned into an energy (e.g. an unanchored ``~a``)."""


class ConceptArgumentError(_InText, CompileError):
    """A concept written with the wrong arguments: a parametric concept with the wrong number
    of them (or none), an argument outside the range its library declares, or arguments given
    to a concept that takes none. ``argument`` is the 0-based index of the offending argument
    (``None`` when the count is wrong). When the expression came as text, ``line``, ``column``
    and ``context`` (the line with a caret) point at the concept or at that argument; otherwise
    they are ``None`` and empty.

    Example:
        >>> from conceptalg import ConceptLibrary, compose
        >>> lib = ConceptLibrary().add("at", lambda x, a: (x - a).pow(2).sum(-1), arity=2)
        >>> try:
        ...     compose("red & at(0.3)", lib.merge({"red": abs}))
        ... except ConceptArgumentError as e:
        ...     print(e)
        line 1, column 7: `at` takes 2 arguments, got 1 in `at(0.3)`; write e.g. `at(0.5, 0.5)`
          red & at(0.3)
                ^
    """

    _FIELDS = _InText._FIELDS + ("argument",)

    def __init__(self, message: str, *, argument: int | None = None, **where) -> None:
        super().__init__(message, **where)
        self.argument = argument


class SamplerError(ConceptAlgError, RuntimeError):
    """A sampler that cannot go on: non-finite energies or gradients, or bad settings."""


class CheckpointError(ConceptAlgError, ValueError):
    """A checkpoint that is missing, truncated, altered or of an unknown version."""


class TrainingDiverged(ConceptAlgError, RuntimeError):
    """Training stopped because energies or the loss went non-finite or exploded; the model
    holds the weights of the last good step (``trainer.model``)."""
