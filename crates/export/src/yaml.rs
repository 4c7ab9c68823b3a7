//! YAML out of a `serde_json::Value`, in block style, for the files Prometheus and Kubernetes
//! read. Every string is written double-quoted with JSON's escapes (a subset of YAML's), so no
//! value can turn into another type (`"on"`, `"1.0"`, `"null"`) or break the structure; keys
//! that are plain words are written bare so the files read like hand-written ones. Maps are
//! written in the order the `Value` holds them.

use serde_json::Value;

/// One YAML document for `value` (no leading `---`), ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => object(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => array(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Documents separated by `---`, the way `kubectl apply -f` reads many.
pub fn documents(values: &[Value]) -> String {
    values
        .iter()
        .map(to_string)
        .collect::<Vec<_>>()
        .join("---\n")
}

fn object(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        nested(out, value, indent + 2);
    }
}

fn array(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // `- key: value` with the other keys lined up under the first.
            Value::Object(map) if !map.is_empty() => {
                let mut first = String::new();
                object(&mut first, map, indent + 2);
                out.push(' ');
                out.push_str(&first[indent + 2..]);
            }
            other => nested(out, other, indent + 2),
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, or a block below.
fn nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            object(out, map, indent);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            array(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        // JSON's string syntax is valid double-quoted YAML.
        other => other.to_string(),
    }
}

/// A key as written: bare when it is a plain word YAML cannot read as anything else.
fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_quoted_strings() {
        // Keys in sorted order: the same with or without serde_json's `preserve_order`.
        let v = json!({
            "empty": [],
            "groups": [{"name": "a", "rules": [{"alert": "X", "expr": "up == 0", "labels": {"severity": "critical"}}]}],
            "n": 3,
            "nested": [[1, 2], {}],
            "on": "yes",
        });
        let expected = "\
empty: []
groups:
  - name: \"a\"
    rules:
      - alert: \"X\"
        expr: \"up == 0\"
        labels:
          severity: \"critical\"
\"n\": 3
nested:
  -
    - 1
    - 2
  - {}
\"on\": \"yes\"
";
        assert_eq!(to_string(&v), expected);
    }

    #[test]
    fn strings_keep_their_type_and_escapes() {
        let v = json!({"a": "1.0", "b": "line\nbreak \"quoted\"", "c": true, "d": null});
        assert_eq!(
            to_string(&v),
            "a: \"1.0\"\nb: \"line\\nbreak \\\"quoted\\\"\"\nc: true\nd: null\n"
        );
    }
}
