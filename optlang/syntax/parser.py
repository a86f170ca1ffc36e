"""Text to AST: the LALR parser, its newline postlexer, and human syntax errors.

`parse(text, filename)` is the entry point. Lark's exceptions never escape:
every syntax error becomes an `OptError` that names what was found, what was
expected and, where a common mistake is recognisable, what to write instead.
"""
from __future__ import annotations

import difflib
import functools
import importlib.resources
from typing import Iterable, Iterator

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from optlang.errors import OptError, Source, Span
from optlang.syntax import ast
from optlang.syntax.transform import to_program

__all__ = ["parse", "KEYWORDS"]

# Terminal name -> keyword, as declared in grammar/opt.lark.
KEYWORDS = {
    "PROBLEM": "problem", "DIM": "dim", "PARAM": "param", "VAR": "var", "LET": "let",
    "MINIMIZE": "minimize", "MAXIMIZE": "maximize", "SUBJECT": "subject", "TO": "to",
    "ROOT": "root", "FIXED_POINT": "fixed_point", "OPTIONS": "options", "IN": "in", "PSD": "psd",
}
# The longest source compiled: past this, parsing alone takes seconds, and a real problem this long
# is one written out term by term (every later pass is bounded by pipeline.MAX_NODES).
MAX_SOURCE_CHARS = 200_000
_OPEN = {"LPAR", "LSQB"}
_CLOSE = {"RPAR", "RSQB"}


def parse(text: str, filename: str = "<string>") -> ast.Program:
    """Parse `.opt` source text into an `ast.Program`, raising `OptError` on any mistake."""
    source = Source(filename, text)
    if len(text) > MAX_SOURCE_CHARS:
        line = text.count("\n", 0, MAX_SOURCE_CHARS) + 1
        col = MAX_SOURCE_CHARS - (text.rfind("\n", 0, MAX_SOURCE_CHARS) + 1) + 1
        raise OptError(f"the source is {len(text)} characters long, more than optlang compiles "
                       f"(at most {MAX_SOURCE_CHARS}); the limit is reached here",
                       Span(line, col, line, col + 1, source),
                       "use param arrays and vector operations instead of one term per entry")
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        # `from None`: the user gets our message, not Lark's traceback.
        raise _syntax_error(err, source) from None
    return to_program(tree, source)


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    """Build the parser once; later calls share it (LALR parsing keeps no state in it)."""
    grammar = importlib.resources.files("optlang.grammar").joinpath("opt.lark").read_text()
    # The basic lexer (not the contextual one) so that keywords are retyped in
    # every parser state: `param var` must fail, not declare a param named var.
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True,
                maybe_placeholders=True, postlex=NewlinePostLexer())


class NewlinePostLexer:
    """Turn raw newlines into statement ends.

    A newline inside `()` or `[]` is dropped, so a line that ends inside
    brackets continues; blank and comment-only lines give no token; every
    statement end sits right after the line's last token (so an error there
    points at the line, not past a trailing comment); the last line gets a
    statement end, with an empty value, even when the file has no final newline.
    """

    always_accept: tuple[str, ...] = ()

    def process(self, stream: Iterable[Token]) -> Iterator[Token]:
        """Yield the tokens of `stream` with newlines filtered as described above."""
        depth = 0
        last = None  # the last token yielded that is not a newline
        pending = False  # a newline was seen after `last`
        for tok in stream:
            if tok.type == "_NL":
                pending = pending or (depth == 0 and last is not None)
                continue
            if pending:
                yield _newline_after(last, "\n")
                pending = False
            if tok.type in _OPEN:
                depth += 1
            elif tok.type in _CLOSE:
                depth = max(0, depth - 1)
            last = tok
            yield tok
        # Inside an open bracket the parser must see the end of input itself,
        # so that it reports the missing closing bracket.
        if last is not None and depth == 0:
            yield _newline_after(last, "")


def _newline_after(tok: Token, value: str) -> Token:
    """A statement-end token placed just after `tok`; value "" marks the end of input."""
    return Token("_NL", value, start_pos=tok.end_pos, line=tok.end_line, column=tok.end_column,
                 end_line=tok.end_line, end_column=tok.end_column + 1, end_pos=tok.end_pos)


# ---- error messages --------------------------------------------------------------

_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "AT": "'@'", "CARET": "'^'",
    "QUOTE": "\"'\"", "LE": "'<='", "GE": "'>='", "LT": "'<'", "GT": "'>'", "EQEQ": "'=='",
    "ASSIGN": "'='", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "_NL": "the end of the line", "$END": "the end of input",
}
# Groups of terminals named by one phrase, tried in this order: a group is
# used when its trigger terminals are all expected, and absorbs `covers`.
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "CARET", "QUOTE"}
_GROUPS = (
    ("an operator", {"STAR", "AT"}, _OPERATORS | {"LPAR", "LSQB"}),
    ("a comparison ('<=', '>=' or '==')", {"LE", "GE", "EQEQ"}, {"LE", "GE", "EQEQ"}),
    ("a declaration, a statement or a constraint", {"PROBLEM", "PARAM", "MINIMIZE"},
     set(KEYWORDS) - {"TO", "IN", "PSD"} | {"NAME", "NUMBER", "LPAR", "MINUS", "PLUS", "$END"}),
    ("an expression", {"NUMBER", "LPAR"}, {"NAME", "NUMBER", "LPAR", "MINUS", "PLUS"}),
    ("a number", {"NUMBER", "MINUS"}, {"NUMBER", "MINUS"}),
)
_LAST = ("the end of the line", "the end of input")
NO_IMPLICIT_MUL = "there is no implicit multiplication: write dot(c, z) or c' @ z"


def describe_expected(expected: Iterable[str]) -> str:
    """Say in words what the parser expected, e.g. "an operator or the end of the line"."""
    rest = set(expected)
    phrases = []
    for phrase, trigger, covers in _GROUPS:
        if trigger <= rest:
            phrases.append(phrase)
            rest -= covers
    words = sorted(f"'{KEYWORDS[t]}'" if t in KEYWORDS else _WORDS.get(t, t) for t in rest)
    phrases += [w for w in words if w not in _LAST] + [w for w in _LAST if w in words]
    if len(phrases) <= 1:
        return phrases[0] if phrases else "something else"
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def describe_found(tok: Token) -> str:
    """Say in words what token the parser got, e.g. "name 'z'" or "end of line"."""
    if tok.type == "$END" or (tok.type == "_NL" and tok.value == ""):
        return "end of input"
    if tok.type == "_NL":
        return "end of line"
    if tok.type in KEYWORDS:
        return f"keyword '{tok.value}'"
    kind = {"NAME": "name ", "NUMBER": "number ", "STRING": "string "}.get(tok.type, "")
    return kind + (tok.value if tok.type == "STRING" else repr(str(tok.value)))


def _syntax_error(err: UnexpectedInput, source: Source) -> OptError:
    """Translate one of Lark's parse exceptions into an `OptError`."""
    if isinstance(err, UnexpectedCharacters):
        return _bad_character(err, source)
    if isinstance(err, UnexpectedToken):
        # `accepts` replays the parser to list exactly the terminals it could
        # take here; `expected` is the LALR table's looser, merged-state set.
        return _bad_token(err.token, err.accepts or err.expected, source)
    if isinstance(err, UnexpectedEOF):  # only Earley raises it; kept for safety
        return _bad_token(Token("$END", ""), err.expected, source)
    return OptError(str(err), None)


def _bad_character(err: UnexpectedCharacters, source: Source) -> OptError:
    """A character that starts no token: `$`, `!=`, an unterminated string, ..."""
    span = Span(err.line, err.column, err.line, err.column + 1, source)
    rest = source.text[err.pos_in_stream:]
    if rest.startswith("!="):
        return OptError("unexpected '!='", Span(err.line, err.column, err.line, err.column + 2, source),
                        "'!=' is not a constraint; constraints use '<=', '>=' or '=='")
    if err.char == '"':
        return OptError("unterminated string", span, "close the string with '\"' on the same line")
    if err.char == ".":
        return OptError("unexpected character '.'", span,
                        "'.' appears only in numbers such as 0.5; names have no attributes "
                        "(transpose with x' or transpose(x))")
    if err.char == ";":
        return OptError("unexpected character ';'", span,
                        "a statement ends at the end of its line; remove the ';'")
    return OptError(f"unexpected character {err.char!r}", span,
                    "names use letters, digits and '_'; operators are + - * / ^ @ and ' (transpose)")


def _bad_token(tok: Token, expected: set[str], source: Source) -> OptError:
    """A token the grammar does not allow here."""
    expected_words = describe_expected(expected)
    found = describe_found(tok)
    span = _token_span(tok, source)
    if tok.type in KEYWORDS and "NAME" in expected:
        return OptError(f"expected {expected_words} but found the keyword '{tok.value}'", span,
                        f"'{tok.value}' is a reserved word and cannot be used as a name; choose another name")
    hint = _hint(tok, expected, source)
    return OptError(f"unexpected {found}; expected {expected_words}", span, hint)


def _token_span(tok: Token, source: Source) -> Span:
    """Where an error at `tok` points; the end of input points just past the last token."""
    if tok.type == "$END":
        last = _tokens_before(source.text, len(source.text))[-1:]
        line, col = (last[0].end_line, last[0].end_column) if last else (1, 1)
        return Span(line, col, line, col + 1, source)
    end_col = tok.end_column if tok.end_line == tok.line else tok.column + 1
    return Span(tok.line, tok.column, tok.line, max(end_col, tok.column + 1), source)


def _tokens_before(text: str, pos: int) -> list[Token]:
    """The tokens of `text`, newlines left out, that start before `pos`."""
    out = []
    try:
        for tok in _lark().lex(text):
            if tok.start_pos >= pos:
                break
            if tok.type != "_NL":
                out.append(tok)
    except UnexpectedInput:  # only hints use this; a bad character later on is not our concern
        pass
    return out


def _hint(tok: Token, expected: set[str], source: Source) -> str:
    """The first applicable "what to do" line for an unexpected token, or ""."""
    pos = len(source.text) if tok.type == "$END" or tok.start_pos is None else tok.start_pos
    before = _tokens_before(source.text, pos)
    line = tok.line if tok.type != "$END" else (before[-1].end_line if before else 1)
    line_tokens = [t for t in before if t.line == line]
    for rule in _HINTS:
        text = rule(tok, expected, before, line_tokens, source)
        if text:
            return text
    return ""


def _hint_unclosed(tok, expected, before, line_tokens, source) -> str:
    """A bracket opened on an earlier line and never closed swallowed the newlines."""
    stack = []
    for t in before:
        if t.type in _OPEN:
            stack.append(t)
        elif t.type in _CLOSE and stack:
            stack.pop()
    at_end = tok.type == "$END"
    if stack and (at_end or stack[-1].line < tok.line):
        t = stack[-1]
        return f"the '{t.value}' at {t.line}:{t.column} is never closed"
    return ""


def _hint_misspelt(tok, expected, before, line_tokens, source) -> str:
    """`minimise x`, `subjet to`: a line that starts with a near-miss of a keyword."""
    # Only right after the first word: `minimise x`, not any line starting with `root1`.
    if len(line_tokens) != 1 or line_tokens[0].type != "NAME":
        return ""
    first = line_tokens[0]
    close = difflib.get_close_matches(first.value, sorted(KEYWORDS.values()), n=1, cutoff=0.75)
    return f"'{first.value}' is not a keyword; did you mean '{close[0]}'?" if close else ""


def _hint_operator_line(tok, expected, before, line_tokens, source) -> str:
    """A line starting with an operator does not continue the previous line."""
    start = line_tokens[0] if line_tokens else tok
    binary_only = start.type in ("STAR", "SLASH", "AT", "CARET")
    # `+ b` and `- b` parse as a unary expression; they fail only at the line's end.
    dangling_sign = start.type in ("PLUS", "MINUS") and tok.type in ("_NL", "$END") and "LE" in expected
    if start.line > 1 and (binary_only or dangling_sign):
        return ("a line that starts with an operator does not continue the previous one; "
                "wrap a long expression in parentheses to break it across lines")
    return ""


def _hint_token(tok, expected, before, line_tokens, source) -> str:
    """Hints that depend only on the unexpected token and what was expected."""
    first = line_tokens[0].type if line_tokens else None
    if tok.type == "ASSIGN" and "EQEQ" in expected:
        return "use '==' for an equality constraint"
    if tok.type in ("LT", "GT") and "LE" in expected:
        return "strict inequalities are not supported; use '<=' or '>='"
    if first == "VAR" and tok.type in ("LT", "GT", "LE", "GE", "IN", "PSD"):
        return "a var takes no attributes; put bounds on it under 'subject to'"
    if tok.type in ("NAME", "NUMBER", "LPAR") and "STAR" in expected:
        return NO_IMPLICIT_MUL
    if tok.type == "STAR" and "NUMBER" in expected and before and before[-1].type == "STAR":
        return "use '^' for powers: x^2"
    if tok.type == "SUBJECT":
        return "put 'subject to' on its own line after the objective"
    if tok.type == "QUOTE" and "STRING" in expected:
        return "strings use double quotes, e.g. \"newton\""
    return ""


_HINTS = (_hint_unclosed, _hint_misspelt, _hint_operator_line, _hint_token)
