//! Evaluation of pipelines, commands, function calls, arguments and field access, with
//! Go's argument checks (`validateType`) and the nodes errors are reported at.

use super::{Exec, R};
use crate::ast::{Arg, At, Command, Num, Pipe};
use crate::funcs::{self, Sig, P};
use crate::quote::go_quote;
use crate::timefmt::GoTime;
use crate::value::{StrMap, Value};

impl<'t, 'a> Exec<'t, 'a> {
    pub(super) fn eval_pipeline(&mut self, dot: &Value<'a>, pipe: &'t Pipe) -> R<Value<'a>> {
        self.enter()?;
        self.at = Some(At::Pipe(pipe));
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for v in &pipe.decl {
            if pipe.is_assign {
                self.set_var(v, value.clone())?;
            } else {
                self.vars.push((v.as_str(), value.clone()));
            }
        }
        self.depth -= 1;
        Ok(value)
    }

    pub(super) fn set_var(&mut self, name: &str, value: Value<'a>) -> R<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = value;
                Ok(())
            }
            None => Err(self.fail(format!("undefined variable: {name}"))),
        }
    }

    fn var_value(&self, name: &str) -> R<Value<'a>> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.fail(format!("undefined variable: {name}"))),
        }
    }

    fn not_a_function(&self, args: &[Arg], has_final: bool) -> R<()> {
        if args.len() > 1 || has_final {
            let first = args.first().map(ToString::to_string).unwrap_or_default();
            return Err(self.fail(format!("can't give argument to non-function {first}")));
        }
        Ok(())
    }

    fn eval_command(
        &mut self,
        dot: &Value<'a>,
        cmd: &'t Command,
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        self.step()?;
        let Some(first) = cmd.args.first() else {
            return Err(self.fail("empty command"));
        };
        let rest = cmd.args.get(1..).unwrap_or(&[]);
        match first {
            Arg::Field { .. } => return self.eval_field_node(dot, first, &cmd.args, fin),
            Arg::Chain { .. } => return self.eval_chain_node(dot, first, &cmd.args, fin),
            Arg::Identifier { name, .. } => {
                return self.eval_function(dot, first, name, At::Command(cmd), rest, fin)
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, fin.is_some())?;
                return self.eval_pipeline(dot, p);
            }
            Arg::Variable { .. } => return self.eval_variable_node(dot, first, &cmd.args, fin),
            _ => {}
        }
        self.at = Some(At::Arg(first));
        self.not_a_function(&cmd.args, fin.is_some())?;
        match first {
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Err(self.fail("nil is not a command")),
            Arg::Number { text, num, .. } => self.ideal_constant(text, *num),
            Arg::Str { text, .. } => Ok(Value::str(text)),
            other => Err(self.fail(format!(
                "can't evaluate command {}",
                go_quote(&other.to_string())
            ))),
        }
    }

    fn ideal_constant(&self, text: &str, num: Num) -> R<Value<'a>> {
        match num {
            Num::Int(i) => Ok(Value::Int(i)),
            Num::Float(f) => Ok(Value::Float(f)),
            Num::Overflow => Err(self.fail(format!("{text} overflows int"))),
            Num::Complex => Err(self.fail(format!("complex constant {text} is not supported"))),
        }
    }

    fn check_arity(&self, name: &str, sig: &Sig, nargs: usize, has_final: bool) -> R<()> {
        let num_in = nargs + usize::from(has_final);
        let n = sig.params.len();
        if sig.variadic {
            let fixed = n.saturating_sub(1);
            if num_in < fixed {
                return Err(self.fail(format!(
                    "wrong number of args for {name}: want at least {fixed} got {nargs}"
                )));
            }
        } else if num_in != n {
            return Err(self.fail(format!(
                "wrong number of args for {name}: want {n} got {num_in}"
            )));
        }
        Ok(())
    }

    /// Evaluates call arguments against the parameter types, like Go's `evalCall`.
    fn eval_call_args(
        &mut self,
        dot: &Value<'a>,
        name: &str,
        sig: &Sig,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Vec<Value<'a>>> {
        self.check_arity(name, sig, args.len(), fin.is_some())?;
        let last = sig.params.last().copied().unwrap_or(P::Any);
        let param = |i: usize| -> P {
            if sig.variadic && i + 1 >= sig.params.len() {
                last
            } else {
                sig.params.get(i).copied().unwrap_or(P::Any)
            }
        };
        let mut argv = Vec::with_capacity(args.len() + 1);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, param(i), a)?);
        }
        if let Some(f) = fin {
            argv.push(self.validate(f, param(args.len()))?);
        }
        Ok(argv)
    }

    fn eval_function(
        &mut self,
        dot: &Value<'a>,
        ident: &'t Arg,
        name: &'t str,
        node: At<'t>,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        self.at = Some(At::Arg(ident));
        let Some(sig) = funcs::lookup(name) else {
            return Err(self.fail(format!("{} is not a defined function", go_quote(name))));
        };
        if name == "and" || name == "or" {
            self.check_arity(name, &sig, args.len(), fin.is_some())?;
            let mut v = Value::Nil;
            for a in args {
                v = self.eval_arg(dot, P::Any, a)?;
                if v.truth() == (name == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let argv = self.eval_call_args(dot, name, &sig, args, fin)?;
        match funcs::call(name, argv, self.data, &mut self.regexes) {
            Ok(v) => {
                self.check_size(&v)?;
                Ok(v)
            }
            Err(e) => {
                self.at = Some(node);
                Err(self.fail(format!("error calling {name}: {e}")))
            }
        }
    }

    fn eval_arg(&mut self, dot: &Value<'a>, p: P, arg: &'t Arg) -> R<Value<'a>> {
        self.at = Some(At::Arg(arg));
        let v = match arg {
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) if p == P::Str => return Err(self.fail("cannot assign nil to string")),
            Arg::Nil(_) => return Ok(Value::Nil),
            Arg::Field { .. } => self.eval_field_node(dot, arg, &[], None)?,
            Arg::Variable { .. } => self.eval_variable_node(dot, arg, &[], None)?,
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe)?,
            Arg::Identifier { name, .. } => {
                self.eval_function(dot, arg, name, At::Arg(arg), &[], None)?
            }
            Arg::Chain { .. } => self.eval_chain_node(dot, arg, &[], None)?,
            Arg::Bool(_, b) => return self.literal(p, arg, Value::Bool(*b)),
            Arg::Number { text, num, .. } => {
                if p != P::Any {
                    return self.literal(p, arg, Value::Nil);
                }
                return self.ideal_constant(text, *num);
            }
            Arg::Str { text, .. } => return self.literal(p, arg, Value::str(text)),
        };
        self.validate(v, p)
    }

    /// A literal for parameter type `p`: Go only converts strings to `string` parameters.
    fn literal(&self, p: P, arg: &Arg, v: Value<'a>) -> R<Value<'a>> {
        match (p, &v) {
            (P::Any, _) | (P::Str, Value::Str(_)) => Ok(v),
            (P::Str, _) => Err(self.fail(format!("expected string; found {arg}"))),
            _ => Err(self.fail(format!(
                "can't handle {arg} for arg of type {}",
                p.go_name()
            ))),
        }
    }

    /// Go's `validateType`: the value must be of the parameter's type.
    fn validate(&self, v: Value<'a>, p: P) -> R<Value<'a>> {
        let ok = match (&v, p) {
            (_, P::Any) => true,
            (Value::Nil, P::Str) => return Err(self.fail("invalid value; expected string")),
            (Value::Nil, _) => true,
            (Value::Str(_), P::Str) => true,
            (Value::Samples(_), P::Samples) => true,
            (Value::Sample(_), P::Sample) => true,
            _ => false,
        };
        if ok {
            return Ok(v);
        }
        Err(self.fail(format!(
            "wrong type for value; expected {}; got {}",
            p.go_name(),
            v.type_name()
        )))
    }

    fn eval_field_node(
        &mut self,
        dot: &Value<'a>,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        self.at = Some(At::Arg(node));
        let Arg::Field { idents, .. } = node else {
            return Err(self.fail("internal error: not a field"));
        };
        self.eval_field_chain(dot, dot.clone(), idents, args, fin)
    }

    fn eval_chain_node(
        &mut self,
        dot: &Value<'a>,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        self.at = Some(At::Arg(node));
        let Arg::Chain {
            node: inner,
            fields,
            ..
        } = node
        else {
            return Err(self.fail("internal error: not a chain"));
        };
        if matches!(inner.as_ref(), Arg::Nil(_)) {
            return Err(self.fail(format!("indirection through explicit nil in {node}")));
        }
        let recv = self.eval_arg(dot, P::Any, inner)?;
        self.eval_field_chain(dot, recv, fields, args, fin)
    }

    fn eval_variable_node(
        &mut self,
        dot: &Value<'a>,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        self.at = Some(At::Arg(node));
        let Arg::Variable { idents, .. } = node else {
            return Err(self.fail("internal error: not a variable"));
        };
        let value = self.var_value(idents.first().map_or("", String::as_str))?;
        if idents.len() == 1 {
            self.not_a_function(args, fin.is_some())?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, idents.get(1..).unwrap_or(&[]), args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value<'a>,
        mut recv: Value<'a>,
        idents: &'t [String],
        args: &'t [Arg],
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        let Some((last, init)) = idents.split_last() else {
            return Ok(recv);
        };
        for id in init {
            recv = self.eval_field(dot, id, &[], None, recv)?;
        }
        self.eval_field(dot, last, args, fin, recv)
    }

    fn eval_field(
        &mut self,
        dot: &Value<'a>,
        name: &str,
        args: &'t [Arg],
        fin: Option<Value<'a>>,
        recv: Value<'a>,
    ) -> R<Value<'a>> {
        let has_args = args.len() > 1 || fin.is_some();
        let struct_field = |v: Value<'a>| -> R<Value<'a>> {
            if has_args {
                return Err(self.fail(format!(
                    "{name} has arguments but cannot be invoked as function"
                )));
            }
            Ok(v)
        };
        match &recv {
            Value::Nil => Ok(Value::Nil),
            Value::Time(t) => match time_method(name) {
                Some(sig) => {
                    let method_args = args.get(1..).unwrap_or(&[]);
                    let argv = self.eval_call_args(dot, name, &sig, method_args, fin)?;
                    Ok(call_time_method(*t, name, &argv))
                }
                None => Err(self.fail(format!("can't evaluate field {name} in type *time.Time"))),
            },
            Value::Data(d) => match name {
                "Labels" => struct_field(Value::StrMap(StrMap::Borrowed(d.labels))),
                "ExternalLabels" => {
                    struct_field(Value::StrMap(StrMap::Borrowed(d.external_labels)))
                }
                "ExternalURL" => struct_field(Value::str(d.external_url)),
                "Value" => struct_field(Value::Float(d.value)),
                _ => Err(self.fail(format!(
                    "can't evaluate field {name} in type {}",
                    recv.type_name()
                ))),
            },
            Value::Sample(s) => match name {
                "Labels" => struct_field(Value::StrMap(StrMap::OfSample(s.clone()))),
                "Value" => struct_field(Value::Float(s.value)),
                _ => Err(self.fail(format!(
                    "can't evaluate field {name} in type *template.sample"
                ))),
            },
            Value::StrMap(m) => {
                if has_args {
                    return Err(self.fail(format!("{name} is not a method but has arguments")));
                }
                Ok(Value::str(m.map().get(name).map_or("", String::as_str)))
            }
            Value::Args(m) => {
                if has_args {
                    return Err(self.fail(format!("{name} is not a method but has arguments")));
                }
                Ok(m.map.get(name).cloned().unwrap_or(Value::Nil))
            }
            other => Err(self.fail(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ))),
        }
    }
}

/// Methods of `time.Time` offered on `toTime` results.
fn time_method(name: &str) -> Option<Sig> {
    match name {
        "Format" => Some(Sig {
            params: &[P::Str],
            variadic: false,
        }),
        "Unix" | "UnixMilli" | "UnixNano" | "UTC" | "String" | "Year" | "YearDay" | "Day"
        | "Hour" | "Minute" | "Second" | "Nanosecond" => Some(Sig {
            params: &[],
            variadic: false,
        }),
        _ => None,
    }
}

fn call_time_method<'a>(t: GoTime, name: &str, args: &[Value<'a>]) -> Value<'a> {
    let nanos = t.unix_nanos();
    let field = |layout: &str| t.format(layout).trim().parse::<i64>().unwrap_or(0);
    match name {
        "Format" => Value::str(&t.format(args.first().and_then(Value::as_str).unwrap_or(""))),
        "Unix" => Value::Int(t.secs),
        "UnixMilli" => Value::Int((nanos / 1_000_000) as i64),
        "UnixNano" => Value::Int(nanos as i64),
        "UTC" => Value::Time(t),
        "Year" => Value::Int(field("2006")),
        "YearDay" => Value::Int(field("002")),
        "Day" => Value::Int(field("2")),
        "Hour" => Value::Int(field("15")),
        "Minute" => Value::Int(field("4")),
        "Second" => Value::Int(field("5")),
        "Nanosecond" => Value::Int(i64::from(t.nanos)),
        _ => Value::str(&t.to_string()),
    }
}
