"""The ``klcourse`` command line (instructor tools)."""


def main(argv=None):
    raise SystemExit("klcourse: the instructor commands are not written yet")
