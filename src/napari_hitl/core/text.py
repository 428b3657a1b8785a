"""Showing user-supplied text (class and image names, file names) safely: a light module the
command line imports before anything heavy."""

from __future__ import annotations

import unicodedata


def terminal_safe(text: object) -> str:
    """``text`` with control and format characters escaped, safe to print on a terminal.

    ANSI escape sequences, carriage returns, newlines, tabs and invisible bidirectional
    overrides in a class name (or any user-supplied text) become visible ``\\xNN`` /
    ``\\uNNNN`` escapes, so printing them cannot move the cursor, recolour the terminal or
    split one message over several lines.

    Parameters
    ----------
    text
        Any text (other objects are converted with ``str``).

    Returns
    -------
    str
        The text with every character of Unicode category ``Cc``, ``Cf``, ``Cs``, ``Co``,
        ``Cn``, ``Zl`` or ``Zp`` escaped; everything else unchanged.
    """
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch == " " or unicodedata.category(ch) not in _UNSAFE:
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
