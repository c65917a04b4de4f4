//! ConfigMaps and Secrets: key formats, size limits, per-type required keys and the
//! `immutable` flag.

use pier_api::{FieldError, FieldPath};
use serde_json::Value;

use super::meta::{self, NameRule, IMMUTABLE};
use crate::names;
use crate::util::{get, obj_at, str_at};

/// Upstream's `MaxSecretSize` (also the ConfigMap limit): 1 MiB.
const MAX_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// The decoded size of a base64 string, without decoding it.
fn base64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad)
}

/// ValidateConfigMap.
pub fn config_map(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let data = obj_at(obj, "data");
    let binary = obj_at(obj, "binaryData");
    let mut total = 0;
    for (bag, this, other, other_name) in
        [("data", data, binary, "binaryData"), ("binaryData", binary, data, "data")]
    {
        let path = FieldPath::new(bag);
        for (key, value) in this.into_iter().flatten() {
            for msg in names::config_map_key(key) {
                errs.push(FieldError::invalid(&path.key(key), key.as_str(), &msg));
            }
            if other.is_some_and(|o| o.contains_key(key)) {
                let msg = format!("duplicate of key present in {other_name}");
                errs.push(FieldError::invalid(&path.key(key), key.as_str(), &msg));
            }
            let v = value.as_str().unwrap_or("");
            total += if bag == "data" { v.len() } else { base64_len(v) };
        }
    }
    if total > MAX_SIZE {
        // The empty path: the error is about the whole object.
        errs.push(FieldError::too_long(&FieldPath::new(""), MAX_SIZE));
    }
    errs
}

/// ValidateSecret.
pub fn secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta(obj, true, NameRule::Subdomain);
    let data_path = FieldPath::new("data");
    let data = obj_at(obj, "data");
    let mut total = 0;
    for (key, value) in data.into_iter().flatten() {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(&data_path.key(key), key.as_str(), &msg));
        }
        total += base64_len(value.as_str().unwrap_or(""));
    }
    if total > MAX_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let required = |k: &str| FieldError::required(&data_path.key(k), "");
    match str_at(obj, "type") {
        "kubernetes.io/service-account-token"
            if get(obj, "metadata.annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            let p = FieldPath::new("metadata").child("annotations").key("kubernetes.io/service-account.name");
            errs.push(FieldError::required(&p, ""));
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => errs.push(required(".dockercfg")),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(required(".dockerconfigjson"))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => errs.push(required("ssh-privatekey")),
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("tls.crt"));
            }
            if !has("tls.key") {
                errs.push(required("tls.key"));
            }
        }
        _ => {}
    }
    errs
}

fn immutable_rules(old: &Value, new: &Value, bags: &[&str], errs: &mut Vec<FieldError>) {
    if get(old, "immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if get(new, "immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(&FieldPath::new("immutable"), IMMUTABLE_SET));
    }
    for bag in bags {
        let empty = Value::Object(Default::default());
        let (o, n) = (get(old, bag).unwrap_or(&empty), get(new, bag).unwrap_or(&empty));
        if o != n {
            errs.push(FieldError::forbidden(&FieldPath::new(bag), IMMUTABLE_SET));
        }
    }
}

/// ValidateConfigMapUpdate.
pub fn config_map_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    immutable_rules(old, new, &["data", "binaryData"], &mut errs);
    super::merge(&mut errs, config_map(new));
    errs
}

/// ValidateSecretUpdate.
pub fn secret_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::object_meta_update(old, new);
    let (ot, nt) = (str_at(old, "type"), str_at(new, "type"));
    if ot != nt {
        errs.push(FieldError::invalid(&FieldPath::new("type"), nt, IMMUTABLE));
    }
    immutable_rules(old, new, &["data"], &mut errs);
    super::merge(&mut errs, secret(new));
    errs
}
