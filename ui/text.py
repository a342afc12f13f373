"""Text from users (file names, class names, recipe references) shown safely in Markdown."""

from __future__ import annotations

import re

__all__ = ["md_escape"]

# Every character Markdown (CommonMark plus Streamlit's extensions: $ for maths, : for emoji,
# ~ for strike-through) could read as syntax.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|$:~>])")


def md_escape(text: object) -> str:
    """``text`` as a string whose Markdown rendering shows it exactly as typed.

    >>> md_escape("__main__.EvilNet")
    '\\\\_\\\\_main\\\\_\\\\_\\\\.EvilNet'
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
