//! Kind-specific admission: defaulting, validation and Service IP/port allocation,
//! applied to every create and update (the logic itself lives in `pier-admission`).

use std::sync::{Arc, Mutex};

use pier_api::ResourceDef;
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

/// Reservations made for one write, kept only if the write lands.
#[must_use = "commit or roll back the allocation"]
pub struct Allocation {
    inner: Option<(Arc<Mutex<pier_admission::ServiceAllocator>>, pier_admission::AllocationTx)>,
}

impl Allocation {
    fn none() -> Self {
        Allocation { inner: None }
    }

    pub fn commit(self) {
        if let Some((alloc, tx)) = self.inner {
            if let Ok(mut a) = alloc.lock() {
                a.commit(tx);
            }
        }
    }

    pub fn rollback(self) {
        if let Some((alloc, tx)) = self.inner {
            if let Ok(mut a) = alloc.lock() {
                a.rollback(tx);
            }
        }
    }
}

#[derive(Clone)]
pub struct Admission {
    services: Arc<Mutex<pier_admission::ServiceAllocator>>,
}

impl Admission {
    pub fn new(allocator: pier_admission::ServiceAllocator) -> Self {
        Admission { services: Arc::new(Mutex::new(allocator)) }
    }

    fn is_service(res: &ResourceDef) -> bool {
        res.group.is_empty() && res.plural == "services"
    }

    fn lock(&self) -> ApiResult<std::sync::MutexGuard<'_, pier_admission::ServiceAllocator>> {
        self.services.lock().map_err(|_| ApiError::internal("service allocator lock poisoned"))
    }

    /// Rebuilds allocations from the services in the store (after a restart).
    pub fn restore(&self, services: &[Value]) -> ApiResult<()> {
        self.lock()?.restore(services);
        Ok(())
    }

    pub fn admit_create(
        &self,
        res: &'static ResourceDef,
        obj: &mut Value,
        trusted: bool,
    ) -> ApiResult<Allocation> {
        convert_input(res, obj);
        pier_admission::apply_defaults(res.group, res.kind, obj);
        let name = crate::meta::name(obj).unwrap_or("").to_string();
        let errors =
            if trusted { Vec::new() } else { pier_admission::validate_create(res.group, res.kind, obj) };
        if !errors.is_empty() {
            return Err(ApiError::invalid(res, &name, &errors));
        }
        if !Self::is_service(res) {
            return Ok(Allocation::none());
        }
        let tx =
            self.lock()?.allocate_on_create(obj).map_err(|errors| allocation_error(res, &name, &errors))?;
        Ok(Allocation { inner: Some((self.services.clone(), tx)) })
    }

    pub fn admit_update(
        &self,
        res: &'static ResourceDef,
        old: &Value,
        new: &mut Value,
        trusted: bool,
    ) -> ApiResult<Allocation> {
        convert_input(res, new);
        pier_admission::apply_defaults(res.group, res.kind, new);
        let name = crate::meta::name(new).unwrap_or("").to_string();
        if !Self::is_service(res) {
            if trusted {
                return Ok(Allocation::none());
            }
            let errors = pier_admission::validate_update(res.group, res.kind, old, new);
            if !errors.is_empty() {
                return Err(ApiError::invalid(res, &name, &errors));
            }
            return Ok(Allocation::none());
        }
        // Allocation first: it fills in what a type change needs (ports, IPs), which
        // validation then checks.
        let tx = self
            .lock()?
            .allocate_on_update(old, new)
            .map_err(|errors| allocation_error(res, &name, &errors))?;
        let errors =
            if trusted { Vec::new() } else { pier_admission::validate_update(res.group, res.kind, old, new) };
        if !errors.is_empty() {
            if let Ok(mut a) = self.services.lock() {
                a.rollback(tx);
            }
            return Err(ApiError::invalid(res, &name, &errors));
        }
        Ok(Allocation { inner: Some((self.services.clone(), tx)) })
    }

    /// Frees what a deleted object held.
    pub fn release(&self, res: &ResourceDef, obj: &Value) {
        if Self::is_service(res) {
            if let Ok(mut a) = self.services.lock() {
                a.release(obj);
            }
        }
    }
}

/// An exhausted pool is the server's problem (500), anything else the request's (422).
fn allocation_error(res: &ResourceDef, name: &str, errors: &[pier_api::FieldError]) -> ApiError {
    if pier_admission::is_internal(errors) {
        let detail: Vec<String> = errors.iter().map(|e| e.detail.clone()).collect();
        return ApiError::internal(detail.join(", "));
    }
    ApiError::invalid(res, name, errors)
}

/// What upstream does while converting a request to its internal form: a Secret's
/// write-only `stringData` is merged into `data` (base64) and never stored.
fn convert_input(res: &ResourceDef, obj: &mut Value) {
    use base64::Engine;
    if !(res.group.is_empty() && res.plural == "secrets") {
        return;
    }
    let Some(map) = obj.as_object_mut() else { return };
    let Some(Value::Object(string_data)) = map.shift_remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !data.is_object() {
        *data = Value::Object(serde_json::Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            data.insert(k, Value::String(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_merged_into_data() {
        let secrets = pier_api::registry::find("", "secrets").expect("secrets");
        let mut s = serde_json::json!({"data": {"a": "eA=="}, "stringData": {"b": "hi", "a": "y"}});
        convert_input(secrets, &mut s);
        assert_eq!(s, serde_json::json!({"data": {"a": "eQ==", "b": "aGk="}}));
    }
}
