"""A subset of BigQuery Standard SQL, parsed and translated into SQLite.

Supported: one SELECT (optionally nested in FROM subqueries) over one table or subquery;
column lists, `*`, aliases; WHERE with AND/OR/NOT, comparisons, IS [NOT] NULL, [NOT] IN,
[NOT] BETWEEN, [NOT] LIKE; GROUP BY/HAVING; ORDER BY ASC|DESC [NULLS FIRST|LAST]; LIMIT/OFFSET;
COUNT/MIN/MAX/SUM/AVG; ROW_NUMBER/RANK/DENSE_RANK and aggregates OVER (PARTITION BY ...
ORDER BY ...); QUALIFY (as a wrapping subquery); CURRENT_TIMESTAMP(), TIMESTAMP_ADD/SUB with
INTERVAL n MICROSECOND..DAY, TIMESTAMP_TRUNC, TIMESTAMP 'literal', UNIX_MICROS and friends;
named @parameters. Everything else is refused with a 400 invalidQuery error.

Values are stored the way bqtypes.py describes (TIMESTAMP = integer microseconds), so SQLite's
comparisons and its BINARY collation (byte order of UTF-8 = code point order, as BigQuery)
give BigQuery's results. NULL ordering is emitted explicitly (BigQuery: NULLS FIRST on ASC,
NULLS LAST on DESC).
"""
import re

from . import bqtypes
from .errors import invalid_query

# --------------------------------------------------------------------------------------------
# Lexer

RESERVED = set("""ALL AND ANY ARRAY AS ASC ASSERT_ROWS_MODIFIED AT BETWEEN BY CASE CAST COLLATE
CONTAINS CREATE CROSS CUBE CURRENT DEFAULT DEFINE DESC DISTINCT ELSE END ENUM ESCAPE EXCEPT
EXCLUDE EXISTS EXTRACT FALSE FETCH FOLLOWING FOR FROM FULL GROUP GROUPING GROUPS HASH HAVING IF
IGNORE IN INNER INTERSECT INTERVAL INTO IS JOIN LATERAL LEFT LIKE LIMIT LOOKUP MERGE NATURAL NEW
NO NOT NULL NULLS OF ON OR ORDER OUTER OVER PARTITION PRECEDING PROTO QUALIFY RANGE RECURSIVE
RESPECT RIGHT ROLLUP ROWS SELECT SET SOME STRUCT TABLESAMPLE THEN TO TREAT TRUE UNBOUNDED UNION
UNNEST USING WHEN WHERE WINDOW WITH WITHIN""".split())

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<hex>0[xX][0-9a-fA-F]+)
  | (?P<int>\d+)
  | (?P<prefixed>[rRbB]{1,2}(?='|"))
  | (?P<string>'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<quoted>`(?:\\.|[^`\\])*`)
  | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<param>@@?[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op><=|>=|<>|!=|\|\||<<|>>|[-+*/%=<>(),.;?\[\]~&|^!:@{}])
""", re.X | re.S)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "`": "`",
            "a": "\a", "b": "\b", "f": "\f", "v": "\v", "?": "?"}


class Tok:
    __slots__ = ("kind", "value", "text", "line", "col")

    def __init__(self, kind, value, text, line, col):
        self.kind, self.value, self.text, self.line, self.col = kind, value, text, line, col

    def is_kw(self, *words):
        return self.kind == "kw" and self.value in words

    def is_op(self, *ops):
        return self.kind == "op" and self.value in ops

    def describe(self):
        if self.kind == "kw":
            return "keyword %s" % self.value
        if self.kind == "ident":
            return 'identifier "%s"' % self.value
        if self.kind == "int":
            return 'integer literal "%s"' % self.text
        if self.kind == "float":
            return 'floating point literal "%s"' % self.text
        if self.kind == "string":
            return "string literal %s" % self.text
        if self.kind == "param":
            return 'query parameter "%s"' % self.text
        if self.kind == "eof":
            return "end of input"
        return '"%s"' % self.text

    @property
    def pos(self):
        return (self.line, self.col)


def _unescape(body, pos):
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt in "uU":
                n = 4 if nxt == "u" else 8
                hexs = body[i + 2:i + 2 + n]
                try:
                    out.append(chr(int(hexs, 16)))
                except ValueError:
                    raise SqlError("Syntax error: Illegal escape sequence: \\%s" % nxt, pos)
                i += 2 + n
                continue
            raise SqlError("Syntax error: Illegal escape sequence: \\%s" % nxt, pos)
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text):
    toks, pos, line, line_start = [], 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if not m:
            ch = text[pos]
            if ch in "'\"":
                raise SqlError("Syntax error: Unclosed string literal", (line, col))
            if ch == "`":
                raise SqlError("Syntax error: Unclosed identifier literal", (line, col))
            raise SqlError('Syntax error: Illegal input character "%s"' % ch, (line, col))
        kind = m.lastgroup
        tok_text = m.group()
        if kind == "prefixed":
            raise SqlError("Syntax error: raw and bytes literals are not supported by the "
                           "datos GCP emulator", (line, col))
        if kind not in ("ws", "comment"):
            if kind == "ident":
                up = tok_text.upper()
                if up in RESERVED:
                    toks.append(Tok("kw", up, tok_text, line, col))
                else:
                    toks.append(Tok("ident", tok_text, tok_text, line, col))
            elif kind == "quoted":
                name = _unescape(tok_text[1:-1], (line, col))
                if not name:
                    raise SqlError("Syntax error: Invalid empty identifier", (line, col))
                toks.append(Tok("qident", name, tok_text, line, col))
            elif kind == "string":
                q = 3 if tok_text[:3] in ("'''", '"""') else 1
                toks.append(Tok("string", _unescape(tok_text[q:-q], (line, col)), tok_text,
                                line, col))
            elif kind == "int":
                toks.append(Tok("int", int(tok_text), tok_text, line, col))
            elif kind == "hex":
                toks.append(Tok("int", int(tok_text, 16), tok_text, line, col))
            elif kind == "float":
                toks.append(Tok("float", float(tok_text), tok_text, line, col))
            elif kind == "param":
                toks.append(Tok("param", tok_text[1:], tok_text, line, col))
            else:
                toks.append(Tok("op", tok_text, tok_text, line, col))
        nl = tok_text.count("\n")
        if nl:
            line += nl
            line_start = pos + tok_text.rfind("\n") + 1
        pos = m.end()
    col = pos - line_start + 1
    toks.append(Tok("eof", None, "", line, col))
    return toks


class SqlError(Exception):
    def __init__(self, message, pos=None):
        if pos is not None:
            message = "%s at [%d:%d]" % (message, pos[0], pos[1])
        super().__init__(message)
        self.message = message


def unsupported(what, pos):
    return SqlError("%s is not supported by the datos GCP emulator" % what, pos)


# --------------------------------------------------------------------------------------------
# AST

class Node:
    __slots__ = ("pos",)


class Select(Node):
    __slots__ = ("distinct", "items", "from_", "where", "group_by", "having", "qualify",
                 "order_by", "limit", "offset")


class SelectItem(Node):
    __slots__ = ("expr", "alias", "star", "star_qualifier")


class FromTable(Node):
    __slots__ = ("parts", "alias")


class FromSub(Node):
    __slots__ = ("select", "alias")


class OrderItem(Node):
    __slots__ = ("expr", "desc", "nulls")


class Lit(Node):
    __slots__ = ("std", "value", "text")


class Param(Node):
    __slots__ = ("name",)


class Column(Node):
    __slots__ = ("parts",)


class Unary(Node):
    __slots__ = ("op", "arg")


class Binary(Node):
    __slots__ = ("op", "left", "right")


class IsNull(Node):
    __slots__ = ("arg", "negated", "what")


class InList(Node):
    __slots__ = ("arg", "items", "negated")


class Between(Node):
    __slots__ = ("arg", "low", "high", "negated")


class Like(Node):
    __slots__ = ("arg", "pattern", "negated")


class Func(Node):
    __slots__ = ("name", "args", "distinct", "star", "over")


class Interval(Node):
    __slots__ = ("value", "unit")


class Over(Node):
    __slots__ = ("partition", "order")


def _node(cls, pos, **kw):
    n = cls.__new__(cls)
    n.pos = pos
    for k in cls.__slots__:
        setattr(n, k, kw.get(k))
    return n


# --------------------------------------------------------------------------------------------
# Parser

_UNSUPPORTED_STARTS = {"WITH": "WITH", "INSERT": "DML", "UPDATE": "DML", "DELETE": "DML",
                       "MERGE": "DML", "CREATE": "DDL", "DROP": "DDL", "ALTER": "DDL",
                       "DECLARE": "Scripting", "BEGIN": "Scripting", "CALL": "CALL",
                       "EXPORT": "EXPORT DATA", "TRUNCATE": "DML"}


class Parser:
    def __init__(self, text):
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self):
        return self.toks[self.i]

    def peek(self, k=1):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self):
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def unexpected(self, tok=None):
        tok = tok or self.tok
        if tok.kind == "eof":
            return SqlError("Syntax error: Unexpected end of script", tok.pos)
        return SqlError("Syntax error: Unexpected %s" % tok.describe(), tok.pos)

    def expected(self, what):
        return SqlError("Syntax error: Expected %s but got %s" % (what, self.tok.describe()),
                        self.tok.pos)

    def expect_op(self, op):
        if not self.tok.is_op(op):
            raise self.expected('"%s"' % op)
        return self.advance()

    def expect_kw(self, kw):
        if not self.tok.is_kw(kw):
            raise self.expected("keyword %s" % kw)
        return self.advance()

    def parse_statement(self):
        t = self.tok
        if t.kind == "ident" and t.value.upper() in _UNSUPPORTED_STARTS:
            raise unsupported("%s statement" % _UNSUPPORTED_STARTS[t.value.upper()], t.pos)
        if t.is_kw("WITH", "CREATE", "MERGE"):
            raise unsupported(_UNSUPPORTED_STARTS.get(t.value, t.value), t.pos)
        q = self.parse_query()
        if self.tok.is_op(";"):
            self.advance()
        if self.tok.kind != "eof":
            if self.tok.is_kw("UNION", "INTERSECT", "EXCEPT"):
                raise unsupported("Set operation %s" % self.tok.value, self.tok.pos)
            raise self.expected("end of input")
        return q

    def parse_query(self):
        if self.tok.is_op("("):
            self.advance()
            q = self.parse_query()
            self.expect_op(")")
            if self.tok.is_kw("ORDER", "LIMIT"):
                raise unsupported("ORDER BY or LIMIT after a parenthesized query", self.tok.pos)
            return q
        if not self.tok.is_kw("SELECT"):
            raise self.unexpected()
        return self.parse_select()

    def parse_select(self):
        start = self.expect_kw("SELECT")
        sel = _node(Select, start.pos, items=[], group_by=[], order_by=[])
        if self.tok.is_kw("AS"):
            raise unsupported("SELECT AS STRUCT/VALUE", self.tok.pos)
        if self.tok.is_kw("DISTINCT"):
            self.advance()
            sel.distinct = True
        elif self.tok.is_kw("ALL"):
            self.advance()
        while True:
            sel.items.append(self.parse_select_item())
            if not self.tok.is_op(","):
                break
            self.advance()
            if self.tok.is_kw("FROM") or self.tok.kind == "eof":
                break  # BigQuery accepts a trailing comma in the select list
        if self.tok.is_kw("FROM"):
            self.advance()
            sel.from_ = self.parse_from_item()
            if self.tok.is_op(","):
                raise unsupported("Comma join", self.tok.pos)
            if self.tok.is_kw("JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL"):
                raise unsupported("JOIN", self.tok.pos)
            if self.tok.is_kw("TABLESAMPLE"):
                raise unsupported("TABLESAMPLE", self.tok.pos)
        if self.tok.is_kw("WHERE"):
            self.advance()
            sel.where = self.parse_expr()
        if self.tok.is_kw("GROUP"):
            self.advance()
            self.expect_kw("BY")
            if self.tok.is_kw("ROLLUP", "CUBE", "GROUPING"):
                raise unsupported("GROUP BY %s" % self.tok.value, self.tok.pos)
            while True:
                sel.group_by.append(self.parse_expr())
                if not self.tok.is_op(","):
                    break
                self.advance()
        if self.tok.is_kw("HAVING"):
            self.advance()
            sel.having = self.parse_expr()
        if self.tok.is_kw("QUALIFY"):
            q = self.advance()
            sel.qualify = self.parse_expr()
            sel.qualify.pos = sel.qualify.pos or q.pos
        if self.tok.is_kw("WINDOW"):
            raise unsupported("WINDOW clause", self.tok.pos)
        if self.tok.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            sel.order_by = self.parse_order_list()
        if self.tok.is_kw("LIMIT"):
            self.advance()
            sel.limit = self.parse_limit_value()
            if self.tok.is_kw("OFFSET") or (self.tok.kind == "ident"
                                            and self.tok.value.upper() == "OFFSET"):
                self.advance()
                sel.offset = self.parse_limit_value()
        return sel

    def parse_limit_value(self):
        t = self.tok
        if t.kind == "int":
            self.advance()
            return _node(Lit, t.pos, std="INT64", value=t.value, text=t.text)
        if t.kind == "param":
            self.advance()
            if t.value.startswith("@"):
                raise unsupported("System variables", t.pos)
            return _node(Param, t.pos, name=t.value)
        if t.is_op("?"):
            raise unsupported("Positional query parameters", t.pos)
        raise SqlError("Syntax error: Unexpected %s; LIMIT expects an integer literal or "
                       "parameter" % t.describe(), t.pos)

    def parse_select_item(self):
        t = self.tok
        if t.is_op("*"):
            self.advance()
            self._reject_star_modifiers()
            return _node(SelectItem, t.pos, star=True)
        if t.kind in ("ident", "qident") and self.peek().is_op(".") and self.peek(2).is_op("*"):
            self.advance()
            self.advance()
            self.advance()
            self._reject_star_modifiers()
            return _node(SelectItem, t.pos, star=True, star_qualifier=t.value)
        expr = self.parse_expr()
        alias = None
        if self.tok.is_kw("AS"):
            self.advance()
            alias = self.parse_alias_name()
        elif self.tok.kind in ("ident", "qident"):
            alias = self.parse_alias_name()
        return _node(SelectItem, t.pos, expr=expr, alias=alias)

    def _reject_star_modifiers(self):
        if self.tok.is_kw("EXCEPT") or (self.tok.kind == "ident"
                                        and self.tok.value.upper() == "REPLACE"):
            raise unsupported("SELECT * %s" % self.tok.text.upper(), self.tok.pos)

    def parse_alias_name(self):
        t = self.tok
        if t.kind in ("ident", "qident"):
            self.advance()
            return t.value
        raise self.unexpected()

    def parse_from_item(self):
        t = self.tok
        if t.is_op("("):
            self.advance()
            if not (self.tok.is_kw("SELECT") or self.tok.is_op("(")):
                raise unsupported("Parenthesized join", self.tok.pos)
            sub = self.parse_query()
            self.expect_op(")")
            alias = self._opt_alias()
            return _node(FromSub, t.pos, select=sub, alias=alias)
        if t.is_kw("UNNEST"):
            raise unsupported("UNNEST", t.pos)
        if t.kind not in ("ident", "qident"):
            raise self.unexpected()
        parts = []
        while True:
            tk = self.tok
            if tk.kind == "qident":
                parts.extend(tk.value.split("."))
            elif tk.kind == "ident" or (tk.kind == "kw" and parts):
                parts.append(tk.text)
            else:
                raise self.unexpected()
            self.advance()
            if self.tok.is_op(".") and self.peek().kind in ("ident", "qident", "kw"):
                self.advance()
                continue
            if self.tok.is_op("-") and tk.kind == "ident" and not parts[1:]:
                raise SqlError("Syntax error: Table name contains '-' character. It needs to "
                               "be quoted: `%s`" % tk.text, tk.pos)
            break
        if self.tok.is_kw("FOR"):
            raise unsupported("FOR SYSTEM_TIME AS OF", self.tok.pos)
        alias = self._opt_alias()
        return _node(FromTable, t.pos, parts=parts, alias=alias)

    def _opt_alias(self):
        if self.tok.is_kw("AS"):
            self.advance()
            return self.parse_alias_name()
        if self.tok.kind in ("ident", "qident"):
            return self.parse_alias_name()
        return None

    def parse_order_list(self):
        items = []
        while True:
            expr = self.parse_expr()
            it = _node(OrderItem, expr.pos, expr=expr, desc=False)
            if self.tok.is_kw("ASC"):
                self.advance()
            elif self.tok.is_kw("DESC"):
                self.advance()
                it.desc = True
            if self.tok.is_kw("NULLS"):
                self.advance()
                t = self.tok
                if t.kind == "ident" and t.value.upper() in ("FIRST", "LAST"):
                    it.nulls = t.value.upper()
                    self.advance()
                else:
                    raise self.expected("keyword FIRST or keyword LAST")
            items.append(it)
            if not self.tok.is_op(","):
                return items
            self.advance()

    # expressions ------------------------------------------------------------------------

    def parse_expr(self):
        return self.parse_or()

    def parse_or(self):
        left = self.parse_and()
        while self.tok.is_kw("OR"):
            t = self.advance()
            left = _node(Binary, t.pos, op="OR", left=left, right=self.parse_and())
        return left

    def parse_and(self):
        left = self.parse_not()
        while self.tok.is_kw("AND"):
            t = self.advance()
            left = _node(Binary, t.pos, op="AND", left=left, right=self.parse_not())
        return left

    def parse_not(self):
        if self.tok.is_kw("NOT"):
            t = self.advance()
            return _node(Unary, t.pos, op="NOT", arg=self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self):
        left = self.parse_additive()
        while True:
            t = self.tok
            if t.is_op("=", "!=", "<>", "<", "<=", ">", ">="):
                self.advance()
                op = "!=" if t.value == "<>" else t.value
                left = _node(Binary, t.pos, op=op, left=left, right=self.parse_additive())
                continue
            if t.is_kw("IS"):
                self.advance()
                neg = False
                if self.tok.is_kw("NOT"):
                    self.advance()
                    neg = True
                if self.tok.is_kw("NULL", "TRUE", "FALSE"):
                    what = self.advance().value
                    left = _node(IsNull, t.pos, arg=left, negated=neg, what=what)
                    continue
                if self.tok.is_kw("DISTINCT"):
                    raise unsupported("IS DISTINCT FROM", self.tok.pos)
                raise self.unexpected()
            neg = False
            if t.is_kw("NOT") and self.peek().is_kw("IN", "BETWEEN", "LIKE"):
                self.advance()
                neg = True
                t = self.tok
            if t.is_kw("IN"):
                self.advance()
                if self.tok.is_kw("UNNEST"):
                    raise unsupported("IN UNNEST", self.tok.pos)
                self.expect_op("(")
                if self.tok.is_kw("SELECT"):
                    raise unsupported("IN (subquery)", self.tok.pos)
                items = [self.parse_expr()]
                while self.tok.is_op(","):
                    self.advance()
                    items.append(self.parse_expr())
                self.expect_op(")")
                left = _node(InList, t.pos, arg=left, items=items, negated=neg)
                continue
            if t.is_kw("BETWEEN"):
                self.advance()
                low = self.parse_additive()
                self.expect_kw("AND")
                high = self.parse_additive()
                left = _node(Between, t.pos, arg=left, low=low, high=high, negated=neg)
                continue
            if t.is_kw("LIKE"):
                self.advance()
                if self.tok.is_kw("ANY", "SOME", "ALL"):
                    raise unsupported("LIKE %s" % self.tok.value, self.tok.pos)
                left = _node(Like, t.pos, arg=left, pattern=self.parse_additive(), negated=neg)
                continue
            return left

    def parse_additive(self):
        left = self.parse_multiplicative()
        while self.tok.is_op("+", "-", "||"):
            t = self.advance()
            left = _node(Binary, t.pos, op=t.value, left=left, right=self.parse_multiplicative())
        return left

    def parse_multiplicative(self):
        left = self.parse_unary()
        while self.tok.is_op("*", "/"):
            t = self.advance()
            left = _node(Binary, t.pos, op=t.value, left=left, right=self.parse_unary())
        return left

    def parse_unary(self):
        t = self.tok
        if t.is_op("-", "+"):
            self.advance()
            arg = self.parse_unary()
            if t.value == "+":
                return arg
            if isinstance(arg, Lit) and arg.std in ("INT64", "FLOAT64"):
                arg.value = -arg.value
                arg.text = "-" + arg.text
                arg.pos = t.pos
                return arg
            return _node(Unary, t.pos, op="-", arg=arg)
        if t.is_op("~", "!"):
            raise unsupported('Operator "%s"' % t.value, t.pos)
        return self.parse_postfix()

    def parse_postfix(self):
        e = self.parse_primary()
        if self.tok.is_op("["):
            raise unsupported("Array subscript", self.tok.pos)
        return e

    def parse_primary(self):
        t = self.tok
        if t.kind == "int":
            self.advance()
            if t.value >= (1 << 63):
                raise SqlError("Invalid integer literal: %s" % t.text, t.pos)
            return _node(Lit, t.pos, std="INT64", value=t.value, text=t.text)
        if t.kind == "float":
            self.advance()
            if t.value in (float("inf"), float("-inf")):
                raise SqlError("Invalid floating point literal: %s" % t.text, t.pos)
            return _node(Lit, t.pos, std="FLOAT64", value=t.value, text=t.text)
        if t.kind == "string":
            self.advance()
            return _node(Lit, t.pos, std="STRING", value=t.value, text=t.text)
        if t.is_kw("TRUE", "FALSE"):
            self.advance()
            return _node(Lit, t.pos, std="BOOL", value=t.value == "TRUE", text=t.value)
        if t.is_kw("NULL"):
            self.advance()
            return _node(Lit, t.pos, std="NULL", value=None, text="NULL")
        if t.kind == "param":
            self.advance()
            if t.value.startswith("@"):
                raise unsupported("System variables", t.pos)
            return _node(Param, t.pos, name=t.value)
        if t.is_op("?"):
            raise unsupported("Positional query parameters", t.pos)
        if t.is_op("("):
            self.advance()
            if self.tok.is_kw("SELECT"):
                raise unsupported("Scalar subquery", self.tok.pos)
            e = self.parse_expr()
            if self.tok.is_op(","):
                raise unsupported("STRUCT constructor", self.tok.pos)
            self.expect_op(")")
            return e
        if t.is_kw("CASE", "CAST", "EXTRACT", "ARRAY", "STRUCT", "EXISTS", "IF", "INTERVAL",
                   "COLLATE", "NEW", "RANGE"):
            if t.is_kw("INTERVAL"):
                raise SqlError("Syntax error: INTERVAL is only supported as an argument of "
                               "TIMESTAMP_ADD/TIMESTAMP_SUB by the datos GCP emulator", t.pos)
            if t.is_kw("IF") and self.peek().is_op("("):
                raise unsupported("Function IF", t.pos)
            if t.is_kw("CASE", "CAST", "EXTRACT", "ARRAY", "STRUCT", "EXISTS"):
                raise unsupported(t.value, t.pos)
            raise self.unexpected()
        if t.kind == "ident" and self.peek().kind == "string":
            up = t.value.upper()
            if up in ("TIMESTAMP", "DATE", "DATETIME", "TIME", "NUMERIC", "BIGNUMERIC", "JSON"):
                self.advance()
                s = self.advance()
                if up == "TIMESTAMP":
                    try:
                        us = bqtypes.parse_timestamp(s.value)
                    except ValueError:
                        raise SqlError("Invalid TIMESTAMP literal", s.pos)
                    return _node(Lit, t.pos, std="TIMESTAMP", value=us, text=s.text)
                if up == "DATE":
                    try:
                        v = bqtypes.convert_scalar("DATE", s.value, "")
                    except bqtypes.RowError:
                        raise SqlError("Invalid DATE literal", s.pos)
                    return _node(Lit, t.pos, std="DATE", value=v, text=s.text)
                raise unsupported("%s literal" % up, t.pos)
        if t.kind in ("ident", "qident"):
            if t.kind == "ident" and self.peek().is_op("("):
                return self.parse_function()
            if t.kind == "ident" and t.value.upper() == "CURRENT_TIMESTAMP":
                self.advance()
                return _node(Func, t.pos, name="CURRENT_TIMESTAMP", args=[])
            parts = [self.advance().value]
            while self.tok.is_op(".") and self.peek().kind in ("ident", "qident"):
                self.advance()
                parts.append(self.advance().value)
            if self.tok.is_op("(") :
                raise unsupported("Function %s" % ".".join(parts), t.pos)
            return _node(Column, t.pos, parts=parts)
        raise self.unexpected()

    def parse_function(self):
        name_tok = self.advance()
        name = name_tok.value.upper()
        self.expect_op("(")
        f = _node(Func, name_tok.pos, name=name, args=[])
        if self.tok.is_op("*"):
            self.advance()
            f.star = True
        elif not self.tok.is_op(")"):
            if self.tok.is_kw("DISTINCT"):
                self.advance()
                f.distinct = True
            while True:
                if self.tok.is_kw("INTERVAL"):
                    it = self.advance()
                    val = self.parse_additive()
                    u = self.tok
                    if u.kind != "ident":
                        raise self.expected("a date part")
                    self.advance()
                    f.args.append(_node(Interval, it.pos, value=val, unit=u.value.upper()))
                else:
                    f.args.append(self.parse_expr())
                if not self.tok.is_op(","):
                    break
                self.advance()
            if self.tok.is_kw("ORDER", "LIMIT", "IGNORE", "RESPECT", "HAVING"):
                raise unsupported("%s inside an aggregate" % self.tok.value, self.tok.pos)
        self.expect_op(")")
        if self.tok.is_kw("OVER"):
            ov = self.advance()
            if self.tok.kind == "ident":
                raise unsupported("Named window", self.tok.pos)
            self.expect_op("(")
            over = _node(Over, ov.pos, partition=[], order=[])
            if self.tok.is_kw("PARTITION"):
                self.advance()
                self.expect_kw("BY")
                while True:
                    over.partition.append(self.parse_expr())
                    if not self.tok.is_op(","):
                        break
                    self.advance()
            if self.tok.is_kw("ORDER"):
                self.advance()
                self.expect_kw("BY")
                over.order = self.parse_order_list()
            if self.tok.is_kw("ROWS", "RANGE"):
                raise unsupported("Window frame clause", self.tok.pos)
            self.expect_op(")")
            f.over = over
        return f


def parse(text):
    return Parser(text).parse_statement()


# --------------------------------------------------------------------------------------------
# Translation

AGGREGATES = {"COUNT", "MIN", "MAX", "SUM", "AVG", "COUNTIF", "ANY_VALUE", "LOGICAL_AND",
              "LOGICAL_OR"}
NAVIGATION = {"ROW_NUMBER", "RANK", "DENSE_RANK"}
# Well-known BigQuery functions this emulator does not implement: refused as unsupported
# rather than "not found", so nobody mistakes an emulator gap for a typo.
KNOWN_UNSUPPORTED = set("""ABS ACOS ARRAY_AGG ARRAY_CONCAT ARRAY_LENGTH ARRAY_TO_STRING ASCII
BIT_COUNT BYTE_LENGTH CEIL CEILING CHAR_LENGTH CHARACTER_LENGTH CONCAT CONTAINS_SUBSTR
CURRENT_DATE CURRENT_DATETIME CURRENT_TIME DATE DATE_ADD DATE_DIFF DATE_SUB DATE_TRUNC DATETIME
DIV ENDS_WITH EXP FARM_FINGERPRINT FIRST_VALUE FLOOR FORMAT FORMAT_DATE FORMAT_TIMESTAMP
GENERATE_UUID GREATEST IFNULL INITCAP INSTR JSON_EXTRACT JSON_VALUE JSON_QUERY LAG LAST_VALUE
LEAD LEAST LEFT LN LOG LOG10 LOWER LPAD LTRIM MD5 MOD NTH_VALUE NTILE NULLIF PARSE_DATE
PARSE_TIMESTAMP PERCENT_RANK CUME_DIST POW POWER RAND REGEXP_CONTAINS REGEXP_EXTRACT
REGEXP_REPLACE REPEAT REPLACE REVERSE RIGHT ROUND RPAD RTRIM SAFE_CAST SAFE_DIVIDE SHA256 SIGN
SPLIT SQRT STARTS_WITH STDDEV STRING STRING_AGG STRPOS SUBSTR SUBSTRING TIME TIMESTAMP_DIFF
TIMESTAMP_MILLIS TO_HEX TO_JSON_STRING TRIM TRUNC UNIX_MILLIS UPPER VARIANCE""".split())

_UNIT_US = {"MICROSECOND": 1, "MILLISECOND": 1000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
            "HOUR": 3_600_000_000, "DAY": 86_400_000_000}
_TRUNC_PARTS = set(_UNIT_US) | {"WEEK", "MONTH", "QUARTER", "YEAR"}
_CMP = {"=", "!=", "<", "<=", ">", ">="}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ORDERABLE = {"STRING", "INT64", "FLOAT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE",
              "DATETIME", "TIME", "BYTES", "NULL"}


class TExpr:
    __slots__ = ("sql", "std", "deps", "agg", "win", "const", "fields", "repeated", "strlit",
                 "part_col", "is_null", "param")

    def __init__(self, sql, std, deps=frozenset(), agg=False, win=False, const=False,
                 fields=None, repeated=False, strlit=None, part_col=False, is_null=False,
                 param=None):
        self.sql, self.std, self.deps = sql, std, deps
        self.agg, self.win, self.const = agg, win, const
        self.fields, self.repeated = fields, repeated
        self.strlit, self.part_col, self.is_null, self.param = strlit, part_col, is_null, param


class Col:
    __slots__ = ("name", "std", "sql", "deps", "fields", "repeated", "part_col")

    def __init__(self, name, std, sql, deps, fields=None, repeated=False, part_col=False):
        self.name, self.std, self.sql, self.deps = name, std, sql, deps
        self.fields, self.repeated, self.part_col = fields, repeated, part_col


class Relation:
    def __init__(self, alias, cols, table=None):
        self.alias = alias
        self.cols = cols
        self.table = table
        self.by_name = {}
        for c in cols:
            self.by_name.setdefault(c.name.lower(), []).append(c)


class OutCol:
    __slots__ = ("name", "std", "fields", "repeated")

    def __init__(self, name, std, fields=None, repeated=False):
        self.name, self.std, self.fields, self.repeated = name, std, fields, repeated

    def schema(self):
        d = {"name": self.name, "type": bqtypes.legacy_name(self.std),
             "mode": "REPEATED" if self.repeated else "NULLABLE"}
        if self.fields:
            d["fields"] = [_field_schema(f) for f in self.fields]
        return d


def _field_schema(f):
    d = {"name": f["name"], "type": bqtypes.legacy_name(f["std"]),
         "mode": "REPEATED" if f.get("repeated") else "NULLABLE"}
    if f.get("fields"):
        d["fields"] = [_field_schema(x) for x in f["fields"]]
    return d


class BindSpec:
    """How to compute one SQLite named parameter from the query parameters at run time."""
    __slots__ = ("placeholder", "param", "conv", "pos")

    def __init__(self, placeholder, param, conv, pos):
        self.placeholder, self.param, self.conv, self.pos = placeholder, param, conv, pos


class TableScan:
    """One base table read by the query, with what partition pruning may use."""

    def __init__(self, table):
        self.table = table
        self.bounds = []  # (op, index into bounds_sql list)


class Compiled:
    def __init__(self):
        self.sql = None
        self.output = []
        self.binds = {}
        self.limit_params = []
        self.scans = []
        self.used = set()  # (table key, column name lower)
        self.bounds_sql = []
        self.uses_now = False
        self.tables = []


def _q(name):
    return '"%s"' % name.replace('"', '""')


def _sql_str(s):
    return "'%s'" % s.replace("'", "''")


class Translator:
    """Resolve names and types, check BigQuery's rules, and emit SQLite text."""

    def __init__(self, catalog, project, default_dataset, location, param_types):
        # catalog: object with lookup_table(project, dataset, table, location) -> Table
        self.catalog = catalog
        self.project = project
        self.default_dataset = default_dataset
        self.location = location
        self.param_types = param_types  # lower name -> std type
        self.out = Compiled()
        self.sub_counter = 0

    # entry ---------------------------------------------------------------------------------

    def translate(self, text):
        try:
            ast = parse(text)
            rel, sql = self.select(ast, top=True)
        except SqlError as e:
            raise invalid_query(e.message) from None
        names = {}
        dups = []
        for c in rel.cols:
            k = c.name.lower()
            if k in names and c.name not in dups:
                dups.append(c.name)
            names[k] = True
        if dups:
            raise invalid_query("Duplicate column names in the result are not supported. "
                                "Found duplicate(s): %s" % ", ".join(dups))
        for c in rel.cols:
            self.out.used.update(c.deps)
            if c.std == "NULL":
                c.std = "INT64"
            self.out.output.append(OutCol(c.name, c.std, c.fields, c.repeated))
        self.out.sql = sql
        return self.out

    # FROM ----------------------------------------------------------------------------------

    def from_item(self, item):
        if item is None:
            return Relation(None, []), None
        if isinstance(item, FromSub):
            rel, sql = self.select(item.select, top=False)
            self.sub_counter += 1
            return Relation(item.alias, rel.cols), "(%s) AS %s" % (sql, _q("#s%d" % self.sub_counter))
        parts = item.parts
        if len(parts) == 3:
            project, dataset, table = parts
        elif len(parts) == 2:
            project, (dataset, table) = self.project, parts
        elif len(parts) == 1:
            if not self.default_dataset:
                raise SqlError('Table "%s" must be qualified with a dataset (e.g. '
                               'dataset.table).' % parts[0], item.pos)
            project, dataset = self.default_dataset
            table = parts[0]
        else:
            raise SqlError("Invalid table name: %s" % ".".join(parts), item.pos)
        t = self.catalog.lookup_table(project, dataset, table, self.location)
        key = t.key
        self.out.tables.append(t)
        scan = TableScan(t)
        self.out.scans.append(scan)
        pfield = t.partition_field_lower()
        cols = []
        for c in t.columns:
            cols.append(Col(c.name, c.std, _q(c.name), frozenset([(key, c.name.lower())]),
                            c.fields, c.repeated,
                            part_col=(pfield == c.name.lower() and c.std == "TIMESTAMP"
                                      and not c.repeated)))
        alias = item.alias or table
        rel = Relation(alias, cols, table=t)
        rel.scan = scan
        return rel, _q(t.sqlite_name)

    # SELECT --------------------------------------------------------------------------------

    def select(self, sel, top):
        rel, src = self.from_item(sel.from_)
        ctx = _Ctx(rel)
        # select list
        items = []  # (name or None, TExpr, alias_given)
        anon = 0
        for it in sel.items:
            if it.star:
                if sel.from_ is None:
                    raise SqlError("SELECT * must have a FROM clause", it.pos)
                if it.star_qualifier and (rel.alias or "").lower() != it.star_qualifier.lower():
                    raise SqlError("Unrecognized name: %s" % it.star_qualifier, it.pos)
                for c in rel.cols:
                    items.append((c.name, self.col_expr(c), True))
                continue
            te = self.expr(it.expr, ctx, "SELECT list")
            if it.alias:
                name = it.alias
            elif isinstance(it.expr, Column):
                name = it.expr.parts[-1]
            else:
                name = None
            items.append((name, te, it.alias is not None))
        names = []
        for name, te, _ in items:
            if name is None:
                name = "f%d_" % anon
                anon += 1
            names.append(name)
        aliases = {}
        for i, (name, te, _) in enumerate(items):
            aliases.setdefault(names[i].lower(), []).append(i)
        ctx.aliases = aliases
        ctx.items = items

        where_sql = None
        if sel.where is not None:
            w = self.expr(sel.where, ctx, "WHERE clause", allow_agg=False, allow_win=False)
            self.require_bool(w, "WHERE clause", sel.where.pos)
            self.out.used.update(w.deps)
            where_sql = w.sql
            if rel.table is not None:
                self.collect_bounds(sel.where, ctx, rel)
        if rel.table is not None and rel.table.require_partition_filter and not rel.scan.bounds:
            t = rel.table
            raise SqlError("Cannot query over table '%s.%s.%s' without a filter over column(s) "
                           "'%s' that can be used for partition elimination"
                           % (t.project, t.dataset_id, t.table_id,
                              t.time_partitioning.get("field", "_PARTITIONTIME")),
                           sel.from_.pos)

        group_sql = []
        group_keys = set()
        for g in sel.group_by:
            te = self.group_item(g, ctx)
            if te.agg:
                raise SqlError("Aggregate functions are not allowed in GROUP BY", g.pos)
            if te.win:
                raise SqlError("Analytic functions not allowed in GROUP BY", g.pos)
            if te.std in ("STRUCT", "FLOAT64", "JSON") or te.repeated:
                raise SqlError("Grouping by expressions of type %s is not allowed"
                               % ("ARRAY" if te.repeated else te.std), g.pos)
            self.out.used.update(te.deps)
            group_sql.append(te.sql)
            group_keys.add(te.sql)

        having_sql = None
        if sel.having is not None:
            ctx.alias_mode = True
            h = self.expr(sel.having, ctx, "HAVING clause", allow_win=False)
            ctx.alias_mode = False
            self.require_bool(h, "HAVING clause", sel.having.pos)
            self.out.used.update(h.deps)
            having_sql = h.sql

        qual = None
        if sel.qualify is not None:
            if sel.where is None and not sel.group_by and sel.having is None:
                # ZetaSQL (and BigQuery's own docs at one time) refuse QUALIFY without WHERE,
                # GROUP BY or HAVING, hence the common `WHERE TRUE`; users report that BigQuery
                # now accepts it. Uncertain, so the stricter rule is kept.
                raise SqlError("QUALIFY clause must be used in conjunction with WHERE or "
                               "GROUP BY or HAVING clause", sel.qualify.pos)
            ctx.alias_mode = True
            qual = self.expr(sel.qualify, ctx, "QUALIFY clause", allow_agg=True)
            ctx.alias_mode = False
            self.require_bool(qual, "QUALIFY clause", sel.qualify.pos)
            self.out.used.update(qual.deps)

        # ORDER BY
        orders = []  # (kind, value, OrderItem): kind "out" (index) or "expr" (TExpr)
        for ob in sel.order_by:
            e = ob.expr
            if isinstance(e, Lit) and e.std == "INT64":
                k = e.value
                if not 1 <= k <= len(items):
                    raise SqlError("ORDER BY column number item is out of range. Column "
                                   "numbers start at 1 and must be less than or equal to the "
                                   "number of columns in the SELECT list (%d)" % len(items),
                                   e.pos)
                orders.append(("out", k - 1, ob))
                self._check_orderable(items[k - 1][1], e.pos)
                continue
            if isinstance(e, Column) and len(e.parts) == 1 and e.parts[0].lower() in aliases:
                idx = aliases[e.parts[0].lower()]
                if len(idx) > 1:
                    raise SqlError("Column name %s is ambiguous" % e.parts[0], e.pos)
                orders.append(("out", idx[0], ob))
                self._check_orderable(items[idx[0]][1], e.pos)
                continue
            ctx.alias_mode = True
            te = self.expr(e, ctx, "ORDER BY clause", allow_agg=True)
            ctx.alias_mode = False
            self._check_orderable(te, e.pos)
            self.out.used.update(te.deps)
            if sel.distinct:
                match = [i for i, it in enumerate(items) if it[1].sql == te.sql]
                if not match:
                    raise SqlError("ORDER BY clause expression references columns which are "
                                   "not visible after SELECT DISTINCT", e.pos)
                orders.append(("out", match[0], ob))
            else:
                orders.append(("expr", te, ob))

        # aggregation rules
        has_agg = bool(sel.group_by) or sel.having is not None or any(
            te.agg for _, te, _ in items) or any(
            kind == "expr" and v.agg for kind, v, _ in orders)
        if has_agg:
            for it in sel.items:
                if not it.star:
                    self.check_grouped(it.expr, ctx, group_keys, "SELECT list")
                    continue
                for c in rel.cols:  # SELECT * with aggregation: every column must be grouped
                    if c.sql not in group_keys:
                        raise SqlError("SELECT list expression references column %s which is "
                                       "neither grouped nor aggregated" % c.name, it.pos)
            if sel.having is not None:
                self.check_grouped(sel.having, ctx, group_keys, "HAVING clause")
            for kind, v, ob in orders:
                if kind == "expr":
                    self.check_grouped(ob.expr, ctx, group_keys, "ORDER BY clause")
            if sel.qualify is not None:
                self.check_grouped(sel.qualify, ctx, group_keys, "QUALIFY clause")

        # LIMIT / OFFSET
        limit_sql = self.limit_value(sel.limit, "LIMIT") if sel.limit is not None else None
        offset_sql = self.limit_value(sel.offset, "OFFSET") if sel.offset is not None else None

        # output relation
        out_cols = []
        for i, (name, te, _) in enumerate(items):
            out_cols.append(Col(names[i], te.std, _q("#c%d" % i), te.deps, te.fields,
                                te.repeated, part_col=False))
        out_rel = Relation(None, out_cols)

        select_list = ", ".join("%s AS %s" % (te.sql, _q("#c%d" % i))
                                for i, (name, te, _) in enumerate(items))
        if not items:
            raise SqlError("SELECT list must not be empty", sel.pos)

        def order_sql(expr_of):
            parts = []
            for kind, v, ob in orders:
                s = _q("#c%d" % v) if kind == "out" else expr_of(v)
                nulls = ob.nulls or ("LAST" if ob.desc else "FIRST")
                parts.append("%s %s NULLS %s" % (s, "DESC" if ob.desc else "ASC", nulls))
            return ", ".join(parts)

        tail = ""
        if qual is None:
            sql = "SELECT %s%s" % ("DISTINCT " if sel.distinct else "", select_list)
            if src:
                sql += " FROM " + src
            if where_sql:
                sql += " WHERE " + where_sql
            if group_sql:
                sql += " GROUP BY " + ", ".join(group_sql)
            if having_sql:
                sql += " HAVING " + having_sql
            if orders:
                tail += " ORDER BY " + order_sql(lambda te: te.sql)
        else:
            extra = ["%s AS %s" % (qual.sql, _q("#q"))]
            expr_orders = {}
            for kind, v, ob in orders:
                if kind == "expr":
                    name = "#o%d" % len(expr_orders)
                    expr_orders[id(v)] = name
                    extra.append("%s AS %s" % (v.sql, _q(name)))
            inner = "SELECT %s, %s" % (select_list, ", ".join(extra))
            if src:
                inner += " FROM " + src
            if where_sql:
                inner += " WHERE " + where_sql
            if group_sql:
                inner += " GROUP BY " + ", ".join(group_sql)
            if having_sql:
                inner += " HAVING " + having_sql
            sql = "SELECT %s%s FROM (%s) WHERE %s" % (
                "DISTINCT " if sel.distinct else "",
                ", ".join(_q("#c%d" % i) for i in range(len(items))), inner, _q("#q"))
            if orders:
                tail += " ORDER BY " + order_sql(lambda te: _q(expr_orders[id(te)]))
        if limit_sql is not None:
            tail += " LIMIT " + limit_sql
            if offset_sql is not None:
                tail += " OFFSET " + offset_sql
        elif offset_sql is not None:
            tail += " LIMIT -1 OFFSET " + offset_sql
        return out_rel, sql + tail

    def _check_orderable(self, te, pos):
        if te.repeated or te.std not in _ORDERABLE:
            raise SqlError("ORDER BY does not support expressions of type %s"
                           % ("ARRAY" if te.repeated else te.std), pos)

    def group_item(self, g, ctx):
        if isinstance(g, Lit) and g.std == "INT64":
            if not 1 <= g.value <= len(ctx.items):
                raise SqlError("GROUP BY column number item is out of range", g.pos)
            return ctx.items[g.value - 1][1]
        if isinstance(g, Column) and len(g.parts) == 1:
            found = self.lookup_col(g, ctx, quiet=True)
            if found is None and g.parts[0].lower() in ctx.aliases:
                return ctx.items[ctx.aliases[g.parts[0].lower()][0]][1]
        return self.expr(g, ctx, "GROUP BY clause", allow_agg=False, allow_win=False)

    def limit_value(self, node, what):
        if isinstance(node, Lit):
            if node.value < 0:
                raise SqlError("%s expects a non-negative integer literal or parameter" % what,
                               node.pos)
            return str(node.value)
        ptype = self.param_types.get(node.name.lower())
        if ptype is None:
            raise SqlError("Query parameter '%s' not found" % node.name, node.pos)
        if ptype != "INT64":
            raise SqlError("%s expects an integer literal or parameter" % what, node.pos)
        ph = self.bind(node.name, None, node.pos)
        self.out.limit_params.append((node.name.lower(), what, node.pos))
        return ph

    # partition pruning -----------------------------------------------------------------------

    def collect_bounds(self, where, ctx, rel):
        conj = []

        def flatten(n):
            if isinstance(n, Binary) and n.op == "AND":
                flatten(n.left)
                flatten(n.right)
            else:
                conj.append(n)
        flatten(where)
        scan = rel.scan
        for c in conj:
            if isinstance(c, Binary) and c.op in _CMP and c.op != "!=":
                left = self.expr(c.left, ctx, "WHERE clause", allow_agg=False, allow_win=False)
                right = self.expr(c.right, ctx, "WHERE clause", allow_agg=False, allow_win=False)
                if left.part_col and right.const:
                    self._add_bound(scan, c.op, right)
                elif right.part_col and left.const:
                    self._add_bound(scan, _FLIP[c.op], left)
            elif isinstance(c, Between) and not c.negated:
                arg = self.expr(c.arg, ctx, "WHERE clause", allow_agg=False, allow_win=False)
                if arg.part_col:
                    lo = self.expr(c.low, ctx, "WHERE clause", allow_agg=False, allow_win=False)
                    hi = self.expr(c.high, ctx, "WHERE clause", allow_agg=False, allow_win=False)
                    if lo.const:
                        self._add_bound(scan, ">=", lo)
                    if hi.const:
                        self._add_bound(scan, "<=", hi)

    def _add_bound(self, scan, op, te):
        te = self.coerce(te, "TIMESTAMP", None)
        if te.std not in ("TIMESTAMP", "NULL"):
            return
        scan.bounds.append((op, len(self.out.bounds_sql)))
        self.out.bounds_sql.append(te.sql)

    # grouping check ---------------------------------------------------------------------------

    def check_grouped(self, node, ctx, keys, clause):
        if node is None:
            return
        if isinstance(node, (Lit, Param)):
            return
        if isinstance(node, Func) and (node.name in AGGREGATES and node.over is None):
            return
        try:
            te = self.expr(node, ctx, clause, allow_agg=True)
            if te.sql in keys or not te.deps:
                return
        except SqlError:
            pass
        if isinstance(node, Column):
            if ctx.alias_lookup(node) is not None:
                te = ctx.alias_lookup(node)
                if te.agg or te.sql in keys or not te.deps:
                    return
            raise SqlError("%s expression references column %s which is neither grouped nor "
                           "aggregated" % (clause, ".".join(node.parts)), node.pos)
        for child in _children(node):
            self.check_grouped(child, ctx, keys, clause)

    # expressions ---------------------------------------------------------------------------

    def col_expr(self, c):
        return TExpr(c.sql, c.std, c.deps, fields=c.fields, repeated=c.repeated,
                     part_col=c.part_col)

    def lookup_col(self, node, ctx, quiet=False):
        parts = node.parts
        rel = ctx.rel
        if len(parts) == 2 and rel.alias and parts[0].lower() == rel.alias.lower():
            name = parts[1]
        elif len(parts) == 1:
            name = parts[0]
        else:
            if quiet:
                return None
            if len(parts) >= 2 and any(c.name.lower() == parts[0].lower() for c in rel.cols):
                raise unsupported("Field access", node.pos)
            raise SqlError("Unrecognized name: %s" % parts[0], node.pos)
        found = rel.by_name.get(name.lower())
        if not found:
            return None
        if len(found) > 1:
            raise SqlError("Column name %s is ambiguous" % name, node.pos)
        return found[0]

    def bind(self, name, conv, pos):
        ph = "p_%s%s" % (re.sub(r"\W", "_", name.lower()), "" if conv is None else "_" + conv)
        self.out.binds[ph] = BindSpec(ph, name.lower(), conv, pos)
        return ":" + ph

    def require_bool(self, te, clause, pos):
        if te.std not in ("BOOL", "NULL") or te.repeated:
            raise SqlError("%s should return type BOOL, but returns %s"
                           % (clause, _tname(te)), pos)

    def coerce(self, te, target, pos):
        """Literal/parameter coercion of STRING to TIMESTAMP/DATE (BigQuery allows it)."""
        if te.std == target or te.is_null:
            return te
        if te.std == "STRING" and target in ("TIMESTAMP", "DATE"):
            if te.strlit is not None:
                if target == "TIMESTAMP":
                    try:
                        us = bqtypes.parse_timestamp(te.strlit)
                    except ValueError:
                        raise SqlError('Could not cast literal "%s" to type TIMESTAMP'
                                       % te.strlit, pos)
                    return TExpr(str(us), "TIMESTAMP", const=True)
                try:
                    v = bqtypes.convert_scalar("DATE", te.strlit, "")
                except bqtypes.RowError:
                    raise SqlError('Could not cast literal "%s" to type DATE' % te.strlit, pos)
                return TExpr(_sql_str(v), "DATE", const=True)
            if te.param is not None:
                conv = "STRING_TO_" + target
                return TExpr(self.bind(te.param[0], conv, te.param[1]), target, const=True)
        if te.std == "INT64" and target in ("FLOAT64", "NUMERIC", "BIGNUMERIC"):
            return te
        return te

    def comparable(self, a, b, op, pos):
        if a.repeated or b.repeated or a.std in ("STRUCT", "JSON", "GEOGRAPHY") or \
                b.std in ("STRUCT", "JSON", "GEOGRAPHY"):
            raise SqlError("No matching signature for operator %s for argument types: %s, %s"
                           % (op, _tname(a), _tname(b)), pos)
        if a.is_null or b.is_null:
            return a, b
        if a.std in ("TIMESTAMP", "DATE") and b.std == "STRING":
            b = self.coerce(b, a.std, pos)
        elif b.std in ("TIMESTAMP", "DATE") and a.std == "STRING":
            a = self.coerce(a, b.std, pos)
        num = bqtypes.NUMERIC_TYPES
        if a.std == b.std or (a.std in num and b.std in num):
            return a, b
        sig = "ANY %s ANY" % op if op in _CMP else op
        raise SqlError("No matching signature for operator %s for argument types: %s, %s. "
                       "Supported signature: %s" % (op, _tname(a), _tname(b), sig), pos)

    def expr(self, node, ctx, clause, allow_agg=True, allow_win=True):
        te = self._expr(node, ctx, clause, allow_agg, allow_win, in_agg=False)
        return te

    def _expr(self, node, ctx, clause, allow_agg, allow_win, in_agg):
        rec = lambda n, **kw: self._expr(n, ctx, clause, kw.get("allow_agg", allow_agg),
                                         kw.get("allow_win", allow_win),
                                         kw.get("in_agg", in_agg))
        if isinstance(node, Lit):
            if node.std == "NULL":
                return TExpr("NULL", "NULL", const=True, is_null=True)
            if node.std == "STRING":
                return TExpr(_sql_str(node.value), "STRING", const=True, strlit=node.value)
            if node.std == "BOOL":
                return TExpr("1" if node.value else "0", "BOOL", const=True)
            if node.std == "FLOAT64":
                return TExpr(repr(float(node.value)), "FLOAT64", const=True)
            if node.std == "DATE":
                return TExpr(_sql_str(node.value), "DATE", const=True)
            return TExpr(str(node.value), node.std, const=True)
        if isinstance(node, Param):
            ptype = self.param_types.get(node.name.lower())
            if ptype is None:
                raise SqlError("Query parameter '%s' not found" % node.name, node.pos)
            return TExpr(self.bind(node.name, None, node.pos), ptype, const=True,
                         param=(node.name, node.pos))
        if isinstance(node, Column):
            if ctx.alias_mode:
                te = ctx.alias_lookup(node)
                if te is not None and self.lookup_col(node, ctx, quiet=True) is None:
                    if te.win and not allow_win:
                        raise SqlError("Analytic function not allowed in %s" % clause, node.pos)
                    return te
            c = self.lookup_col(node, ctx)
            if c is None:
                if ctx.alias_mode:
                    te = ctx.alias_lookup(node)
                    if te is not None:
                        return te
                if len(node.parts) == 2 and ctx.rel.alias and \
                        node.parts[0].lower() == ctx.rel.alias.lower():
                    raise SqlError("Name %s not found inside %s" % (node.parts[1], node.parts[0]),
                                   node.pos)
                raise SqlError("Unrecognized name: %s" % node.parts[0], node.pos)
            return self.col_expr(c)
        if isinstance(node, Unary):
            a = rec(node.arg)
            if node.op == "NOT":
                self._need_bool(a, "NOT", node.pos)
                return _derive("(NOT %s)" % a.sql, "BOOL", a)
            if a.std not in bqtypes.NUMERIC_TYPES and not a.is_null:
                raise SqlError("No matching signature for operator - for argument types: %s"
                               % _tname(a), node.pos)
            return _derive("(-%s)" % a.sql, a.std, a)
        if isinstance(node, Binary):
            a = rec(node.left)
            b = rec(node.right)
            op = node.op
            if op in ("AND", "OR"):
                self._need_bool(a, op, node.pos, b)
                self._need_bool(b, op, node.pos, a)
                return _derive("(%s %s %s)" % (a.sql, op, b.sql), "BOOL", a, b)
            if op in _CMP:
                a, b = self.comparable(a, b, op, node.pos)
                return _derive("(%s %s %s)" % (a.sql, op, b.sql), "BOOL", a, b)
            if op == "||":
                for x in (a, b):
                    if x.std not in ("STRING", "NULL") or x.repeated:
                        raise SqlError("No matching signature for operator || for argument "
                                       "types: %s, %s" % (_tname(a), _tname(b)), node.pos)
                return _derive("(%s || %s)" % (a.sql, b.sql), "STRING", a, b)
            num = bqtypes.NUMERIC_TYPES + ("NULL",)
            if a.std not in num or b.std not in num or a.repeated or b.repeated:
                raise SqlError("No matching signature for operator %s for argument types: %s, %s"
                               % (op, _tname(a), _tname(b)), node.pos)
            if op == "/":
                return _derive("(CAST(%s AS REAL) / %s)" % (a.sql, b.sql), "FLOAT64", a, b)
            std = "FLOAT64" if "FLOAT64" in (a.std, b.std) else (
                "INT64" if a.std in ("INT64", "NULL") and b.std in ("INT64", "NULL") else "NUMERIC")
            return _derive("(%s %s %s)" % (a.sql, op, b.sql), std, a, b)
        if isinstance(node, IsNull):
            a = rec(node.arg)
            if node.what == "NULL":
                return _derive("(%s IS %sNULL)" % (a.sql, "NOT " if node.negated else ""),
                               "BOOL", a)
            self._need_bool(a, "IS " + node.what, node.pos)
            val = "1" if node.what == "TRUE" else "0"
            s = "(%s IS %s%s)" % (a.sql, "NOT " if node.negated else "", val)
            return _derive(s, "BOOL", a)
        if isinstance(node, InList):
            a = rec(node.arg)
            items = []
            for it in node.items:
                b = rec(it)
                a2, b = self.comparable(a, b, "IN", it.pos)
                items.append(b)
            return _derive("(%s %sIN (%s))" % (a.sql, "NOT " if node.negated else "",
                                                ", ".join(b.sql for b in items)),
                           "BOOL", a, *items)
        if isinstance(node, Between):
            a = rec(node.arg)
            lo = rec(node.low)
            hi = rec(node.high)
            _, lo = self.comparable(a, lo, "BETWEEN", node.pos)
            _, hi = self.comparable(a, hi, "BETWEEN", node.pos)
            return _derive("(%s %sBETWEEN %s AND %s)" % (a.sql, "NOT " if node.negated else "",
                                                         lo.sql, hi.sql), "BOOL", a, lo, hi)
        if isinstance(node, Like):
            a = rec(node.arg)
            p = rec(node.pattern)
            for x in (a, p):
                if x.std not in ("STRING", "BYTES", "NULL"):
                    raise SqlError("No matching signature for operator LIKE for argument "
                                   "types: %s, %s" % (_tname(a), _tname(p)), node.pos)
            return _derive("(%s %sLIKE %s ESCAPE '\\')" % (a.sql, "NOT " if node.negated else "",
                                                            p.sql), "BOOL", a, p)
        if isinstance(node, Func):
            return self.func(node, ctx, clause, allow_agg, allow_win, in_agg, rec)
        if isinstance(node, Interval):
            raise SqlError("Syntax error: Unexpected keyword INTERVAL", node.pos)
        raise SqlError("Syntax error: unsupported expression", node.pos)

    def _need_bool(self, a, op, pos, other=None):
        if a.std not in ("BOOL", "NULL") or a.repeated:
            types = _tname(a) if other is None else "%s, %s" % (_tname(a), _tname(other))
            raise SqlError("No matching signature for operator %s for argument types: %s. "
                           "Supported signature: %s" % (op, types,
                                                        "BOOL %s ([BOOL, ...])" % op
                                                        if op in ("AND", "OR") else
                                                        "%s BOOL" % op), pos)

    def func(self, node, ctx, clause, allow_agg, allow_win, in_agg, rec):
        name = node.name
        args = node.args
        pos = node.pos
        if node.over is not None:
            if not allow_win:
                raise SqlError("Analytic function not allowed in %s" % clause, pos)
            if in_agg:
                raise SqlError("Analytic functions cannot be arguments to aggregate functions",
                               pos)
            if name in NAVIGATION:
                if args or node.star:
                    raise SqlError("Number of arguments does not match for function %s. "
                                   "Supported signature: %s()" % (name, name), pos)
                if name in ("RANK", "DENSE_RANK") and not node.over.order:
                    raise SqlError("Window ORDER BY is required for analytic function %s"
                                   % name, pos)
                inner, std, deps = "%s()" % name, "INT64", frozenset()
                base = TExpr(inner, std)
            elif name in AGGREGATES:
                base = self.aggregate(node, rec, pos, windowed=True)
                inner, std, deps = base.sql, base.std, base.deps
            else:
                raise SqlError("Function %s does not support an OVER clause" % name, pos)
            parts_sql = []
            deps = set(base.deps)
            if node.over.partition:
                ps = []
                for p in node.over.partition:
                    te = rec(p, allow_win=False, in_agg=False)
                    if te.std in ("FLOAT64", "STRUCT", "JSON") or te.repeated:
                        raise SqlError("Partitioning by expressions of type %s is not allowed"
                                       % _tname(te), p.pos)
                    deps |= te.deps
                    ps.append(te.sql)
                parts_sql.append("PARTITION BY " + ", ".join(ps))
            if node.over.order:
                os_ = []
                for ob in node.over.order:
                    te = rec(ob.expr, allow_win=False, in_agg=False)
                    self._check_orderable(te, ob.expr.pos)
                    deps |= te.deps
                    nulls = ob.nulls or ("LAST" if ob.desc else "FIRST")
                    os_.append("%s %s NULLS %s" % (te.sql, "DESC" if ob.desc else "ASC", nulls))
                parts_sql.append("ORDER BY " + ", ".join(os_))
            return TExpr("%s OVER (%s)" % (inner, " ".join(parts_sql)), std, frozenset(deps),
                         win=True)
        if name in NAVIGATION:
            raise SqlError("Analytic function %s cannot be called without an OVER clause"
                           % name, pos)
        if name in AGGREGATES:
            if not allow_agg:
                raise SqlError("Aggregate function %s not allowed in %s" % (name, clause), pos)
            if in_agg:
                raise SqlError("Aggregations of aggregations are not allowed", pos)
            return self.aggregate(node, rec, pos, windowed=False)
        if node.distinct or node.star:
            raise SqlError("Syntax error: Unexpected \"%s\"" % ("*" if node.star else "DISTINCT"),
                           pos)
        if name == "CURRENT_TIMESTAMP":
            if args:
                raise SqlError("Number of arguments does not match for function "
                               "CURRENT_TIMESTAMP. Supported signature: CURRENT_TIMESTAMP()", pos)
            self.out.uses_now = True
            return TExpr(":__now", "TIMESTAMP", const=True)
        if name in ("TIMESTAMP_ADD", "TIMESTAMP_SUB"):
            if len(args) != 2 or not isinstance(args[1], Interval):
                raise SqlError("No matching signature for function %s. Supported signature: "
                               "%s(TIMESTAMP, INTERVAL INT64 date_part)" % (name, name), pos)
            ts = self.coerce(rec(args[0]), "TIMESTAMP", args[0].pos)
            if ts.std not in ("TIMESTAMP", "NULL"):
                raise SqlError("No matching signature for function %s for argument types: %s, "
                               "INTERVAL INT64 DATE_TIME_PART" % (name, _tname(ts)), pos)
            iv = args[1]
            n = rec(iv.value)
            if n.std not in ("INT64", "NULL"):
                raise SqlError("No matching signature for function %s for argument types: "
                               "TIMESTAMP, INTERVAL %s DATE_TIME_PART" % (name, _tname(n)),
                               iv.value.pos)
            if iv.unit not in _UNIT_US:
                raise SqlError("%s does not support the %s date part when the argument is "
                               "TIMESTAMP type" % (name, iv.unit), iv.pos)
            sign = "+" if name == "TIMESTAMP_ADD" else "-"
            return _derive("(%s %s (%s) * %d)" % (ts.sql, sign, n.sql, _UNIT_US[iv.unit]),
                           "TIMESTAMP", ts, n)
        if name == "TIMESTAMP_TRUNC":
            if len(args) != 2 or not isinstance(args[1], Column) or len(args[1].parts) != 1:
                if len(args) == 3:
                    raise unsupported("TIMESTAMP_TRUNC with a time zone", pos)
                raise SqlError("No matching signature for function TIMESTAMP_TRUNC. Supported "
                               "signature: TIMESTAMP_TRUNC(TIMESTAMP, DATE_TIME_PART)", pos)
            part = args[1].parts[0].upper()
            if part.startswith("WEEK") and part != "WEEK":
                raise unsupported("WEEK(<weekday>)", args[1].pos)
            if part not in _TRUNC_PARTS:
                raise SqlError("A valid date part name is required but found %s"
                               % args[1].parts[0], args[1].pos)
            ts = self.coerce(rec(args[0]), "TIMESTAMP", args[0].pos)
            if ts.std not in ("TIMESTAMP", "NULL"):
                raise SqlError("No matching signature for function TIMESTAMP_TRUNC for argument "
                               "types: %s, DATE_TIME_PART" % _tname(ts), pos)
            return _derive("bq_ts_trunc(%s, '%s')" % (ts.sql, part), "TIMESTAMP", ts)
        if name in ("UNIX_MICROS", "UNIX_SECONDS"):
            self._arity(name, args, 1, pos)
            ts = self.coerce(rec(args[0]), "TIMESTAMP", args[0].pos)
            self._need_type(name, ts, ("TIMESTAMP",), pos)
            if name == "UNIX_MICROS":
                return _derive("(%s)" % ts.sql, "INT64", ts)
            return _derive("bq_floordiv(%s, 1000000)" % ts.sql, "INT64", ts)
        if name in ("TIMESTAMP_MICROS", "TIMESTAMP_SECONDS"):
            self._arity(name, args, 1, pos)
            a = rec(args[0])
            self._need_type(name, a, ("INT64",), pos)
            mult = 1 if name == "TIMESTAMP_MICROS" else 1_000_000
            return _derive("(%s * %d)" % (a.sql, mult), "TIMESTAMP", a)
        if name == "TIMESTAMP":
            self._arity(name, args, 1, pos)
            a = self.coerce(rec(args[0]), "TIMESTAMP", args[0].pos)
            self._need_type(name, a, ("TIMESTAMP",), pos)
            return a
        if name in ("COALESCE", "IFNULL"):
            if name == "IFNULL":
                self._arity(name, args, 2, pos)
            elif not args:
                raise SqlError("Number of arguments does not match for function COALESCE", pos)
            tes = [rec(a) for a in args]
            std = next((t.std for t in tes if not t.is_null), "NULL")
            for t in tes:
                if not t.is_null and t.std != std and not (
                        t.std in bqtypes.NUMERIC_TYPES and std in bqtypes.NUMERIC_TYPES):
                    raise SqlError("No matching signature for function %s for argument types: "
                                   "%s" % (name, ", ".join(_tname(x) for x in tes)), pos)
            if any(t.std == "FLOAT64" for t in tes):
                std = "FLOAT64"
            return _derive("COALESCE(%s)" % ", ".join(t.sql for t in tes), std, *tes)
        if name == "LENGTH":
            self._arity(name, args, 1, pos)
            a = rec(args[0])
            self._need_type(name, a, ("STRING",), pos)
            return _derive("LENGTH(%s)" % a.sql, "INT64", a)
        if name in KNOWN_UNSUPPORTED or name.startswith("SAFE") or name.startswith("NET"):
            raise unsupported("Function %s" % name, pos)
        raise SqlError("Function not found: %s" % name.lower(), pos)

    def _arity(self, name, args, n, pos):
        if len(args) != n:
            raise SqlError("Number of arguments does not match for function %s" % name, pos)

    def _need_type(self, name, te, types, pos):
        if te.is_null:
            return
        if te.std not in types or te.repeated:
            raise SqlError("No matching signature for function %s for argument types: %s. "
                           "Supported signature: %s(%s)" % (name, _tname(te), name, types[0]),
                           pos)

    def aggregate(self, node, rec, pos, windowed):
        name = node.name
        if name == "COUNT" and node.star:
            return TExpr("COUNT(*)", "INT64", agg=not windowed)
        if len(node.args) != 1:
            raise SqlError("Number of arguments does not match for aggregate function %s"
                           % name, pos)
        a = rec(node.args[0], allow_win=False, in_agg=True, allow_agg=True)
        if a.win:
            raise SqlError("Analytic functions cannot be arguments to aggregate functions", pos)
        d = "DISTINCT " if node.distinct else ""
        if name == "COUNT":
            if a.repeated or a.std == "STRUCT":
                pass
            return TExpr("COUNT(%s%s)" % (d, a.sql), "INT64", a.deps, agg=not windowed)
        if name == "COUNTIF":
            self._need_bool(a, "COUNTIF", pos)
            return TExpr("COUNT(CASE WHEN %s THEN 1 END)" % a.sql, "INT64", a.deps,
                         agg=not windowed)
        if name in ("MIN", "MAX"):
            self._check_orderable(a, node.args[0].pos)
            return TExpr("%s(%s%s)" % (name, d, a.sql), a.std if a.std != "NULL" else "INT64",
                         a.deps, agg=not windowed)
        if name == "ANY_VALUE":
            return TExpr("MIN(%s)" % a.sql, a.std, a.deps, agg=not windowed,
                         fields=a.fields, repeated=a.repeated)
        if name in ("LOGICAL_AND", "LOGICAL_OR"):
            self._need_bool(a, name, pos)
            fn = "MIN" if name == "LOGICAL_AND" else "MAX"
            return TExpr("%s(%s)" % (fn, a.sql), "BOOL", a.deps, agg=not windowed)
        if a.std not in bqtypes.NUMERIC_TYPES + ("NULL",) or a.repeated:
            raise SqlError("No matching signature for aggregate function %s for argument "
                           "types: %s" % (name, _tname(a)), pos)
        if name == "SUM":
            std = "INT64" if a.std in ("INT64", "NULL") else a.std
            return TExpr("SUM(%s%s)" % (d, a.sql), std, a.deps, agg=not windowed)
        return TExpr("AVG(%s%s)" % (d, a.sql), "FLOAT64", a.deps, agg=not windowed)


class _Ctx:
    def __init__(self, rel):
        self.rel = rel
        self.aliases = {}
        self.items = []
        self.alias_mode = False

    def alias_lookup(self, node):
        if len(node.parts) != 1:
            return None
        idx = self.aliases.get(node.parts[0].lower())
        if not idx:
            return None
        if len(idx) > 1:
            raise SqlError("Column name %s is ambiguous" % node.parts[0], node.pos)
        return self.items[idx[0]][1]


def _derive(sql, std, *parts):
    deps = frozenset().union(*(p.deps for p in parts)) if parts else frozenset()
    return TExpr(sql, std, deps, agg=any(p.agg for p in parts), win=any(p.win for p in parts),
                 const=all(p.const for p in parts))


def _tname(te):
    if te.repeated:
        return "ARRAY<%s>" % te.std
    return "INT64" if te.std == "NULL" else te.std


def _children(node):
    if isinstance(node, Unary):
        return [node.arg]
    if isinstance(node, Binary):
        return [node.left, node.right]
    if isinstance(node, IsNull):
        return [node.arg]
    if isinstance(node, InList):
        return [node.arg] + list(node.items)
    if isinstance(node, Between):
        return [node.arg, node.low, node.high]
    if isinstance(node, Like):
        return [node.arg, node.pattern]
    if isinstance(node, Func):
        out = []
        for a in node.args:
            out.append(a.value if isinstance(a, Interval) else a)
        if node.over is not None:
            out.extend(node.over.partition)
            out.extend(ob.expr for ob in node.over.order)
        return out
    return []


def compile_query(catalog, text, project, default_dataset, location, param_types):
    return Translator(catalog, project, default_dataset, location, param_types).translate(text)
