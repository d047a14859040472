//! Decoding `application/x-www-form-urlencoded` bodies with Stripe's nested keys
//! (`phases[0][items][0][price]=price_1`, `expand[]=x`, `metadata[k]=v`) into a JSON tree whose
//! leaves are strings. Maps whose keys are all indexes become arrays, in index order.

use serde_json::{Map, Value};

/// Decodes a form body or query string into a tree. Later duplicates of a scalar key win, as
/// Stripe's parser does.
pub(crate) fn decode(raw: &str) -> Value {
    let mut root = Map::new();
    let mut appends: u64 = 0;
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let mut segments = split_key(&key);
        // `expand[]=a&expand[]=b`: give each `[]` a unique index so it becomes a list element.
        for seg in &mut segments {
            if seg.is_empty() {
                *seg = format!("{appends:020}");
                appends += 1;
            }
        }
        insert(&mut root, &segments, value.into_owned());
    }
    listify(Value::Object(root))
}

fn split_key(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    match key.find('[') {
        None => segments.push(key.to_owned()),
        Some(open) => {
            segments.push(key[..open].to_owned());
            let mut rest = &key[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                match stripped.find(']') {
                    Some(close) => {
                        segments.push(stripped[..close].to_owned());
                        rest = &stripped[close + 1..];
                    }
                    None => {
                        segments.push(stripped.to_owned());
                        rest = "";
                    }
                }
            }
        }
    }
    segments
}

fn insert(map: &mut Map<String, Value>, segments: &[String], value: String) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        map.insert(first.clone(), Value::String(value));
        return;
    }
    let slot = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(child) = slot {
        insert(child, rest, value);
    }
}

fn listify(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let all_indexes = !map.is_empty() && map.keys().all(|k| k.parse::<u64>().is_ok());
            if all_indexes {
                let mut items: Vec<(u64, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse::<u64>().unwrap_or(0), listify(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, listify(v))).collect())
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_lists_and_appends_decode_into_a_tree() {
        let v = decode(
            "customer=cus_1&phases[0][items][0][price]=price_1&phases[0][items][0][quantity]=1\
             &phases[1][duration][interval]=month&metadata[workflow_id]=wf%201&expand[]=a&expand[]=b",
        );
        assert_eq!(
            v,
            json!({
                "customer": "cus_1",
                "phases": [
                    {"items": [{"price": "price_1", "quantity": "1"}]},
                    {"duration": {"interval": "month"}}
                ],
                "metadata": {"workflow_id": "wf 1"},
                "expand": ["a", "b"]
            })
        );
    }

    #[test]
    fn list_indexes_are_ordered_numerically_not_as_text() {
        let body: String = (0..12)
            .map(|i| format!("line_items[{i}][price]=p{i}"))
            .collect::<Vec<_>>()
            .join("&");
        let v = decode(&body);
        assert_eq!(v["line_items"][10]["price"], "p10");
        assert_eq!(v["line_items"][2]["price"], "p2");
    }
}
