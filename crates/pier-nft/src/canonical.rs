//! Comparing rulesets: two tables built by different routes (a full sync; a full
//! sync and then partial ones, by nft or by netlink) must hold the same ruleset.

use std::collections::BTreeMap;

use serde_json::Value;

/// The ruleset of `nft -j list ruleset` output reduced to what must match: handles
/// dropped, set and map elements sorted, each chain's rules in order, other objects
/// sorted.
///
/// # Errors
///
/// When `json_listing` is not JSON.
pub fn canonical_ruleset(json_listing: &str) -> Result<Vec<String>, serde_json::Error> {
    let v: Value = serde_json::from_str(json_listing)?;
    let mut objects = Vec::new();
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        if item.get("metainfo").is_some() {
            continue;
        }
        let mut item = item.clone();
        strip(&mut item);
        if let Some(rule) = item.get("rule") {
            let chain = rule["chain"].as_str().unwrap_or_default().to_string();
            rules.entry(chain).or_default().push(rule.to_string());
        } else {
            objects.push(item.to_string());
        }
    }
    objects.sort();
    for (chain, list) in rules {
        objects.push(format!("chain {chain}: {}", list.join(" ; ")));
    }
    Ok(objects)
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("handle");
            for (key, value) in map.iter_mut() {
                strip(value);
                if key == "elem" {
                    if let Value::Array(items) = value {
                        items.sort_by_key(|i| i.to_string());
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_element_order_do_not_matter_but_rule_order_does() {
        let a = r#"{"nftables":[{"metainfo":{}},{"set":{"name":"s","handle":3,"elem":["b","a"]}},
            {"rule":{"chain":"c","handle":7,"expr":[1]}},{"rule":{"chain":"c","handle":8,"expr":[2]}}]}"#;
        let b = r#"{"nftables":[{"rule":{"chain":"c","handle":1,"expr":[1]}},
            {"set":{"name":"s","handle":9,"elem":["a","b"]}},{"rule":{"chain":"c","handle":2,"expr":[2]}}]}"#;
        let swapped = r#"{"nftables":[{"set":{"name":"s","elem":["a","b"]}},
            {"rule":{"chain":"c","expr":[2]}},{"rule":{"chain":"c","expr":[1]}}]}"#;
        assert_eq!(canonical_ruleset(a).expect("json"), canonical_ruleset(b).expect("json"));
        assert_ne!(canonical_ruleset(a).expect("json"), canonical_ruleset(swapped).expect("json"));
        assert!(canonical_ruleset("not json").is_err());
    }
}
