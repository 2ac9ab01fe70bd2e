//! Builds the parse tree from tokens, following Go's `text/template/parse` (Go 1.19):
//! the same grammar, variable scoping, function checks and error messages.

use std::collections::HashMap;

use crate::ast::{Control, List, Node};
use crate::lex::{lex, Kind, Token};
use crate::TemplateError;

mod pipeline;

/// Deepest nesting of parentheses and control structures accepted.
const MAX_NESTING: usize = 100;

/// All templates of one text: the main one and those from `define`/`block`.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub templates: HashMap<String, List>,
}

/// What ended an item list.
#[derive(PartialEq, Eq)]
enum Term {
    End,
    Else,
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Term::End => "{{end}}",
            Term::Else => "{{else}}",
        })
    }
}

enum Item {
    Node(Node),
    Term(Term),
}

struct Parser<'s> {
    name: &'s str,
    toks: Vec<Token>,
    i: usize,
    /// Furthest token looked at: Go reports its line.
    hi: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    action_line: usize,
    templates: HashMap<String, List>,
}

/// Boxed, to keep the recursive parser's frames small.
type R<T> = Result<T, Box<TemplateError>>;

/// Parses `text` as the template `name`.
pub(crate) fn parse(name: &str, text: &str) -> Result<Parsed, TemplateError> {
    parse_boxed(name, text).map_err(|e| *e)
}

fn parse_boxed(name: &str, text: &str) -> R<Parsed> {
    let mut toks = lex(text);
    if toks.is_empty() {
        toks.push(Token {
            kind: Kind::Eof,
            pos: text.len(),
            val: String::new(),
            line: 1,
        });
    }
    let mut p = Parser {
        name,
        toks,
        i: 0,
        hi: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        depth: 0,
        action_line: 0,
        templates: HashMap::new(),
    };
    let root = p.parse_root()?;
    p.add(name.to_string(), root)?;
    Ok(Parsed {
        templates: p.templates,
    })
}

/// Go's `IsEmptyTree`: only whitespace text.
fn is_empty(list: &List) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

impl Parser<'_> {
    fn tok(&self, i: usize) -> Token {
        let last = self.toks.len().saturating_sub(1);
        self.toks[i.min(last)].clone()
    }

    fn next(&mut self) -> Token {
        let t = self.tok(self.i);
        self.hi = self.hi.max(self.i.min(self.toks.len().saturating_sub(1)));
        self.i = (self.i + 1).min(self.toks.len());
        t
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&mut self) -> Token {
        self.hi = self.hi.max(self.i.min(self.toks.len().saturating_sub(1)));
        self.tok(self.i)
    }

    fn skip_spaces(&mut self) {
        while self.tok(self.i).kind == Kind::Space {
            self.next();
        }
    }

    fn next_non_space(&mut self) -> Token {
        self.skip_spaces();
        self.next()
    }

    fn peek_non_space(&mut self) -> Token {
        self.skip_spaces();
        self.peek()
    }

    fn error(&self, message: String) -> Box<TemplateError> {
        Box::new(TemplateError::Parse {
            name: self.name.to_string(),
            line: self.toks[self.hi.min(self.toks.len() - 1)].line,
            message,
        })
    }

    fn unexpected<T>(&self, tok: &Token, context: &str) -> R<T> {
        if tok.kind == Kind::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != tok.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if tok.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return Err(self.error(format!("{tok}{extra}")));
        }
        Err(self.error(format!("unexpected {tok} in {context}")))
    }

    fn expect(&mut self, kind: Kind, context: &str) -> R<Token> {
        let tok = self.next_non_space();
        if tok.kind != kind {
            return self.unexpected(&tok, context);
        }
        Ok(tok)
    }

    fn nest(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error("max expression depth exceeded".into()));
        }
        Ok(())
    }

    /// Go's `Tree.add`: a later non-empty definition of a name is an error.
    fn add(&mut self, name: String, list: List) -> R<()> {
        match self.templates.get(&name) {
            Some(old) if !is_empty(old) => {
                if !is_empty(&list) {
                    return Err(self.error(format!(
                        "template: multiple definition of template {}",
                        crate::quote::go_quote(&name)
                    )));
                }
            }
            _ => {
                self.templates.insert(name, list);
            }
        }
        Ok(())
    }

    fn parse_root(&mut self) -> R<List> {
        let mut root = Vec::new();
        while self.peek().kind != Kind::Eof {
            if self.peek().kind == Kind::LeftDelim {
                let save = self.i;
                self.next();
                if self.next_non_space().kind == Kind::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.i = save;
            }
            match self.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::Term(t) => return Err(self.error(format!("unexpected {t}"))),
            }
        }
        Ok(root)
    }

    /// Parses a body with a fresh variable scope (define and block bodies).
    fn separate_body(&mut self, context: &str) -> R<List> {
        let vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let range_depth = std::mem::replace(&mut self.range_depth, 0);
        let result = self.item_list();
        self.vars = vars;
        self.range_depth = range_depth;
        let (list, term) = result?;
        if term != Term::End {
            return Err(self.error(format!("unexpected {term} in {context}")));
        }
        Ok(list)
    }

    fn parse_definition(&mut self) -> R<()> {
        const CONTEXT: &str = "define clause";
        let tok = self.next_non_space();
        if !matches!(tok.kind, Kind::String | Kind::RawString) {
            return self.unexpected(&tok, CONTEXT);
        }
        let name =
            crate::literal::unquote(&tok.val).ok_or_else(|| self.error("invalid syntax".into()))?;
        self.expect(Kind::RightDelim, CONTEXT)?;
        let list = self.separate_body(CONTEXT)?;
        self.add(name, list)
    }

    fn item_list(&mut self) -> R<(List, Term)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::Term(t) => return Ok((list, t)),
            }
        }
        Err(self.error("unexpected EOF".into()))
    }

    fn text_or_action(&mut self) -> R<Item> {
        let tok = self.next_non_space();
        match tok.kind {
            Kind::Text => Ok(Item::Node(Node::Text(tok.val))),
            Kind::LeftDelim => {
                self.action_line = tok.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(&tok, "input"),
        }
    }

    fn action(&mut self) -> R<Item> {
        let tok = self.next_non_space();
        let node = match tok.kind {
            Kind::Block => self.block_control()?,
            Kind::Break | Kind::Continue => {
                let word = if tok.kind == Kind::Break {
                    "break"
                } else {
                    "continue"
                };
                let t = self.next_non_space();
                if t.kind != Kind::RightDelim {
                    return self.unexpected(&t, &format!("{{{{{word}}}}}"));
                }
                if self.range_depth == 0 {
                    return Err(self.error(format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                if tok.kind == Kind::Break {
                    Node::Break(tok.pos)
                } else {
                    Node::Continue(tok.pos)
                }
            }
            Kind::Else => {
                // "{{else if": leave the "if" pending for the enclosing control.
                if self.peek_non_space().kind != Kind::If {
                    self.expect(Kind::RightDelim, "else")?;
                }
                return Ok(Item::Term(Term::Else));
            }
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                return Ok(Item::Term(Term::End));
            }
            Kind::If => Node::If(self.control(true, "if")?),
            Kind::Range => Node::Range(self.control(false, "range")?),
            Kind::With => Node::With(self.control(false, "with")?),
            Kind::Template => self.template_control()?,
            _ => {
                self.backup();
                Node::Action(self.pipeline("command", Kind::RightDelim)?)
            }
        };
        Ok(Item::Node(node))
    }

    fn control(&mut self, allow_else_if: bool, context: &str) -> R<Control> {
        self.nest()?;
        let nvars = self.vars.len();
        let result = self.control_inner(allow_else_if, context);
        self.vars.truncate(nvars);
        self.depth -= 1;
        result
    }

    fn control_inner(&mut self, allow_else_if: bool, context: &str) -> R<Control> {
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        let is_range = context == "range";
        if is_range {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if is_range {
            self.range_depth -= 1;
        }
        let (list, term) = listed?;
        let else_list = match term {
            Term::End => None,
            Term::Else if allow_else_if && self.peek_non_space().kind == Kind::If => {
                self.next();
                Some(vec![Node::If(self.control(true, "if")?)])
            }
            Term::Else => {
                let (l, t) = self.item_list()?;
                if t != Term::End {
                    return Err(self.error(format!("expected end; found {t}")));
                }
                Some(l)
            }
        };
        Ok(Control {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn template_name(&mut self, tok: &Token, context: &str) -> R<String> {
        if !matches!(tok.kind, Kind::String | Kind::RawString) {
            return self.unexpected(tok, context);
        }
        crate::literal::unquote(&tok.val).ok_or_else(|| self.error("invalid syntax".into()))
    }

    fn template_control(&mut self) -> R<Node> {
        const CONTEXT: &str = "template clause";
        let tok = self.next_non_space();
        let name = self.template_name(&tok, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().kind != Kind::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, Kind::RightDelim)?);
        }
        Ok(Node::Template {
            pos: tok.pos,
            name,
            pipe,
        })
    }

    fn block_control(&mut self) -> R<Node> {
        const CONTEXT: &str = "block clause";
        let tok = self.next_non_space();
        let name = self.template_name(&tok, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Kind::RightDelim)?;
        self.nest()?;
        let body = self.separate_body(CONTEXT);
        self.depth -= 1;
        self.add(name.clone(), body?)?;
        Ok(Node::Template {
            pos: tok.pos,
            name,
            pipe: Some(pipe),
        })
    }
}
