//! Pipelines and their operands: declarations, commands, field chains, literals.

use super::{Parser, R};
use crate::ast::{Arg, Command, Num, Pipe};
use crate::lex::Kind;

impl Parser<'_> {
    pub(super) fn pipeline(&mut self, context: &str, end: Kind) -> R<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let at_v = self.i;
            self.next();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable | Kind::RightDelim | Kind::RightParen => continue,
                            _ => {
                                return Err(self.error("range can only initialize variables".into()))
                            }
                        }
                    }
                    return Err(self.error(format!("too many declarations in {context}")));
                }
                _ => self.i = at_v,
            }
            break;
        }
        loop {
            let tok = self.next_non_space();
            if tok.kind == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match tok.kind {
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&tok, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> R<()> {
        if pipe.cmds.is_empty() {
            return Err(self.error(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(
                    Arg::Bool(..)
                        | Arg::Dot(_)
                        | Arg::Nil(_)
                        | Arg::Number { .. }
                        | Arg::Str { .. }
                )
            ) {
                return Err(self.error(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> R<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.skip_spaces();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let tok = self.next();
            match tok.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return self.unexpected(&tok, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.error("empty command".into()));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> R<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            let f = self.next().val;
            fields.push(f.get(1..).unwrap_or("").to_string());
        }
        Ok(Some(match node {
            Arg::Field { mut idents, .. } => {
                idents.extend(fields);
                Arg::Field { pos, idents }
            }
            Arg::Variable { mut idents, .. } => {
                idents.extend(fields);
                Arg::Variable { pos, idents }
            }
            Arg::Bool(..) | Arg::Str { .. } | Arg::Number { .. } | Arg::Nil(_) | Arg::Dot(_) => {
                let text = crate::quote::go_quote(&node.to_string());
                return Err(self.error(format!("unexpected . after term {text}")));
            }
            other => Arg::Chain {
                pos,
                node: Box::new(other),
                fields,
            },
        }))
    }

    fn term(&mut self) -> R<Option<Arg>> {
        let tok = self.next_non_space();
        let pos = tok.pos;
        Ok(Some(match tok.kind {
            Kind::Identifier => {
                if crate::funcs::lookup(&tok.val).is_none() {
                    let name = crate::quote::go_quote(&tok.val);
                    return Err(self.error(format!("function {name} not defined")));
                }
                Arg::Identifier { pos, name: tok.val }
            }
            Kind::Dot => Arg::Dot(pos),
            Kind::Nil => Arg::Nil(pos),
            Kind::Variable => {
                if !self.vars.contains(&tok.val) {
                    let name = crate::quote::go_quote(&tok.val);
                    return Err(self.error(format!("undefined variable {name}")));
                }
                Arg::Variable {
                    pos,
                    idents: vec![tok.val],
                }
            }
            Kind::Field => Arg::Field {
                pos,
                idents: vec![tok.val.get(1..).unwrap_or("").to_string()],
            },
            Kind::Bool => Arg::Bool(pos, tok.val == "true"),
            Kind::CharConstant | Kind::Complex | Kind::Number => {
                let is_char = tok.kind == Kind::CharConstant;
                let num: Num = crate::literal::number(&tok.val, is_char, tok.kind == Kind::Complex)
                    .map_err(|e| self.error(e))?;
                Arg::Number {
                    pos,
                    text: tok.val,
                    num,
                }
            }
            Kind::LeftParen => {
                self.nest()?;
                let pipe = self.pipeline("parenthesized pipeline", Kind::RightParen);
                self.depth -= 1;
                Arg::Pipe(Box::new(pipe?))
            }
            Kind::String | Kind::RawString => {
                let text = crate::literal::unquote(&tok.val)
                    .ok_or_else(|| self.error("invalid syntax".into()))?;
                Arg::Str {
                    pos,
                    quoted: tok.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}
