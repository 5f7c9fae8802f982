"""Tools for the people who work on conceptalg itself (not part of the public API):
:mod:`.layout` prints the package's import circles, wrong-way arrows, lines per package and
longest functions (``python -m conceptalg.devtools.layout``)."""
