//! The REST API: routing table and multicast groups.
//!
//! Requests are checked strictly, field by field, and every problem is reported at once as
//! `ValidationFailed` with an `error_detail` entry per field, in the shape the service's
//! validation layer uses (`{"loc": ["body", "DevEUI"], "msg": ..., "type": ...}`). Keys the
//! API does not define are refused too, so a client that misspells one learns it here
//! rather than against the live service. Nothing a client sends can make this module
//! panic or answer 5xx.

use std::str::FromStr;

use serde_json::{Map, Value};

use ran_routing::{DevAddr, DevEui, DeviceIdentity, JoinEui, MulticastAddr, MulticastGroup};
use serde::Serialize;

use crate::http::{FieldError, Request, Response};
use crate::store::{DeviceUpdate, GroupUpdate, Refusal, Store};

/// `{"deleted": n}`, the answer to the delete calls.
#[derive(Serialize)]
struct Deleted {
    deleted: u64,
}

/// Largest `Details` string the emulator stores, in bytes. The service documents a limit
/// without its value; this one is generous and keeps memory bounded.
pub(crate) const MAX_DETAILS_LEN: usize = 16 * 1024;

/// The HTTP status for each of the service's error codes. The service does not document
/// its statuses (clients map by `error_code`); these are the conventional ones.
pub(crate) fn status_of(code: &str) -> u16 {
    match code {
        "Unauthorized" => 401,
        "ValidationFailed" => 422,
        "Device.AlreadyExists"
        | "MulticastGroup.AlreadyExists"
        | "MulticastGroup.AlreadyContainsTheDevice" => 409,
        "Device.NotFound" | "MulticastGroup.NotFound" => 404,
        "Device.LimitExhausted" => 403,
        _ => 400,
    }
}

fn refused(r: Refusal) -> Response {
    Response::error(status_of(r.code), r.code, r.description, None)
}

fn validation_failed(errors: Vec<FieldError>) -> Response {
    Response::error(
        422,
        "ValidationFailed",
        "request validation failed",
        Some(errors),
    )
}

fn field_error(loc: &[&str], msg: impl Into<String>, kind: &str) -> FieldError {
    FieldError {
        loc: loc.iter().map(|s| (*s).to_owned()).collect(),
        msg: msg.into(),
        kind: kind.to_owned(),
    }
}

/// Collects the field errors of one request while its values are taken out.
struct Fields {
    /// Where the fields live: `["body"]`, `["body", "update"]` or `["query"]`.
    at: Vec<String>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn new(at: &[&str]) -> Self {
        Self {
            at: at.iter().map(|s| (*s).to_owned()).collect(),
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, path: &[&str], msg: impl Into<String>, kind: &str) {
        let mut loc = self.at.clone();
        loc.extend(path.iter().map(|s| (*s).to_owned()));
        self.errors.push(FieldError {
            loc,
            msg: msg.into(),
            kind: kind.to_owned(),
        });
    }

    /// Refuses keys outside `allowed`.
    fn only(&mut self, obj: &Map<String, Value>, allowed: &[&str]) {
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.fail(&[key], "extra fields not permitted", "value_error.extra");
        }
    }

    /// A value that must be present and not null.
    fn required<'v>(&mut self, obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        match obj.get(key) {
            None => {
                self.fail(&[key], "field required", "value_error.missing");
                None
            }
            Some(Value::Null) => {
                self.fail(
                    &[key],
                    "none is not an allowed value",
                    "type_error.none.not_allowed",
                );
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A hex identifier from a JSON string.
    fn id<T: FromStr>(&mut self, path: &[&str], value: &Value) -> Option<T> {
        let Value::String(text) = value else {
            self.fail(path, "str type expected", "type_error.str");
            return None;
        };
        self.id_text(path, text)
    }

    fn id_text<T: FromStr>(&mut self, path: &[&str], text: &str) -> Option<T> {
        match text.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail(
                    path,
                    format!("{text:?} is not a valid hex string of the right size"),
                    "value_error.hex",
                );
                None
            }
        }
    }

    fn required_id<T: FromStr>(&mut self, obj: &Map<String, Value>, key: &str) -> Option<T> {
        let value = self.required(obj, key)?;
        self.id(&[key], value)
    }

    /// A list of hex identifiers.
    fn id_list<T: FromStr>(&mut self, key: &str, value: &Value) -> Option<Vec<T>> {
        let Value::Array(items) = value else {
            self.fail(&[key], "value is not a valid list", "type_error.list");
            return None;
        };
        let before = self.errors.len();
        let ids: Vec<T> = items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.id(&[key, &i.to_string()], v))
            .collect();
        (self.errors.len() == before).then_some(ids)
    }

    fn string(&mut self, key: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(&[key], "str type expected", "type_error.str");
                None
            }
        }
    }

    fn group_name(&mut self, key: &str, value: &Value) -> Option<String> {
        let name = self.string(key, value)?;
        if name.chars().count() > MulticastGroup::MAX_NAME_LEN {
            self.fail(
                &[key],
                format!(
                    "ensure this value has at most {} characters",
                    MulticastGroup::MAX_NAME_LEN
                ),
                "value_error.any_str.max_length",
            );
            return None;
        }
        Some(name)
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Response> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ if self.errors.is_empty() => Err(validation_failed(vec![field_error(
                &["body"],
                "invalid request",
                "value_error",
            )])),
            _ => Err(validation_failed(self.errors)),
        }
    }
}

/// Parses a JSON object body.
fn object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let kind = if body.iter().all(u8::is_ascii_whitespace) {
            "value_error.missing"
        } else {
            "value_error.jsondecode"
        };
        validation_failed(vec![field_error(
            &["body", &e.column().to_string()],
            format!("invalid JSON: {e}"),
            kind,
        )])
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(validation_failed(vec![field_error(
            &["body"],
            "value is not a valid dict",
            "type_error.dict",
        )])),
    }
}

/// Dispatches `{base}/{route}` (no leading slash) to its handler; `None` when no such
/// route exists.
pub(crate) fn handle(
    store: &std::sync::Mutex<Store>,
    route: &str,
    req: &Request,
    authorize: impl FnOnce(&Request) -> Result<(), Response>,
    max_response_bytes: usize,
) -> Option<Response> {
    type Handler<'a> = &'a dyn Fn(&mut Store, &Request) -> Result<Response, Response>;
    let select = move |store: &mut Store, req: &Request| select(store, req, max_response_bytes);
    let (method, handler): (&str, Handler) = match route {
        "devices/select" => ("GET", &select),
        "devices/insert" => ("POST", &insert),
        "devices/update" => ("POST", &update),
        "devices/drop" => ("POST", &drop_devices),
        "devices/drop-all" => ("POST", &drop_all),
        "multicast/multicast-groups/create" => ("POST", &create_group),
        "multicast/multicast-groups/update" => ("POST", &update_group),
        "multicast/multicast-groups/get" => ("POST", &get_groups),
        "multicast/multicast-groups/delete" => ("POST", &delete_groups),
        "multicast/multicast-groups/add-device" => ("POST", &add_device),
        "multicast/multicast-groups/remove-device" => ("POST", &remove_device),
        _ => return None,
    };
    if let Err(refusal) = authorize(req) {
        return Some(refusal);
    }
    if req.method != method {
        return Some(
            Response::error(
                405,
                "Unknown",
                format!("method {} not allowed, use {method}", req.method),
                None,
            )
            .with_header("Allow", method),
        );
    }
    // A panic in a handler would poison the lock; the data stays consistent because every
    // handler validates before it mutates, so keep serving.
    let mut store = crate::sync::lock(store);
    Some(handler(&mut store, req).unwrap_or_else(|e| e))
}

fn select(store: &mut Store, req: &Request, max_bytes: usize) -> Result<Response, Response> {
    let mut f = Fields::new(&["query"]);
    let mut filter = None;
    let values = req.query_values("DevEUIs");
    if !values.is_empty() {
        let mut ids = Vec::new();
        for (i, text) in values.iter().enumerate() {
            if let Some(id) = f.id_text::<DevEui>(&["DevEUIs", &i.to_string()], text) {
                ids.push(id);
            }
        }
        filter = Some(ids);
    }
    let count = |f: &mut Fields, key: &str| -> Option<usize> {
        let values = req.query_values(key);
        let text = values.last()?;
        match text.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                f.fail(
                    &[key],
                    "ensure this value is a non-negative integer",
                    "type_error.integer",
                );
                None
            }
        }
    };
    let offset = count(&mut f, "offset").unwrap_or(0);
    let limit = count(&mut f, "limit");
    f.finish(Some(()))?;
    let devices = store.select_iter(filter.as_deref(), offset, limit);
    let answer = Response::json_list(crate::http::json_list(devices, max_bytes), max_bytes);
    if answer.status == 200 {
        Ok(answer)
    } else {
        Err(answer)
    }
}

fn insert(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["DevEUI", "JoinEUI", "DevAddr", "Details"]);
    let dev_eui = f.required_id::<DevEui>(&obj, "DevEUI");
    // Optional keys given as null count as absent, as the service's validation treats them.
    let optional = |key: &str| obj.get(key).filter(|v| !v.is_null());
    let join_eui = optional("JoinEUI").and_then(|v| f.id::<JoinEui>(&["JoinEUI"], v));
    let dev_addr = optional("DevAddr").and_then(|v| f.id::<DevAddr>(&["DevAddr"], v));
    let identity = match (optional("JoinEUI"), optional("DevAddr")) {
        (Some(_), Some(_)) => {
            f.fail(
                &[],
                "only one of JoinEUI (OTAA) or DevAddr (ABP) may be given",
                "value_error",
            );
            None
        }
        (None, None) => {
            f.fail(
                &[],
                "one of JoinEUI (OTAA) or DevAddr (ABP) must be given",
                "value_error",
            );
            None
        }
        _ => join_eui
            .map(DeviceIdentity::from)
            .or(dev_addr.map(DeviceIdentity::from)),
    };
    let details = match optional("Details") {
        None => None,
        Some(v) => f.string("Details", v).filter(|text| {
            if text.len() > MAX_DETAILS_LEN {
                f.fail(
                    &["Details"],
                    format!("ensure this value has at most {MAX_DETAILS_LEN} bytes"),
                    "value_error.any_str.max_length",
                );
                false
            } else if serde_json::from_str::<Value>(text).is_err() {
                f.fail(
                    &["Details"],
                    "Details must be a string of JSON",
                    "value_error.json",
                );
                false
            } else {
                true
            }
        }),
    };
    let (dev_eui, identity) = f.finish(dev_eui.zip(identity))?;
    let device = store.insert(dev_eui, identity, details).map_err(refused)?;
    Ok(Response::json(200, &device))
}

fn update(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(
        &obj,
        &["DevEUI", "JoinEUI", "ActiveDevAddr", "TargetDevAddr"],
    );
    let dev_eui = f.required_id::<DevEui>(&obj, "DevEUI");
    let join_eui = f.required_id::<JoinEui>(&obj, "JoinEUI");
    let addr = |f: &mut Fields, key: &str| -> Option<DevAddr> {
        // Omitted means "unchanged"; null is refused, as the service documents.
        obj.get(key).and_then(|v| {
            if v.is_null() {
                f.fail(
                    &[key],
                    "none is not an allowed value",
                    "type_error.none.not_allowed",
                );
                None
            } else {
                f.id(&[key], v)
            }
        })
    };
    let change = DeviceUpdate {
        active_dev_addr: addr(&mut f, "ActiveDevAddr"),
        target_dev_addr: addr(&mut f, "TargetDevAddr"),
    };
    if !obj.contains_key("ActiveDevAddr") && !obj.contains_key("TargetDevAddr") {
        f.fail(
            &[],
            "at least one of ActiveDevAddr or TargetDevAddr must be given",
            "value_error",
        );
    }
    let (dev_eui, join_eui) = f.finish(dev_eui.zip(join_eui))?;
    let device = store.update(dev_eui, join_eui, change).map_err(refused)?;
    Ok(Response::json(200, &device))
}

fn drop_devices(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["DevEUIs"]);
    // The specification marks DevEUIs optional: without it nothing is dropped.
    let ids = match obj.get("DevEUIs") {
        None => Some(Vec::new()),
        Some(v) => f.id_list::<DevEui>("DevEUIs", v),
    };
    let ids = f.finish(ids)?;
    let deleted = store.drop_devices(&ids);
    Ok(Response::json(200, &Deleted { deleted }))
}

fn drop_all(store: &mut Store, _req: &Request) -> Result<Response, Response> {
    let deleted = store.drop_all();
    Ok(Response::json(200, &Deleted { deleted }))
}

fn create_group(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["name", "addr"]);
    let name = f
        .required(&obj, "name")
        .and_then(|v| f.group_name("name", v));
    let addr = f.required_id::<MulticastAddr>(&obj, "addr");
    let (name, addr) = f.finish(name.zip(addr))?;
    let group = store.create_group(name, addr).map_err(refused)?;
    Ok(Response::json(200, &group))
}

fn update_group(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["addr", "update"]);
    let addr = f.required_id::<MulticastAddr>(&obj, "addr");
    let change = match f.required(&obj, "update") {
        None => None,
        Some(Value::Object(upd)) => {
            let mut inner = Fields::new(&["body", "update"]);
            inner.only(upd, &["name", "addr"]);
            let given = |key: &str| upd.get(key).filter(|v| !v.is_null());
            let change = GroupUpdate {
                name: given("name").and_then(|v| inner.group_name("name", v)),
                addr: given("addr").and_then(|v| inner.id(&["addr"], v)),
            };
            if given("name").is_none() && given("addr").is_none() {
                inner.fail(
                    &[],
                    "at least one of name or addr must be given",
                    "value_error",
                );
            }
            f.errors.append(&mut inner.errors);
            Some(change)
        }
        Some(_) => {
            f.fail(&["update"], "value is not a valid dict", "type_error.dict");
            None
        }
    };
    let (addr, change) = f.finish(addr.zip(change))?;
    let group = store.update_group(addr, change).map_err(refused)?;
    Ok(Response::json(200, &group))
}

fn addr_list(req: &Request) -> Result<Vec<MulticastAddr>, Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["addrs"]);
    let addrs = f
        .required(&obj, "addrs")
        .and_then(|v| f.id_list::<MulticastAddr>("addrs", v));
    f.finish(addrs)
}

fn get_groups(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let addrs = addr_list(req)?;
    Ok(Response::json(200, &store.groups(&addrs)))
}

fn delete_groups(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let addrs = addr_list(req)?;
    let deleted = store.delete_groups(&addrs);
    Ok(Response::json(200, &Deleted { deleted }))
}

fn group_and_device(req: &Request) -> Result<(MulticastAddr, DevEui), Response> {
    let obj = object(&req.body)?;
    let mut f = Fields::new(&["body"]);
    f.only(&obj, &["addr", "dev_eui"]);
    let addr = f.required_id::<MulticastAddr>(&obj, "addr");
    let dev_eui = f.required_id::<DevEui>(&obj, "dev_eui");
    f.finish(addr.zip(dev_eui))
}

fn add_device(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let (addr, dev_eui) = group_and_device(req)?;
    store.add_device(addr, dev_eui).map_err(refused)?;
    Ok(Response::json(200, &serde_json::json!({"is_added": true})))
}

fn remove_device(store: &mut Store, req: &Request) -> Result<Response, Response> {
    let (addr, dev_eui) = group_and_device(req)?;
    let is_removed = store.remove_device(addr, dev_eui);
    Ok(Response::json(
        200,
        &serde_json::json!({ "is_removed": is_removed }),
    ))
}
