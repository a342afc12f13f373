"""Text from users (file names, class names, recipe references) shown safely in Markdown."""

from __future__ import annotations

import re

__all__ = ["md_escape"]

# Characters Markdown (CommonMark plus Streamlit's extensions: $ for maths, :emoji: and :red[...] directives,
# ~ for strike-through, | for tables) reads as syntax wherever they stand.
_ANYWHERE = re.compile(r"([\\`*_\[\]<>$:~|&])")
# Characters that are syntax only at the start of a line: headings, quotes, bullets, setext underlines
# ("---", "==="), ordered lists ("1." / "1)"). Elsewhere they stay as they are, so "mlp-digits" or
# "torch.load(...)" keep their plain Markdown source.
_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))", re.MULTILINE)


def md_escape(text: object) -> str:
    """``text`` as a string whose Markdown rendering shows it exactly as typed.

    >>> md_escape("__main__.EvilNet")
    '\\\\_\\\\_main\\\\_\\\\_.EvilNet'
    >>> md_escape("mlp-digits")
    'mlp-digits'
    """
    escaped = _ANYWHERE.sub(r"\\\1", str(text))

    def line_start(match: re.Match) -> str:
        lead, token = match.group(1), match.group(2)
        if token.isdigit():  # "1." -> "1\." : the digits stay, the list marker after them is escaped
            return lead + token + "\\"
        return lead + "\\" + token

    return _LINE_START.sub(line_start, escaped)
