"""Line numbers for TOML values: tomllib gives none, but `turnstile check` prints FILE:LINE.

`PositionIndex(text)` scans an already-valid TOML document once and records the line of
every table, array element and key. `line_of(path)` maps a path like
``("pipelines", 2, "steps", 1, "ttl_s")`` to the line of the deepest part that exists, so
a missing key points at the table that lacks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_VALUE_END = re.compile(r"[,\]}\n#]")


@attrs.define
class Node:
    line: int
    children: dict[str, Node] | list[Node] | None = None


class PositionIndex:
    """Positions of everything in a TOML document (which tomllib has already accepted)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self.root = Node(1, {})
        self._scan()

    # --- lookup ---------------------------------------------------------------------------
    def line_of(self, path: Sequence[str | int]) -> int:
        node = self.root
        for part in path:
            child = _child_at(node.children, part)
            if child is None:
                break
            node = child
        return node.line

    # --- scanning -------------------------------------------------------------------------
    @property
    def _line(self) -> int:
        return self._text.count("\n", 0, self._pos) + 1

    def _peek(self, n: int = 1) -> str:
        return self._text[self._pos : self._pos + n]

    def _skip_space(self, newlines: bool) -> None:
        while self._pos < len(self._text):
            ch = self._text[self._pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._pos += 1
            elif ch == "#":
                end = self._text.find("\n", self._pos)
                self._pos = len(self._text) if end < 0 else end
            else:
                return

    def _scan(self) -> None:
        table = self.root
        while True:
            self._skip_space(newlines=True)
            if self._pos >= len(self._text):
                return
            if self._peek(2) == "[[":
                self._pos += 2
                table = self._open_table(self._read_key_path("]]"), array=True)
            elif self._peek() == "[":
                self._pos += 1
                table = self._open_table(self._read_key_path("]"), array=False)
            else:
                self._read_key_value(table, "\n")

    def _open_table(self, keys: list[str], *, array: bool) -> Node:
        line = self._line
        node = self.root
        for key in keys[:-1]:
            node = self._child(node, key, line)
        assert isinstance(node.children, dict)
        if array:
            items = node.children.setdefault(keys[-1], Node(line, []))
            assert isinstance(items.children, list)
            table = Node(line, {})
            items.children.append(table)
            return table
        return self._child(node, keys[-1], line)

    @staticmethod
    def _child(node: Node, key: str, line: int) -> Node:
        """The table under `key`, descending into the last element of an array of tables."""
        assert isinstance(node.children, dict)
        child = node.children.setdefault(key, Node(line, {}))
        if isinstance(child.children, list) and child.children:
            return child.children[-1]
        if child.children is None:
            child.children = {}
        return child

    def _read_key_path(self, closing: str) -> list[str]:
        keys = []
        while True:
            self._skip_space(newlines=False)
            keys.append(self._read_key())
            self._skip_space(newlines=False)
            if self._peek(len(closing)) == closing:
                self._pos += len(closing)
                return keys
            self._pos += 1  # the dot between key parts

    def _read_key(self) -> str:
        quote = self._peek()
        if quote in ('"', "'"):
            end = self._text.index(quote, self._pos + 1)
            key = self._text[self._pos + 1 : end]
            self._pos = end + 1
            return key
        match = _BARE_KEY.match(self._text, self._pos)
        assert match is not None, f"not a key at line {self._line}"
        self._pos = match.end()
        return match.group()

    def _read_key_value(self, table: Node, _terminator: str) -> None:
        line = self._line
        keys = self._read_key_path("=")
        node = table
        for key in keys[:-1]:
            node = self._child(node, key, line)
        self._skip_space(newlines=False)
        value = self._read_value()
        value.line = line if value.children is None else value.line
        assert isinstance(node.children, dict)
        node.children[keys[-1]] = value

    def _read_value(self) -> Node:
        line = self._line
        head = self._peek()
        if head == "[":
            self._pos += 1
            items: list[Node] = []
            while True:
                self._skip_space(newlines=True)
                if self._peek() == "]":
                    self._pos += 1
                    return Node(line, items)
                items.append(self._read_value())
                self._skip_space(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
        if head == "{":
            self._pos += 1
            table = Node(line, {})
            while True:
                self._skip_space(newlines=True)
                if self._peek() == "}":
                    self._pos += 1
                    return table
                self._read_key_value(table, "}")
                self._skip_space(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
        self._skip_scalar()
        return Node(line)

    def _skip_scalar(self) -> None:
        for quote in ('"""', "'''", '"', "'"):
            if self._peek(len(quote)) == quote:
                self._pos = self._string_end(quote)
                return
        match = _VALUE_END.search(self._text, self._pos)
        self._pos = len(self._text) if match is None else match.start()

    def _string_end(self, quote: str) -> int:
        pos = self._pos + len(quote)
        while True:
            end = self._text.index(quote, pos)
            if quote.startswith('"') and _escaped(self._text, end):
                pos = end + 1
                continue
            end += len(quote)
            # A multi-line string may end with up to two extra quotes of its own.
            while len(quote) == 3 and self._text[end : end + 1] == quote[0]:
                end += 1
            return end


def _child_at(children: dict[str, Node] | list[Node] | None, part: str | int) -> Node | None:
    if isinstance(children, list) and isinstance(part, int):
        return children[part] if 0 <= part < len(children) else None
    if isinstance(children, dict) and isinstance(part, str):
        return children.get(part)
    return None


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index > 0 and text[index - 1] == "\\":
        backslashes += 1
        index -= 1
    return backslashes % 2 == 1
