//! JSON compared structurally: every difference by its path, objects by
//! member name, arrays by position, numbers by value (`1` equals `1.0`).

use reprise_model::redact::{JsonPath, PathSegment, render_path, render_pattern};
use serde::Serialize;
use serde_json::Value;

/// What changed at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Same type, another value.
    Changed,
    /// Only the replayed side has it.
    Added,
    /// Only the recorded side has it.
    Removed,
    /// Another JSON type (a number became a string...).
    TypeChanged,
}

impl ChangeKind {
    /// The report's word for it.
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::Changed => "changed",
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::TypeChanged => "type changed",
        }
    }
}

/// One difference between two documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Where, with array positions: `$.items[3].price`.
    pub path: String,
    /// Where, positions as `[*]`: `$.items[*].price` (what reports count).
    pub pattern: String,
    /// What changed.
    pub kind: ChangeKind,
    /// The recorded value (absent when added).
    pub recorded: Option<Value>,
    /// The replayed value (absent when removed).
    pub replayed: Option<Value>,
    /// More about it where there is more to say: for text, a unified
    /// diff of the two bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every difference between `recorded` and `replayed`, except under the
/// `ignore` paths.
pub fn diff(recorded: &Value, replayed: &Value, ignore: &[JsonPath]) -> Vec<Difference> {
    diff_with(recorded, replayed, ignore, &[])
}

/// Like [`diff`]; the arrays the `unordered` paths select are compared as
/// multisets: an element is the same wherever it moved, and what has no
/// equal on the other side is added or removed at its position.
pub fn diff_with(
    recorded: &Value,
    replayed: &Value,
    ignore: &[JsonPath],
    unordered: &[JsonPath],
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut at = Vec::new();
    let rules = Rules { ignore, unordered };
    walk(recorded, replayed, &rules, &mut at, &mut out);
    out
}

struct Rules<'a> {
    ignore: &'a [JsonPath],
    unordered: &'a [JsonPath],
}

fn walk(
    a: &Value,
    b: &Value,
    rules: &Rules<'_>,
    at: &mut Vec<PathSegment>,
    out: &mut Vec<Difference>,
) {
    let ignore = rules.ignore;
    if !at.is_empty() && ignore.iter().any(|p| p.matches(at)) {
        return;
    }
    if let (Value::Array(x), Value::Array(y)) = (a, b)
        && rules.unordered.iter().any(|p| p.selects(at))
    {
        multiset(x, y, ignore, at, out);
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, left) in x {
                at.push(PathSegment::Key(key.clone()));
                match y.get(key) {
                    Some(right) => walk(left, right, rules, at, out),
                    None => push(out, ignore, at, ChangeKind::Removed, Some(left), None),
                }
                at.pop();
            }
            for (key, right) in y {
                if !x.contains_key(key) {
                    at.push(PathSegment::Key(key.clone()));
                    push(out, ignore, at, ChangeKind::Added, None, Some(right));
                    at.pop();
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                at.push(PathSegment::Index(i));
                match (x.get(i), y.get(i)) {
                    (Some(left), Some(right)) => walk(left, right, rules, at, out),
                    (Some(left), None) => {
                        push(out, ignore, at, ChangeKind::Removed, Some(left), None);
                    }
                    (None, Some(right)) => {
                        push(out, ignore, at, ChangeKind::Added, None, Some(right));
                    }
                    (None, None) => {}
                }
                at.pop();
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let same = x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q);
            if !same {
                push(out, ignore, at, ChangeKind::Changed, Some(a), Some(b));
            }
        }
        _ if std::mem::discriminant(a) == std::mem::discriminant(b) => {
            if a != b {
                push(out, ignore, at, ChangeKind::Changed, Some(a), Some(b));
            }
        }
        _ => push(out, ignore, at, ChangeKind::TypeChanged, Some(a), Some(b)),
    }
}

/// Arrays as multisets: elements matched by value, in any order.
fn multiset(
    x: &[Value],
    y: &[Value],
    ignore: &[JsonPath],
    at: &mut Vec<PathSegment>,
    out: &mut Vec<Difference>,
) {
    let mut left: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for (i, v) in x.iter().enumerate().rev() {
        left.entry(canonical(v)).or_default().push(i);
    }
    let mut added = Vec::new();
    for (i, v) in y.iter().enumerate() {
        match left.get_mut(&canonical(v)).and_then(Vec::pop) {
            Some(_) => {}
            None => added.push(i),
        }
    }
    let mut removed: Vec<usize> = left.into_values().flatten().collect();
    removed.sort_unstable();
    for i in removed {
        at.push(PathSegment::Index(i));
        push(out, ignore, at, ChangeKind::Removed, Some(&x[i]), None);
        at.pop();
    }
    for i in added {
        at.push(PathSegment::Index(i));
        push(out, ignore, at, ChangeKind::Added, None, Some(&y[i]));
        at.pop();
    }
}

/// A value as text with object members in name order, so that equal
/// values give equal text whatever order their members came in.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map_or_else(|| value.clone(), |f| Value::from(f as i64)),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

fn push(
    out: &mut Vec<Difference>,
    ignore: &[JsonPath],
    at: &[PathSegment],
    kind: ChangeKind,
    recorded: Option<&Value>,
    replayed: Option<&Value>,
) {
    if ignore.iter().any(|p| p.matches(at)) {
        return;
    }
    out.push(Difference {
        path: render_path(at),
        pattern: render_pattern(at),
        kind,
        recorded: recorded.cloned(),
        replayed: replayed.cloned(),
        detail: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(a: Value, b: Value, ignore: &[&str]) -> Vec<(String, ChangeKind)> {
        let ignore: Vec<JsonPath> = ignore.iter().map(|p| JsonPath::parse(p).unwrap()).collect();
        diff(&a, &b, &ignore)
            .into_iter()
            .map(|d| (d.path, d.kind))
            .collect()
    }

    #[test]
    fn identical_documents_have_no_difference() {
        let doc = json!({"a": [1, {"b": null}], "c": "x", "n": 1});
        assert!(paths(doc.clone(), doc, &[]).is_empty());
        assert!(paths(json!({"n": 1}), json!({"n": 1.0}), &[]).is_empty());
        // Member order does not matter.
        assert!(paths(json!({"a": 1, "b": 2}), json!({"b": 2, "a": 1}), &[]).is_empty());
    }

    #[test]
    fn each_difference_by_path_and_kind() {
        let got = paths(
            json!({"items": [{"price": 10}, {"price": 5}], "gone": 1, "t": 1, "s": "x"}),
            json!({"items": [{"price": 12}, {"price": 5}, {"price": 1}], "new": true, "t": "1", "s": "y"}),
            &[],
        );
        assert_eq!(
            got,
            [
                ("$.items[0].price".to_string(), ChangeKind::Changed),
                ("$.items[2]".to_string(), ChangeKind::Added),
                ("$.gone".to_string(), ChangeKind::Removed),
                ("$.t".to_string(), ChangeKind::TypeChanged),
                ("$.s".to_string(), ChangeKind::Changed),
                ("$.new".to_string(), ChangeKind::Added),
            ]
        );
        let d = &diff(&json!({"a": [1, 2]}), &json!({"a": [1, 3]}), &[])[0];
        assert_eq!((d.path.as_str(), d.pattern.as_str()), ("$.a[1]", "$.a[*]"));
        assert_eq!(
            (d.recorded.clone(), d.replayed.clone()),
            (Some(json!(2)), Some(json!(3)))
        );
    }

    #[test]
    fn unordered_arrays_are_multisets() {
        let unordered = [JsonPath::parse("$.tags").unwrap()];
        let a = json!({"tags": ["a", {"x": 1, "y": 2}, "b", "b"], "list": [1, 2]});
        let b = json!({"tags": ["b", "a", {"y": 2, "x": 1.0}, "c"], "list": [2, 1]});
        let got: Vec<(String, ChangeKind)> = diff_with(&a, &b, &[], &unordered)
            .into_iter()
            .map(|d| (d.path, d.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("$.tags[3]".to_string(), ChangeKind::Removed),
                ("$.tags[3]".to_string(), ChangeKind::Added),
                // Not unordered: by position.
                ("$.list[0]".to_string(), ChangeKind::Changed),
                ("$.list[1]".to_string(), ChangeKind::Changed),
            ]
        );
    }

    #[test]
    fn ignored_paths_hide_what_they_select_and_below() {
        let a = json!({"id": 1, "meta": {"at": 1, "by": "x"}, "items": [{"ts": 1, "v": 1}]});
        let b = json!({"id": 2, "meta": {"at": 2, "by": "y"}, "items": [{"ts": 2, "v": 2}], "extra": 1});
        let got = paths(a, b, &["$.id", "$.meta", "$..ts", "$.extra"]);
        assert_eq!(got, [("$.items[0].v".to_string(), ChangeKind::Changed)]);
    }
}
