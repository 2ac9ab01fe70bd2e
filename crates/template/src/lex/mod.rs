//! Splits template text into tokens, following Go's `text/template/parse` lexer (Go 1.19,
//! the toolchain Prometheus 2.42 ships with), so that positions, trim markers and error
//! texts match what Prometheus reports.

mod token;

use token::keyword;
pub(crate) use token::{Kind, Token};

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

/// Go's `%#U`: `U+00A0`, followed by the quoted character when printable.
pub(crate) fn sharp_u(c: char) -> String {
    let code = format!("U+{:04X}", c as u32);
    if crate::quote::is_go_print(c) {
        format!("{code} '{c}'")
    } else {
        code
    }
}

enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    Inside,
    Done,
}

struct Lexer<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    paren_depth: i64,
    out: Vec<Token>,
}

/// Tokenizes the whole input. The last token is always `Eof` or `Error`.
pub(crate) fn lex(input: &str) -> Vec<Token> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        paren_depth: 0,
        out: Vec::new(),
    };
    let mut state = State::Text;
    loop {
        state = match state {
            State::Text => l.lex_text(),
            State::LeftDelim => l.lex_left_delim(),
            State::Comment => l.lex_comment(),
            State::RightDelim => l.lex_right_delim(),
            State::Inside => l.lex_inside(),
            State::Done => break,
        };
    }
    // Lines are counted once, from the (increasing) token offsets.
    let (mut line, mut counted) = (1, 0);
    for tok in &mut l.out {
        let upto = tok.pos.min(input.len());
        if upto > counted {
            line += input[counted..upto].matches('\n').count();
            counted = upto;
        }
        tok.line = line;
    }
    l.out
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn next(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Steps back over `c`, the character `next` just returned.
    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
        }
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            other => {
                self.backup(other);
                false
            }
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn emit(&mut self, kind: Kind) {
        let val = self.input[self.start..self.pos].to_string();
        self.out.push(Token {
            kind,
            pos: self.start,
            val,
            line: 0,
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn error(&mut self, msg: String) -> State {
        self.out.push(Token {
            kind: Kind::Error,
            pos: self.start,
            val: msg,
            line: 0,
        });
        State::Done
    }

    fn lex_text(&mut self) -> State {
        if let Some(x) = self.rest().find(LEFT) {
            if x > 0 {
                self.pos += x;
                let mut trim = 0;
                if has_left_trim(&self.input[self.pos + LEFT.len()..]) {
                    let text = &self.input[self.start..self.pos];
                    trim = text.len() - text.trim_end_matches(is_space).len();
                }
                let end = self.pos - trim;
                if end > self.start {
                    self.out.push(Token {
                        kind: Kind::Text,
                        pos: self.start,
                        val: self.input[self.start..end].to_string(),
                        line: 0,
                    });
                }
                self.start = self.pos;
            }
            return State::LeftDelim;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.emit(Kind::Text);
        }
        self.emit(Kind::Eof);
        State::Done
    }

    fn lex_left_delim(&mut self) -> State {
        self.pos += LEFT.len();
        let trim = has_left_trim(self.rest());
        let after = if trim { 2 } else { 0 };
        if self.input[self.pos + after..].starts_with(LEFT_COMMENT) {
            self.pos += after;
            self.ignore();
            return State::Comment;
        }
        self.emit(Kind::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        State::Inside
    }

    /// Whether a right delimiter (maybe preceded by " -") starts here.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if rest.starts_with(RIGHT) {
            return (true, false);
        }
        if has_right_trim(rest) && rest[2..].starts_with(RIGHT) {
            return (true, true);
        }
        (false, false)
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.rest().find(RIGHT_COMMENT) else {
            return self.error("unclosed comment".into());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += 2;
        }
        self.pos += RIGHT.len();
        if trim {
            let rest = self.rest();
            self.pos += rest.len() - rest.trim_start_matches(is_space).len();
        }
        self.ignore();
        State::Text
    }

    fn lex_right_delim(&mut self) -> State {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.ignore();
        }
        self.pos += RIGHT.len();
        self.emit(Kind::RightDelim);
        if trim {
            let rest = self.rest();
            self.pos += rest.len() - rest.trim_start_matches(is_space).len();
            self.ignore();
        }
        State::Text
    }

    fn lex_inside(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return State::RightDelim;
            }
            return self.error("unclosed left paren".into());
        }
        let c = self.next();
        let Some(r) = c else {
            return self.error("unclosed action".into());
        };
        match r {
            _ if is_space(r) => {
                self.backup(c);
                return self.lex_space();
            }
            '=' => self.emit(Kind::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.error("expected :=".into());
                }
                self.emit(Kind::Declare);
            }
            '|' => self.emit(Kind::Pipe),
            '"' => return self.lex_quote(),
            '`' => return self.lex_raw_quote(),
            '$' => return self.lex_variable(),
            '\'' => return self.lex_char(),
            '.' if self.peek().is_some_and(|n| !n.is_ascii_digit()) => {
                return self.lex_field_or_variable(Kind::Field);
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup(c);
                return self.lex_number();
            }
            _ if is_alnum(r) => {
                self.backup(c);
                return self.lex_identifier();
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen);
            }
            ')' => {
                // A stray ")" is the parser's to report ("unexpected \")\" in command").
                self.paren_depth -= 1;
                self.emit(Kind::RightParen);
            }
            _ if r.is_ascii() && !r.is_ascii_control() => self.emit(Kind::Char),
            _ => return self.error(format!("unrecognized character in action: {}", sharp_u(r))),
        }
        State::Inside
    }

    fn lex_space(&mut self) -> State {
        let mut n = 0;
        while self.peek().is_some_and(is_space) {
            self.next();
            n += 1;
        }
        // A " -}}" after the run belongs to the delimiter.
        let before = &self.input[self.pos - 1..];
        if has_right_trim(before) && before[2..].starts_with(RIGHT) {
            self.backup(Some(before.chars().next().unwrap_or(' ')));
            if n == 1 {
                return State::RightDelim;
            }
        }
        self.emit(Kind::Space);
        State::Inside
    }

    fn lex_identifier(&mut self) -> State {
        loop {
            let c = self.next();
            if c.is_some_and(is_alnum) {
                continue;
            }
            self.backup(c);
            let word = &self.input[self.start..self.pos];
            if !self.at_terminator() {
                return self.error(format!(
                    "bad character {}",
                    sharp_u(c.unwrap_or('\u{FFFD}'))
                ));
            }
            let kind = match keyword(word) {
                Some(k) => k,
                None if word.starts_with('.') => Kind::Field,
                None if word == "true" || word == "false" => Kind::Bool,
                None => Kind::Identifier,
            };
            self.emit(kind);
            return State::Inside;
        }
    }

    fn lex_variable(&mut self) -> State {
        if self.at_terminator() {
            self.emit(Kind::Variable);
            return State::Inside;
        }
        self.lex_field_or_variable(Kind::Variable)
    }

    fn lex_field_or_variable(&mut self, kind: Kind) -> State {
        if self.at_terminator() {
            self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
            return State::Inside;
        }
        let mut last;
        loop {
            last = self.next();
            if !last.is_some_and(is_alnum) {
                self.backup(last);
                break;
            }
        }
        if !self.at_terminator() {
            let bad = last.map_or_else(|| "U+FFFFFFFFFFFFFFFF".to_string(), sharp_u);
            return self.error(format!("bad character {bad}"));
        }
        self.emit(kind);
        State::Inside
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(r) => is_space(r) || matches!(r, '.' | ',' | '|' | ':' | ')' | '(' | '}'),
        }
    }

    fn lex_char(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => {
                        return self.error("unterminated character constant".into())
                    }
                    _ => {}
                },
                Some('\n') | None => return self.error("unterminated character constant".into()),
                Some('\'') => break,
                _ => {}
            }
        }
        self.emit(Kind::CharConstant);
        State::Inside
    }

    fn lex_number(&mut self) -> State {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_string();
            return self.error(format!(
                "bad number syntax: {}",
                crate::quote::go_quote(&text)
            ));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = self.input[self.start..self.pos].to_string();
                return self.error(format!(
                    "bad number syntax: {}",
                    crate::quote::go_quote(&text)
                ));
            }
            self.emit(Kind::Complex);
        } else {
            self.emit(Kind::Number);
        }
        State::Inside
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.next();
            return false;
        }
        true
    }

    fn lex_quote(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => return self.error("unterminated quoted string".into()),
                    _ => {}
                },
                Some('\n') | None => return self.error("unterminated quoted string".into()),
                Some('"') => break,
                _ => {}
            }
        }
        self.emit(Kind::String);
        State::Inside
    }

    fn lex_raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.error("unterminated raw quoted string".into()),
                Some('`') => break,
                _ => {}
            }
        }
        self.emit(Kind::RawString);
        State::Inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Kind> {
        lex(s).into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn trims_and_comments() {
        let toks = lex("a  {{- 1 -}}  b{{/* c */}}d");
        let texts: Vec<&str> = toks
            .iter()
            .filter(|t| t.kind == Kind::Text)
            .map(|t| t.val.as_str())
            .collect();
        assert_eq!(texts, ["a", "b", "d"]);
    }

    #[test]
    fn minus_number_is_not_a_trim_marker() {
        assert_eq!(
            kinds("{{-3}}"),
            [Kind::LeftDelim, Kind::Number, Kind::RightDelim, Kind::Eof]
        );
    }

    #[test]
    fn errors() {
        let last = |s: &str| lex(s).pop().map(|t| t.val).unwrap_or_default();
        assert_eq!(last("{{"), "unclosed action");
        assert_eq!(
            last("{{ \u{a0} }}"),
            "unrecognized character in action: U+00A0"
        );
        assert_eq!(last("{{$x=1}}"), "bad character U+003D '='");
        assert_eq!(last("{{ \"a }}"), "unterminated quoted string");
        assert_eq!(last("{{ (1 }}"), "unclosed left paren");
        assert_eq!(last("{{/* x }}"), "unclosed comment");
    }

    #[test]
    fn lines_are_counted() {
        let toks = lex("a\nb{{ `x\ny` }}\n{{ 1 }}");
        let num = toks.iter().find(|t| t.kind == Kind::Number).map(|t| t.line);
        assert_eq!(num, Some(4));
    }
}
