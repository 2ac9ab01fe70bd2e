//! Runs a parsed template the way Go's `text/template` executes it (option
//! `missingkey=zero`, as Prometheus sets): evaluation order, variable scopes, argument
//! type checks and the node an error is reported at all follow Go's `exec.go`.
//!
//! Unlike Go, execution is bounded: output and every string value at most
//! [`MAX_OUTPUT`] bytes, a step budget, and a cap on nesting (template calls and
//! nested pipelines), so no input can exhaust memory, time or the stack.

use crate::ast::{At, Control, List, Node, Pipe};
use crate::funcs;
use crate::parse::Parsed;
use crate::quote::go_quote;
use crate::value::Value;
use crate::{TemplateData, TemplateError};

mod eval;

/// Largest output, and largest string value, a template may produce.
pub(crate) const MAX_OUTPUT: usize = 1 << 20;
/// Evaluation steps (nodes walked plus commands run) before execution is stopped.
const MAX_STEPS: u64 = 1_000_000;
/// Nesting of template calls, controls and pipelines at run time.
const MAX_DEPTH: usize = 200;

enum Flow {
    Break,
    Continue,
    Err(Box<TemplateError>),
}

type R<T> = Result<T, Flow>;

struct Exec<'t, 'a> {
    text: &'t str,
    name: &'t str,
    tmpl: &'t Parsed,
    exec_name: &'t str,
    out: String,
    vars: Vec<(&'t str, Value<'a>)>,
    at: Option<At<'t>>,
    depth: usize,
    steps: u64,
    data: &'a TemplateData<'a>,
    regexes: funcs::RegexCache,
}

/// Executes the template `name` of `tmpl`, parsed from `text`, with the alert data as dot.
pub(crate) fn execute<'t, 'a>(
    name: &'t str,
    text: &'t str,
    tmpl: &'t Parsed,
    data: &'a TemplateData<'a>,
) -> Result<String, TemplateError> {
    let mut ex = Exec {
        text,
        name,
        tmpl,
        exec_name: name,
        out: String::new(),
        vars: vec![("$", Value::Data(data))],
        at: None,
        depth: 0,
        steps: 0,
        data,
        regexes: funcs::RegexCache::default(),
    };
    let Some(list) = tmpl.templates.get(name) else {
        return Err(ex.limit(format!("no such template {}", go_quote(name))));
    };
    match ex.walk_list(&Value::Data(data), list) {
        Ok(()) => Ok(ex.out),
        Err(Flow::Err(e)) => Err(*e),
        Err(Flow::Break | Flow::Continue) => {
            Err(ex.limit("break or continue outside range".into()))
        }
    }
}

impl<'t, 'a> Exec<'t, 'a> {
    fn limit(&self, message: String) -> TemplateError {
        TemplateError::Limit {
            name: self.name.to_string(),
            message,
        }
    }

    fn stop(&self, message: String) -> Flow {
        Flow::Err(Box::new(self.limit(message)))
    }

    /// An execution error located at the current node, worded like Go's.
    fn fail(&self, message: impl Into<String>) -> Flow {
        let message = message.into();
        let Some(at) = self.at else {
            return Flow::Err(Box::new(self.limit(message)));
        };
        let pos = at.pos().min(self.text.len());
        let before = self.text.get(..pos).unwrap_or("");
        let line = 1 + before.matches('\n').count();
        let column = before.rfind('\n').map_or(pos, |i| pos - i - 1);
        let context = at.to_string();
        Flow::Err(Box::new(TemplateError::Exec {
            name: self.name.to_string(),
            line,
            column,
            executing: self.exec_name.to_string(),
            context,
            message,
        }))
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(self.stop(format!("execution stopped after {MAX_STEPS} steps")));
        }
        Ok(())
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail(format!("exceeded maximum template depth ({MAX_DEPTH})")));
        }
        Ok(())
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len() + s.len() > MAX_OUTPUT {
            return Err(self.stop(format!("output exceeds {MAX_OUTPUT} bytes")));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn check_size(&self, v: &Value<'a>) -> R<()> {
        match v.as_str() {
            Some(s) if s.len() > MAX_OUTPUT => {
                Err(self.stop(format!("value exceeds {MAX_OUTPUT} bytes")))
            }
            _ => Ok(()),
        }
    }

    fn walk_list(&mut self, dot: &Value<'a>, list: &'t List) -> R<()> {
        list.iter().try_for_each(|n| self.walk(dot, n))
    }

    fn walk(&mut self, dot: &Value<'a>, node: &'t Node) -> R<()> {
        self.step()?;
        self.at = Some(At::Node(node));
        match node {
            Node::Text(t) => self.write(t),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = Some(At::Node(node));
                    let mut s = String::new();
                    v.write_printed(&mut s);
                    self.write(&s)?;
                }
                Ok(())
            }
            Node::If(c) => self.walk_if_or_with(false, dot, c),
            Node::With(c) => self.walk_if_or_with(true, dot, c),
            Node::Range(c) => {
                let mark = self.vars.len();
                self.enter()?;
                let r = self.walk_range(dot, c);
                self.depth -= 1;
                self.vars.truncate(mark);
                r
            }
            Node::Template { name, pipe, .. } => self.walk_template(dot, name, pipe.as_ref()),
            Node::Break(_) => Err(Flow::Break),
            Node::Continue(_) => Err(Flow::Continue),
        }
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Value<'a>, c: &'t Control) -> R<()> {
        let mark = self.vars.len();
        self.enter()?;
        let r = self.if_or_with_body(with, dot, c);
        self.depth -= 1;
        self.vars.truncate(mark);
        r
    }

    fn if_or_with_body(&mut self, with: bool, dot: &Value<'a>, c: &'t Control) -> R<()> {
        let val = self.eval_pipeline(dot, &c.pipe)?;
        if val.truth() {
            if with {
                self.walk_list(&val, &c.list)
            } else {
                self.walk_list(dot, &c.list)
            }
        } else if let Some(e) = &c.else_list {
            self.walk_list(dot, e)
        } else {
            Ok(())
        }
    }

    fn walk_range(&mut self, dot: &Value<'a>, c: &'t Control) -> R<()> {
        let val = self.eval_pipeline(dot, &c.pipe)?;
        let mark = self.vars.len();
        let items: Vec<(Value<'a>, Value<'a>)> = match &val {
            Value::Samples(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(s.clone())))
                .collect(),
            Value::StrMap(m) => m
                .map()
                .iter()
                .map(|(k, v)| (Value::str(k), Value::str(v)))
                .collect(),
            Value::Args(m) => m
                .map
                .iter()
                .map(|(k, v)| (Value::str(k), v.clone()))
                .collect(),
            Value::Nil => Vec::new(),
            other => return Err(self.fail(format!("range can't iterate over {}", other.to_v()))),
        };
        if items.is_empty() {
            return match &c.else_list {
                Some(e) => self.walk_list(dot, e),
                None => Ok(()),
            };
        }
        for (index, elem) in items {
            let decl = &c.pipe.decl;
            if !decl.is_empty() {
                if c.pipe.is_assign {
                    let v = if decl.len() > 1 {
                        index.clone()
                    } else {
                        elem.clone()
                    };
                    self.set_var(&decl[0], v)?;
                } else {
                    let n = self.vars.len();
                    if let Some(top) = n.checked_sub(1).and_then(|i| self.vars.get_mut(i)) {
                        top.1 = elem.clone();
                    }
                    if decl.len() > 1 {
                        if let Some(second) = n.checked_sub(2).and_then(|i| self.vars.get_mut(i)) {
                            second.1 = index;
                        }
                    }
                }
            }
            let r = self.walk_list(&elem, &c.list);
            self.vars.truncate(mark);
            match r {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn walk_template(&mut self, dot: &Value<'a>, name: &'t str, pipe: Option<&'t Pipe>) -> R<()> {
        let Some(list) = self.tmpl.templates.get(name) else {
            return Err(self.fail(format!("template {} not defined", go_quote(name))));
        };
        self.enter()?;
        let new_dot = match pipe {
            Some(p) => self.eval_pipeline(dot, p)?,
            None => Value::Nil,
        };
        let vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let exec_name = std::mem::replace(&mut self.exec_name, name);
        let r = self.walk_list(&new_dot, list);
        self.vars = vars;
        self.exec_name = exec_name;
        self.depth -= 1;
        r
    }
}
