"""What a PromQL expression reads, and whether the real binaries export it.

Shared by the checks of the shipped Prometheus rules
(test_prometheus_rules.py) and of the Grafana dashboard
(test_grafana_dashboard.py): both must only name series, labels and label
values that mod_datos's /metrics and datos-loader's textfile carry, so a
series renamed in the C code breaks a test instead of muting an alert or
emptying a panel.

parse() reads an expression into its selectors (metric name and label
matchers) and its groupings (the labels of by/without/on/ignoring/
group_left/group_right, with the metric names they apply to). check()
compares them with exported_series() of the real exposition text. Grafana's
variables ($job, ${table}, [[x]]) may stand for a label value inside a regex
matcher; $__rate_interval and its kin may stand in a range.
"""
import re

# Labels Prometheus adds when it scrapes: no binary exports them.
TARGET_LABELS = frozenset({"job", "instance"})

AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio"})

FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_quantile", "histogram_avg", "histogram_count", "histogram_sum",
    "histogram_fraction", "histogram_stddev", "histogram_stdvar", "holt_winters",
    "double_exponential_smoothing", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
    "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label",
    "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time",
    "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi"})

# Functions whose string arguments name labels: not read by this module, so
# an expression using them is refused rather than half-checked.
LABEL_FUNCTIONS = frozenset({"label_replace", "label_join", "sort_by_label",
                             "sort_by_label_desc", "count_values"})

KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
                      "start", "end", "by", "without", "on", "ignoring", "group_left",
                      "group_right"})

# A Grafana variable: $name, ${name} or ${name:format}, [[name]].
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")

TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\](?!\]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<variable>\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\])
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=@])
  | (?P<punct>[{}(),])
""", re.X)


class PromQLError(ValueError):
    pass


class Selector:
    """One vector selector: a metric name and its label matchers."""

    def __init__(self, name, matchers, pos):
        self.name = name
        self.matchers = matchers      # [(label, op, value)]
        self.pos = pos                # token index, for scoping groupings

    def __repr__(self):
        return "%s{%s}" % (self.name, ",".join('%s%s"%s"' % m for m in self.matchers))


class Grouping:
    """Labels an aggregation groups by (or drops), or a binary operation
    matches on, and the token range of the expressions they apply to."""

    def __init__(self, keyword, labels, start, end):
        self.keyword = keyword
        self.labels = labels
        self.start, self.end = start, end


class Refs:
    def __init__(self, selectors, groupings):
        self.selectors = selectors
        self.groupings = groupings

    def names_in(self, g):
        return {s.name for s in self.selectors if g.start <= s.pos <= g.end}


def tokenize(expr):
    out, at = [], 0
    while at < len(expr):
        m = TOKEN.match(expr, at)
        if not m:
            raise PromQLError("cannot read %r at %r" % (expr, expr[at:at + 20]))
        at = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def _matching(tokens, i):
    """The index of the parenthesis closing the one at i."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == "(":
            depth += 1
        elif tokens[j][1] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise PromQLError("unbalanced parentheses")


def _opening(tokens, i):
    """The index of the parenthesis opening the one closing at i."""
    depth = 0
    for j in range(i, -1, -1):
        if tokens[j][1] == ")":
            depth += 1
        elif tokens[j][1] == "(":
            depth -= 1
            if depth == 0:
                return j
    raise PromQLError("unbalanced parentheses")


def _label_list(tokens, i):
    """The labels of `( a, b )` starting at i, and the index after it."""
    if i >= len(tokens) or tokens[i][1] != "(":
        raise PromQLError("a label list must follow")
    end = _matching(tokens, i)
    labels = []
    for kind, text in tokens[i + 1:end]:
        if kind == "ident":
            labels.append(text)
        elif text != ",":
            raise PromQLError("%r in a label list" % text)
    return labels, end + 1


def _matchers(tokens, i):
    """The matchers of `{ ... }` starting at i, and the index after it."""
    out = []
    j = i + 1
    while tokens[j][1] != "}":
        if tokens[j][1] == ",":
            j += 1
            continue
        try:
            (lk, label), (ok, op), (vk, value) = tokens[j:j + 3]
        except ValueError:
            raise PromQLError("an unfinished selector")
        if lk != "ident" or op not in ("=", "!=", "=~", "!~") or vk != "string":
            raise PromQLError("a matcher must be label op \"value\", not %s %s %s"
                              % (label, op, value))
        out.append((label, op, unquote(value)))
        j += 3
        if j >= len(tokens):
            raise PromQLError("an unfinished selector")
    return out, j + 1


def _enclosing(tokens, i):
    """The token range of the innermost parentheses around i (the whole
    expression at the top level)."""
    depth = 0
    for j in range(i, -1, -1):
        if tokens[j][1] == ")":
            depth += 1
        elif tokens[j][1] == "(":
            if depth == 0:
                return j, _matching(tokens, j)
            depth -= 1
    return 0, len(tokens) - 1


def parse(expr):
    tokens = tokenize(expr)
    selectors, groupings = [], []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text in ("by", "without"):
            labels, after = _label_list(tokens, i + 1)
            if i > 0 and tokens[i - 1][0] == "ident" and tokens[i - 1][1] in AGGREGATIONS:
                # sum by (a) (expr)
                start, end = after, _matching(tokens, after)
            elif i > 0 and tokens[i - 1][1] == ")":
                # sum (expr) by (a)
                start, end = _opening(tokens, i - 1), i - 1
            else:
                raise PromQLError("%s outside an aggregation" % text)
            groupings.append(Grouping(text, labels, start, end))
            i = after
        elif kind == "ident" and text in ("on", "ignoring", "group_left", "group_right"):
            if nxt != "(":
                i += 1            # group_left without labels
                continue
            labels, after = _label_list(tokens, i + 1)
            start, end = _enclosing(tokens, i)
            groupings.append(Grouping(text, labels, start, end))
            i = after
        elif kind == "ident" and nxt == "(" and (text in FUNCTIONS or text in AGGREGATIONS):
            if text in LABEL_FUNCTIONS:
                raise PromQLError("%s names labels in strings, which this check cannot read"
                                  % text)
            i += 1
        elif kind == "ident" and text in AGGREGATIONS and nxt in ("by", "without"):
            i += 1
        elif kind == "ident" and text.lower() in KEYWORDS:
            i += 1
        elif kind == "ident" and nxt == "(":
            raise PromQLError("unknown function %s" % text)
        elif kind == "ident":
            matchers, after = ([], i + 1)
            if nxt == "{":
                matchers, after = _matchers(tokens, i + 1)
            selectors.append(Selector(text, matchers, i))
            i = after
        elif text == "{":
            matchers, after = _matchers(tokens, i)
            names = [v for label, op, v in matchers if label == "__name__" and op == "="]
            if not names:
                raise PromQLError("a selector without a metric name")
            selectors.append(Selector(names[0], [m for m in matchers if m[0] != "__name__"], i))
            i = after
        elif kind == "variable":
            raise PromQLError("a Grafana variable %s outside a matcher or a range" % text)
        else:
            i += 1
    return Refs(selectors, groupings)


def exported_series(text):
    """{metric name: [{label: value}]} from Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s', line)
        if not m:
            raise PromQLError("not an exposition line: %r" % line)
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                 m.group(3) or ""))
        out.setdefault(m.group(1), []).append(labels)
    return out


def merge(*many):
    out = {}
    for series in many:
        for name, labels in series.items():
            out.setdefault(name, []).extend(labels)
    return out


# A label whose values the binaries render only once seen: an HTTP status.
# A regex on it must match some status, not necessarily one seen.
STATUS_LABELS = frozenset({"code"})
STATUSES = [str(c) for c in range(100, 600)]


def variables_in(value):
    return [a or b or c for a, b, c in VARIABLE.findall(value)]


def check(expr, series, variables=None, target_labels=TARGET_LABELS):
    """The problems of one expression against the exported series: names
    nothing exports, labels those series lack, values they never take, and
    Grafana variables that are not defined or list another label.
    variables: {name: the label whose values it lists, or None}."""
    variables = variables or {}
    try:
        refs = parse(expr)
    except PromQLError as e:
        return ["%s: %s" % (expr, e)]
    problems = []
    if not refs.selectors:
        problems.append("%s: reads no series" % expr)
    for s in refs.selectors:
        if s.name not in series:
            problems.append("%s: nothing exports %s" % (expr, s.name))
            continue
        for label, op, value in s.matchers:
            problems += _check_matcher(expr, s.name, series[s.name], label, op, value,
                                       variables, target_labels)
    for g in refs.groupings:
        names = refs.names_in(g)
        for label in g.labels:
            if label in target_labels:
                continue
            if not names:
                problems.append("%s: %s (%s) over no series" % (expr, g.keyword, label))
            elif not any(label in ls for n in names if n in series for ls in series[n]):
                problems.append("%s: %s (%s), a label none of %s has"
                                % (expr, g.keyword, label, sorted(names)))
    return problems


def _check_matcher(expr, name, exported, label, op, value, variables, target_labels):
    where = '%s: %s{%s%s"%s"}' % (expr, name, label, op, value)
    used = variables_in(value)
    if used:
        if op not in ("=~", "!~"):
            return ["%s: a variable needs a regex matcher (=~), for All and many values"
                    % where]
        bad = [v for v in used if v not in variables]
        if bad:
            return ["%s: variable %s is not defined" % (where, ", ".join(bad))]
        bad = [v for v in used if variables[v] not in (None, label)]
        if bad:
            return ["%s: variable %s lists %s values, not %s"
                    % (where, bad[0], variables[bad[0]], label)]
        if label not in target_labels and not any(label in ls for ls in exported):
            return ["%s: %s has no label %s" % (where, name, label)]
        return []
    if label in target_labels:
        return []
    have = {ls[label] for ls in exported if label in ls}
    if not have:
        return ["%s: %s has no label %s" % (where, name, label)]
    if label in STATUS_LABELS:
        universe = STATUSES
    else:
        universe = sorted(have)
    if op in ("=", "!="):
        if value not in universe:
            return ["%s: %s never takes %s=%r (only %s)" % (where, name, label, value,
                                                           sorted(have))]
        return []
    try:
        pattern = re.compile(value)
    except re.error as e:
        return ["%s: %s" % (where, e)]
    problems = []
    if re.fullmatch(r"\w+(\|\w+)*", value):
        for v in value.split("|"):
            if v not in universe:
                problems.append("%s: %s never takes %s=%r (only %s)"
                                % (where, name, label, v, sorted(have)))
    if not problems and not any(pattern.fullmatch(v) for v in universe):
        problems.append("%s: matches no value of %s (%s)" % (where, label, sorted(have)))
    return problems


def keys(expr):
    """(metric, matcher) for every selector of expr; a regex alternation of
    plain values is one key per value, a selector without matchers is
    (metric, "")."""
    out = set()
    for s in parse(expr).selectors:
        if not s.matchers:
            out.add((s.name, ""))
        for label, op, value in s.matchers:
            if op == "=~" and re.fullmatch(r"\w+(\|\w+)*", value):
                out.update((s.name, "%s=%s" % (label, v)) for v in value.split("|"))
            else:
                out.add((s.name, "%s%s%s" % (label, op, value)))
    return out
