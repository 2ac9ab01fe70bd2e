//! Go's predefined template functions (`and`, `or`, `not`, `len`, `index`, `slice`,
//! `print*`, `html`, `js`, `urlquery`, `eq`…), with Go's error texts.

use std::rc::Rc;

use crate::printf;
use crate::quote;
use crate::value::{GoKind, Value};

/// The error Go reports when a call dereferences nothing.
pub(crate) const NIL_DEREF: &str =
    "runtime error: invalid memory address or nil pointer dereference";

pub(crate) fn call<'a>(name: &str, args: Vec<Value<'a>>) -> Result<Value<'a>, String> {
    let first = || args.first().cloned().unwrap_or(Value::Nil);
    let second = args.get(1).cloned().unwrap_or(Value::Nil);
    let rest = args.get(1..).unwrap_or(&[]);
    match name {
        "not" => Ok(Value::Bool(!first().truth())),
        "len" => len(&first()),
        "index" => index(first(), rest),
        "slice" => slice(first(), rest),
        "print" => Ok(Value::str(&printf::sprint(&args))),
        "println" => Ok(Value::str(&printf::sprintln(&args))),
        "printf" => {
            let format = args.first().and_then(Value::as_str).unwrap_or("");
            Ok(Value::str(&printf::sprintf(format, rest)))
        }
        "html" => Ok(Value::str(&quote::html_escape(&eval_args(&args)))),
        "js" => Ok(Value::str(&quote::js_escape(&eval_args(&args)))),
        "urlquery" => Ok(Value::str(&quote::query_escape(&eval_args(&args)))),
        "eq" => eq(&first(), rest).map(Value::Bool),
        "ne" => eq(&first(), std::slice::from_ref(&second)).map(|b| Value::Bool(!b)),
        "lt" => lt(&first(), &second).map(Value::Bool),
        "le" => le(&first(), &second).map(Value::Bool),
        "gt" => le(&first(), &second).map(|b| Value::Bool(!b)),
        "ge" => lt(&first(), &second).map(|b| Value::Bool(!b)),
        "call" => match first() {
            Value::Nil => Err("call of nil".into()),
            v => Err(format!("non-function of type {}", v.type_name())),
        },
        _ => Err(format!("function {name:?} not defined")),
    }
}

/// Go's `evalArgs` for the escapers: one string as is, else `fmt.Sprint` of the
/// printable forms.
fn eval_args(args: &[Value]) -> String {
    if let [Value::Str(s)] = args {
        return s.to_string();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| match a {
            Value::Nil => Value::str("<no value>"),
            Value::Sample(s) => {
                let mut out = String::new();
                Value::Sample(s.clone()).write_printed(&mut out);
                Value::str(&out)
            }
            v => v.clone(),
        })
        .collect();
    printf::sprint(&printable)
}

fn len<'a>(v: &Value<'a>) -> Result<Value<'a>, String> {
    let n = match v {
        Value::Nil => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Str(s) | Value::Html(s) => s.len(),
        Value::StrMap(m) => m.map().len(),
        Value::Args(m) => m.map.len(),
        Value::Samples(s) => s.len(),
        v => return Err(format!("len of type {}", v.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn int_index(i: &Value, what: &str) -> Result<i64, String> {
    match i {
        Value::Int(n) => Ok(*n),
        Value::Nil => Err(format!("cannot index {what} with nil")),
        v => Err(format!("cannot index {what} with type {}", v.type_name())),
    }
}

fn index<'a>(item: Value<'a>, indexes: &[Value<'a>]) -> Result<Value<'a>, String> {
    if matches!(item, Value::Nil) {
        return Err("index of untyped nil".into());
    }
    let mut item = item;
    for idx in indexes {
        item = match &item {
            Value::Str(_) | Value::Html(_) | Value::Samples(_) => {
                let len = match &item {
                    Value::Samples(s) => s.len(),
                    v => v.as_str().map_or(0, str::len),
                };
                let x = int_index(idx, "slice/array")?;
                if x < 0 || x as u64 > len as u64 {
                    return Err(format!("index out of range: {x}"));
                }
                let x = x as usize;
                match &item {
                    Value::Samples(s) => match s.get(x) {
                        Some(s) => Value::Sample(s.clone()),
                        None => return Err("reflect: slice index out of range".into()),
                    },
                    v => match v.as_str().and_then(|s| s.as_bytes().get(x)) {
                        Some(b) => Value::Int(i64::from(*b)),
                        None => return Err("reflect: string index out of range".into()),
                    },
                }
            }
            Value::StrMap(m) => {
                let key = map_key(idx)?;
                Value::str(m.map().get(key).map_or("", String::as_str))
            }
            Value::Args(m) => {
                let key = map_key(idx)?;
                m.map.get(key).cloned().unwrap_or(Value::Nil)
            }
            v => return Err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(item)
}

fn map_key<'v>(idx: &'v Value) -> Result<&'v str, String> {
    match idx {
        Value::Str(s) => Ok(s),
        Value::Nil => Err("value is nil; should be of type string".into()),
        v => Err(format!(
            "value has type {}; should be string",
            v.type_name()
        )),
    }
}

fn slice<'a>(item: Value<'a>, indexes: &[Value<'a>]) -> Result<Value<'a>, String> {
    if matches!(item, Value::Nil) {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let (len, is_str) = match &item {
        Value::Str(s) | Value::Html(s) => (s.len(), true),
        Value::Samples(s) => (s.len(), false),
        v => return Err(format!("can't slice item of type {}", v.type_name())),
    };
    if is_str && indexes.len() == 3 {
        return Err("cannot 3-index slice a string".into());
    }
    let mut idx = [0usize, len, len];
    for (i, v) in indexes.iter().enumerate() {
        let x = int_index(v, "slice/array")?;
        if x < 0 || x as u64 > len as u64 {
            return Err(format!("index out of range: {x}"));
        }
        idx[i] = x as usize;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::Samples(s) => Value::Samples(Rc::new(s[idx[0]..idx[1]].to_vec())),
        v => {
            let s = v.as_str().unwrap_or("");
            let bytes = &s.as_bytes()[idx[0]..idx[1]];
            let sub = String::from_utf8_lossy(bytes).into_owned();
            match v {
                Value::Html(_) => Value::Html(Rc::from(sub)),
                _ => Value::str(&sub),
            }
        }
    })
}

const BAD_COMPARISON: &str = "incompatible types for comparison";
const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";

fn basic(v: &Value) -> Option<GoKind> {
    match v.kind() {
        k @ (GoKind::Bool | GoKind::Int | GoKind::Float | GoKind::String) => Some(k),
        _ => None,
    }
}

/// Go's `eq`: true when `a` equals any of `bs`.
fn eq(a: &Value, bs: &[Value]) -> Result<bool, String> {
    if bs.is_empty() {
        return Err("missing argument for comparison".into());
    }
    for b in bs {
        let (ka, kb) = (basic(a), basic(b));
        let truth = match (a, b) {
            (Value::Nil, Value::Nil) => true,
            (Value::Nil, _) | (_, Value::Nil) => false,
            _ if ka != kb => return Err(BAD_COMPARISON.into()),
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Float(x), Value::Float(y)) => x == y,
            _ if ka == Some(GoKind::String) => a.as_str() == b.as_str(),
            (Value::Sample(x), Value::Sample(y)) => Rc::ptr_eq(x, y),
            (Value::Time(x), Value::Time(y)) => x == y,
            _ if a.type_name() == b.type_name() => {
                return Err(format!(
                    "non-comparable type {}: {}",
                    b.to_v(),
                    b.type_name()
                ))
            }
            _ => {
                return Err(format!(
                    "non-comparable types {}: {}, {}: {}",
                    a.to_v(),
                    a.type_name(),
                    b.type_name(),
                    b.to_v()
                ))
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let ka = basic(a).ok_or(BAD_COMPARISON_TYPE)?;
    let kb = basic(b).ok_or(BAD_COMPARISON_TYPE)?;
    if ka != kb {
        return Err(BAD_COMPARISON.into());
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        _ if ka == GoKind::String => a.as_str() < b.as_str(),
        _ => return Err(BAD_COMPARISON_TYPE.into()),
    })
}

fn le(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(lt(a, b)? || eq(a, std::slice::from_ref(b))?)
}
