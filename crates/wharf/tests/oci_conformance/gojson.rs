//! The two sides of Go's `encoding/json` that the suite relies on:
//!
//! * producing documents the way `json.MarshalIndent(v, "", "\t")` does (field order as declared,
//!   tab indentation, `": "` after keys, HTML-safe string escaping, `[]byte` as base64), so the test
//!   data has the suite's exact shapes;
//! * deciding whether `json.Unmarshal` into one of the suite's Go structs would return an error
//!   (syntax error, or a JSON value whose type does not fit the Go field), and reading fields the
//!   way Go matches them (exact key first, then case-insensitively).

use serde_json::Value;

/// A JSON value to serialise in Go's `MarshalIndent` format. Objects keep their field order.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Int(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn s(value: &str) -> J {
        J::Str(value.to_owned())
    }

    /// A Go `[]byte` value: base64 (standard alphabet, padded).
    pub fn bytes(value: &[u8]) -> J {
        J::Str(base64_encode(value))
    }

    /// An object from `(key, value)` pairs, in order.
    pub fn obj(fields: Vec<(&str, J)>) -> J {
        J::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// `json.MarshalIndent(v, "", "\t")`.
    pub fn marshal_indent(&self) -> Vec<u8> {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.into_bytes()
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            J::Null => out.push_str("null"),
            J::Int(n) => out.push_str(&n.to_string()),
            J::Str(s) => write_go_string(out, s),
            J::Arr(items) if items.is_empty() => out.push_str("[]"),
            J::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline_indent(out, depth + 1);
                    item.write(out, depth + 1);
                }
                newline_indent(out, depth);
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline_indent(out, depth + 1);
                    write_go_string(out, key);
                    out.push_str(": ");
                    value.write(out, depth + 1);
                }
                newline_indent(out, depth);
                out.push('}');
            }
        }
    }
}

fn newline_indent(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push('\t');
    }
}

/// Go's string encoding with HTML escaping on (the `json.Marshal` default).
fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `base64.StdEncoding.EncodeToString`.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, symbol) in symbols.iter().enumerate() {
            if i <= chunk.len() {
                out.push(B64[*symbol as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `base64.StdEncoding.DecodeString` (padding required; Go skips `\r` and `\n`).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    if !symbols.len().is_multiple_of(4) {
        return Err(format!("illegal base64 data: length {}", symbols.len()));
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3);
    for (index, quad) in symbols.chunks(4).enumerate() {
        let last = index == symbols.len() / 4 - 1;
        let mut n: u32 = 0;
        let mut padding = 0;
        for (i, &c) in quad.iter().enumerate() {
            let value = if c == b'=' {
                if !last || i < 2 {
                    return Err("illegal base64 data: misplaced padding".to_owned());
                }
                padding += 1;
                0
            } else {
                if padding > 0 {
                    return Err("illegal base64 data: data after padding".to_owned());
                }
                match B64.iter().position(|&s| s == c) {
                    Some(p) => p as u32,
                    None => return Err(format!("illegal base64 data: byte {c:#04x}")),
                }
            };
            n = (n << 6) | value;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Ok(out)
}

/// The Go type a JSON value is unmarshalled into.
#[derive(Debug, Clone, Copy)]
pub enum GoType {
    /// `string` (and string kinds such as `digest.Digest`).
    Str,
    /// `int` / `int64`.
    Int,
    /// `[]byte` (a base64 string).
    Bytes,
    /// `interface{}`.
    Any,
    /// `[]T`.
    Slice(&'static GoType),
    /// `map[string]T`.
    Map(&'static GoType),
    /// A struct (or pointer to one): its JSON field names and types.
    Struct(&'static [(&'static str, GoType)]),
}

const PLATFORM: GoType = GoType::Struct(&[
    ("architecture", GoType::Str),
    ("os", GoType::Str),
    ("os.version", GoType::Str),
    ("os.features", GoType::Slice(&GoType::Str)),
    ("variant", GoType::Str),
]);

/// The suite's `descriptor` struct.
pub const DESCRIPTOR: GoType = GoType::Struct(&[
    ("mediaType", GoType::Str),
    ("digest", GoType::Str),
    ("size", GoType::Int),
    ("urls", GoType::Slice(&GoType::Str)),
    ("annotations", GoType::Map(&GoType::Str)),
    ("data", GoType::Bytes),
    ("platform", PLATFORM),
    ("artifactType", GoType::Str),
    ("newUnspecifiedField", GoType::Bytes),
]);

/// The suite's `index` struct.
pub const INDEX: GoType = GoType::Struct(&[
    ("schemaVersion", GoType::Int),
    ("mediaType", GoType::Str),
    ("artifactType", GoType::Str),
    ("manifests", GoType::Slice(&DESCRIPTOR)),
    ("subject", DESCRIPTOR),
    ("annotations", GoType::Map(&GoType::Str)),
]);

/// The suite's `TagList` struct.
pub const TAG_LIST: GoType =
    GoType::Struct(&[("name", GoType::Str), ("tags", GoType::Slice(&GoType::Str))]);

/// reggie's error envelope: `{"errors": [{"code", "message", "detail"}]}`.
pub const ERROR_RESPONSE: GoType = GoType::Struct(&[(
    "errors",
    GoType::Slice(&GoType::Struct(&[
        ("code", GoType::Str),
        ("message", GoType::Str),
        ("detail", GoType::Any),
    ])),
)]);

/// `json.Unmarshal(body, &v)` where `v` has type `ty`: the parsed value, or the error Go would
/// return. Go also treats a bare `null` as success (leaving `v` empty).
pub fn unmarshal(body: &[u8], ty: GoType) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    check(&value, ty, "")?;
    Ok(value)
}

fn type_error(value: &Value, path: &str, go: &str) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("json: cannot unmarshal {kind} into Go value of type {go} (field {path:?})")
}

fn check(value: &Value, ty: GoType, path: &str) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    match ty {
        GoType::Any => Ok(()),
        GoType::Str => match value {
            Value::String(_) => Ok(()),
            _ => Err(type_error(value, path, "string")),
        },
        GoType::Int => match value {
            Value::Number(n) if n.is_i64() => Ok(()),
            _ => Err(type_error(value, path, "int64")),
        },
        GoType::Bytes => match value {
            Value::String(s) => base64_decode(s)
                .map(|_| ())
                .map_err(|e| format!("{e} (field {path:?})")),
            _ => Err(type_error(value, path, "[]uint8")),
        },
        GoType::Slice(item) => match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    check(v, *item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            _ => Err(type_error(value, path, "slice")),
        },
        GoType::Map(item) => match value {
            Value::Object(map) => {
                for (k, v) in map {
                    check(v, *item, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            _ => Err(type_error(value, path, "map")),
        },
        GoType::Struct(fields) => match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if let Some((name, field_ty)) = go_field_for_key(fields, key) {
                        check(v, *field_ty, &format!("{path}.{name}"))?;
                    }
                }
                Ok(())
            }
            _ => Err(type_error(value, path, "struct")),
        },
    }
}

/// The struct field a JSON key lands in: the exact name, else a case-insensitive match.
fn go_field_for_key<'a>(
    fields: &'a [(&'static str, GoType)],
    key: &str,
) -> Option<&'a (&'static str, GoType)> {
    fields.iter().find(|(name, _)| *name == key).or_else(|| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
    })
}

/// The value Go would store in struct field `name` of `object` (already checked with
/// [`unmarshal`]): the key matching exactly, else one matching case-insensitively. `None` when
/// absent or `null`.
pub fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    let found = map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })?;
    if found.is_null() { None } else { Some(found) }
}

/// A Go `string` field (`""` when absent or null).
pub fn str_field(object: &Value, name: &str) -> String {
    field(object, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A Go slice field (empty when absent or null).
pub fn slice_field<'a>(object: &'a Value, name: &str) -> Vec<&'a Value> {
    field(object, name)
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// A Go `[]string` field.
pub fn strings_field(object: &Value, name: &str) -> Vec<String> {
    slice_field(object, name)
        .into_iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A Go `map[string]string` field, as `(key, value)` pairs.
pub fn string_map_field(object: &Value, name: &str) -> Vec<(String, String)> {
    field(object, name)
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}
