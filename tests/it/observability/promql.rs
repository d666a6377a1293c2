//! A reader of PromQL good enough to say which metrics an expression reads:
//! strings, label matchers (`{...}`), ranges (`[...]`), label lists
//! (`by (...)`) and Helm's own `{{ ... }}` actions are skipped; an identifier
//! before `(`, or an aggregation (which may put `by (...)` first), is a
//! function; operators spelled as words are skipped; any other identifier is
//! a metric. Not a parser, and it need not be one: taking a label for a
//! metric fails the check loudly (no such series). What it cannot see is a
//! name inside a matcher (`{__name__="..."}`) or inside a Helm variable;
//! the dashboard and the rules use neither.

/// Aggregation operators: they may take `by (...)` or `without (...)` before
/// their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Operators, modifiers and numbers spelled as words.
const WORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// A metric an expression reads, with the functions around it (outermost
/// first).
#[derive(Debug, PartialEq)]
pub(super) struct Use {
    pub name: String,
    pub within: Vec<String>,
}

/// An open parenthesis: the function it belongs to (if any), which of its
/// arguments is being read, and the metrics read inside it so far.
struct Frame {
    func: Option<String>,
    arg: usize,
    uses: Vec<(usize, Use)>,
}

/// The metrics `expr` reads. Grafana's `label_values(selector, label)` is
/// understood too: its last argument is a label, not a metric.
pub(super) fn metrics_read(expr: &str) -> Vec<Use> {
    let text = without_template_actions(expr);
    let b = text.as_bytes();
    let mut stack = vec![Frame {
        func: None,
        arg: 0,
        uses: vec![],
    }];
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'{' => i = skip_to(b, i, b'}'),
            b'[' => i = skip_to(b, i, b']'),
            b'(' => {
                stack.push(Frame {
                    func: pending.take(),
                    arg: 0,
                    uses: vec![],
                });
                i += 1;
            }
            b',' => {
                stack.last_mut().unwrap().arg += 1;
                i += 1;
            }
            b')' => {
                let frame = stack.pop().expect("balanced parentheses");
                let last_arg = frame.arg;
                let label_values = frame.func.as_deref() == Some("label_values");
                let parent = stack.last_mut().expect("balanced parentheses");
                for (arg, u) in frame.uses {
                    if !(label_values && arg == last_arg) {
                        parent.uses.push((parent.arg, u));
                    }
                }
                i += 1;
            }
            b'$' => {
                // A Grafana variable: `$name`, `$__rate_interval`, `${name}`.
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = skip_to(b, i, b'}');
                }
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // A number or a duration (`0.99`, `5m`).
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &text[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if b.get(next) == Some(&b'(') {
                        i = skip_to(b, next, b')');
                    }
                } else if WORDS.contains(&lower.as_str()) {
                    // An operator or a modifier, not a metric.
                } else if AGGREGATIONS.contains(&word) || b.get(next) == Some(&b'(') {
                    pending = Some(word.to_owned());
                } else {
                    let within = stack.iter().filter_map(|f| f.func.clone()).collect();
                    let frame = stack.last_mut().unwrap();
                    let name = word.to_owned();
                    frame.uses.push((frame.arg, Use { name, within }));
                }
            }
            _ => i += 1,
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced parentheses in {expr}");
    stack
        .pop()
        .unwrap()
        .uses
        .into_iter()
        .map(|(_, u)| u)
        .collect()
}

/// `text` with Helm's `{{ ... }}` actions taken out: in the rules template
/// they hold label matchers, windows and thresholds, never metric names.
fn without_template_actions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a {{ action is closed");
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The index after the quoted string starting at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() && b[i] != quote {
        i += if b[i] == b'\\' && quote != b'`' { 2 } else { 1 };
    }
    i + 1
}

/// The index after the `close` matching the bracket at `i`, skipping strings.
fn skip_to(b: &[u8], mut i: usize, close: u8) -> usize {
    let open = b[i];
    let mut depth = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unclosed {} in {}",
        open as char,
        String::from_utf8_lossy(b)
    );
}

#[test]
fn expressions_are_read_like_promql() {
    let names = |expr: &str| -> Vec<(String, Vec<String>)> {
        metrics_read(expr)
            .into_iter()
            .map(|u| (u.name, u.within))
            .collect()
    };
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (grpc_method, le) (rate(a_bucket{x="b{c}", y=~"(d|e)"}[$__rate_interval]))"#
        ),
        vec![("a_bucket".into(), v(&["sum", "rate"]))]
    );
    assert_eq!(
        names("sum(a) by (instance) - on (instance) group_left (pod) b offset 5m > bool 0.5e3"),
        vec![("a".into(), v(&["sum"])), ("b".into(), v(&[]))]
    );
    assert_eq!(
        names("(sum(rate(a[1m])) or vector(0)) / sum without (job) (b) and c unless Inf"),
        vec![
            ("a".into(), v(&["sum", "rate"])),
            ("b".into(), v(&["sum"])),
            ("c".into(), v(&[]))
        ]
    );
    assert_eq!(
        names("label_values(m{n=\"$namespace\"}, job)"),
        vec![("m".into(), v(&["label_values"]))]
    );
    assert_eq!(names("label_values(job)"), vec![]);
    assert_eq!(
        names("sum by (job) (rate(m{{ $selector }}[{{ $window }}]))\n  > {{ .ratio }}"),
        vec![("m".into(), v(&["sum", "rate"]))]
    );
    assert_eq!(
        names(r#"count_values("value", a) > topk(3, b)"#),
        vec![
            ("a".into(), v(&["count_values"])),
            ("b".into(), v(&["topk"]))
        ]
    );
}
