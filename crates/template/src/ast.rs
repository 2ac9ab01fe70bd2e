//! The parse tree. Node texts (`Display`) follow Go's `Node.String()`, because execution
//! errors quote the node they happened at (`at <humanize "one">`).

use std::fmt::{self, Display, Formatter, Write};

/// A list of nodes, the body of a template or of a control structure.
pub(crate) type List = Vec<Node>;

/// A node of a body.
#[derive(Debug)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Control),
    Range(Control),
    With(Control),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break(usize),
    Continue(usize),
}

/// `if`, `range` and `with`: a pipeline, a body and an optional `else` body.
#[derive(Debug)]
pub(crate) struct Control {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// A pipeline with its optional variable declarations (`$x := ...`, `$x = ...`).
#[derive(Debug)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Command>,
}

/// One stage of a pipeline: a function or value followed by arguments.
#[derive(Debug)]
pub(crate) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

/// A numeric literal as Go's untyped constants would become `interface{}` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
    /// Fits only an unsigned 64-bit integer: Go refuses it ("overflows int").
    Overflow,
    /// A complex constant, which nothing here can use.
    Complex,
}

/// An operand.
#[derive(Debug)]
pub(crate) enum Arg {
    /// `.A.B`: fields of dot.
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    /// `$x.A.B`: `idents[0]` is the variable name including `$`.
    Variable {
        pos: usize,
        idents: Vec<String>,
    },
    /// `(pipeline).A.B`.
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    Identifier {
        pos: usize,
        name: String,
    },
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    Number {
        pos: usize,
        text: String,
        num: Num,
    },
    Str {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Dot(pos)
            | Arg::Nil(pos)
            | Arg::Bool(pos, _)
            | Arg::Number { pos, .. }
            | Arg::Str { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

/// Anything execution can point at in an error message.
#[derive(Clone, Copy)]
pub(crate) enum At<'t> {
    Node(&'t Node),
    Pipe(&'t Pipe),
    Command(&'t Command),
    Arg(&'t Arg),
}

impl At<'_> {
    pub fn pos(&self) -> usize {
        match self {
            At::Node(n) => match n {
                Node::Text(_) => 0,
                Node::Action(p) => p.pos,
                Node::If(c) | Node::Range(c) | Node::With(c) => c.pos,
                Node::Template { pos, .. } | Node::Break(pos) | Node::Continue(pos) => *pos,
            },
            At::Pipe(p) => p.pos,
            At::Command(c) => c.pos,
            At::Arg(a) => a.pos(),
        }
    }
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            At::Node(n) => n.fmt(f),
            At::Pipe(p) => p.fmt(f),
            At::Command(c) => c.fmt(f),
            At::Arg(a) => a.fmt(f),
        }
    }
}

fn write_list(f: &mut Formatter<'_>, list: &List) -> fmt::Result {
    list.iter().try_for_each(|n| n.fmt(f))
}

fn write_control(f: &mut Formatter<'_>, name: &str, c: &Control) -> fmt::Result {
    write!(f, "{{{{{name} {}}}}}", c.pipe)?;
    write_list(f, &c.list)?;
    if let Some(e) = &c.else_list {
        f.write_str("{{else}}")?;
        write_list(f, e)?;
    }
    f.write_str("{{end}}")
}

impl Display for Node {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Node::Text(t) => f.write_str(t),
            Node::Action(p) => write!(f, "{{{{{p}}}}}"),
            Node::If(c) => write_control(f, "if", c),
            Node::Range(c) => write_control(f, "range", c),
            Node::With(c) => write_control(f, "with", c),
            Node::Template { name, pipe, .. } => {
                let name = crate::quote::go_quote(name);
                match pipe {
                    Some(p) => write!(f, "{{{{template {name} {p}}}}}"),
                    None => write!(f, "{{{{template {name}}}}}"),
                }
            }
            Node::Break(_) => f.write_str("{{break}}"),
            Node::Continue(_) => f.write_str("{{continue}}"),
        }
    }
}

impl Display for Pipe {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(" := ")?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            c.fmt(f)?;
        }
        Ok(())
    }
}

impl Display for Command {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            match a {
                Arg::Pipe(p) => write!(f, "({p})")?,
                _ => a.fmt(f)?,
            }
        }
        Ok(())
    }
}

impl Display for Arg {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { idents, .. } => idents.iter().try_for_each(|i| write!(f, ".{i}")),
            Arg::Variable { idents, .. } => f.write_str(&idents.join(".")),
            Arg::Chain { node, fields, .. } => {
                match node.as_ref() {
                    Arg::Pipe(p) => write!(f, "({p})")?,
                    n => n.fmt(f)?,
                }
                fields.iter().try_for_each(|i| write!(f, ".{i}"))
            }
            Arg::Identifier { name, .. } => f.write_str(name),
            Arg::Dot(_) => f.write_char('.'),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Number { text, .. } => f.write_str(text),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Pipe(p) => p.fmt(f),
        }
    }
}
