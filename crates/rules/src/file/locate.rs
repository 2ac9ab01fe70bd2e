//! Where things are in a rule file's text. serde gives no positions for values, so the
//! block structure (keys and `- ` items by indentation) is rebuilt from the lines; that is
//! how rule files are written. Flow style (`{...}`, `[...]`) is not looked into: lookups
//! then fall back to the nearest enclosing position found.

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// `Some` for `key:` entries, `None` for `- ` items.
    key: Option<String>,
    /// The key, or for an item the first thing after its dash (YAML's mapping position).
    pos: Pos,
    /// The inline value after `key: `, if any.
    value: Option<Pos>,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.key.as_deref() == Some(key))
    }

    fn items(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().filter(|c| c.key.is_none())
    }

    /// Where the value of this key starts: inline, or its first nested line.
    fn value_pos(&self) -> Pos {
        self.value
            .or_else(|| self.children.first().map(|c| c.pos))
            .unwrap_or(self.pos)
    }
}

/// The block structure of one rule file.
#[derive(Debug, Default)]
pub struct Locator {
    root: Node,
}

impl Locator {
    pub fn new(text: &str) -> Locator {
        // Entries with an effective depth: keys at 2*col, items at 2*col+1, so that an item
        // written at its parent key's column (`groups:\n- name: x`) still nests under it.
        let mut stack: Vec<(usize, Node)> = vec![(0, Node::default())];
        for (lineno, line) in text.lines().enumerate() {
            let trimmed = line.trim_start_matches(' ');
            if trimmed.is_empty()
                || trimmed.starts_with('#')
                || trimmed.trim_end() == "---"
                || trimmed.trim_end() == "..."
                || trimmed.trim().is_empty()
            {
                continue;
            }
            let mut col = line.len() - trimmed.len();
            let mut rest = trimmed;
            loop {
                let is_item = rest == "-" || rest.starts_with("- ");
                let depth = if is_item { 2 * col + 1 } else { 2 * col } + 2;
                let pos = Pos {
                    line: lineno + 1,
                    col: col + 1,
                };
                let node = if is_item {
                    let after = rest[1..].trim_start_matches(' ');
                    let item_col = col + (rest.len() - after.len());
                    Node {
                        key: None,
                        pos: Pos {
                            line: lineno + 1,
                            col: item_col + 1,
                        },
                        ..Node::default()
                    }
                } else {
                    match split_key(rest) {
                        Some((key, value_off)) => Node {
                            key: Some(key),
                            pos,
                            value: value_off.map(|off| Pos {
                                line: lineno + 1,
                                col: col + off + 1,
                            }),
                            children: Vec::new(),
                        },
                        // A continuation line (block scalar, plain multi-line scalar).
                        None => break,
                    }
                };
                push(&mut stack, depth, node);
                if !is_item {
                    break;
                }
                let after = rest[1..].trim_start_matches(' ');
                if after.is_empty() || after.starts_with('#') {
                    break;
                }
                col += rest.len() - after.len();
                rest = after;
            }
        }
        while stack.len() > 1 {
            pop(&mut stack);
        }
        Locator {
            root: stack.pop().map(|(_, n)| n).unwrap_or_default(),
        }
    }

    fn group(&self, g: usize) -> Option<&Node> {
        self.root.child("groups")?.items().nth(g)
    }

    fn rule(&self, g: usize, r: usize) -> Option<&Node> {
        self.group(g)?.child("rules")?.items().nth(r)
    }

    /// Group `g` (0-based): the position of its mapping (its first key).
    pub fn group_pos(&self, g: usize) -> Pos {
        self.group(g)
            .map(|n| n.pos)
            .or_else(|| self.root.child("groups").map(|n| n.pos))
            .unwrap_or(Pos { line: 1, col: 1 })
    }

    /// The value of a group's field, or the group itself.
    pub fn group_field(&self, g: usize, field: &str) -> Pos {
        self.group(g)
            .and_then(|n| n.child(field))
            .map(Node::value_pos)
            .unwrap_or_else(|| self.group_pos(g))
    }

    /// The key `key` inside a group's map field (`labels:`), or the field.
    pub fn group_map_key(&self, g: usize, field: &str, key: &str) -> Pos {
        self.group(g)
            .and_then(|n| n.child(field))
            .and_then(|n| n.child(key))
            .map(|n| n.pos)
            .unwrap_or_else(|| self.group_field(g, field))
    }

    /// Rule `r` of group `g` (both 0-based): the position of its mapping.
    pub fn rule_pos(&self, g: usize, r: usize) -> Pos {
        self.rule(g, r)
            .map(|n| n.pos)
            .unwrap_or_else(|| self.group_field(g, "rules"))
    }

    /// The value of a rule's field, or the rule itself.
    pub fn rule_field(&self, g: usize, r: usize, field: &str) -> Pos {
        self.rule(g, r)
            .and_then(|n| n.child(field))
            .map(Node::value_pos)
            .unwrap_or_else(|| self.rule_pos(g, r))
    }

    /// The value of a rule's field when the field is there.
    pub fn rule_value(&self, g: usize, r: usize, field: &str) -> Option<Pos> {
        self.rule(g, r)?.child(field).map(Node::value_pos)
    }

    /// The key `key` inside a rule's map field (`labels:`, `annotations:`).
    pub fn rule_map_key(&self, g: usize, r: usize, field: &str, key: &str) -> Pos {
        self.rule(g, r)
            .and_then(|n| n.child(field))
            .and_then(|n| n.child(key))
            .map(|n| n.pos)
            .unwrap_or_else(|| self.rule_field(g, r, field))
    }
}

fn push(stack: &mut Vec<(usize, Node)>, depth: usize, node: Node) {
    while stack.len() > 1 && stack.last().is_some_and(|(d, _)| *d >= depth) {
        pop(stack);
    }
    stack.push((depth, node));
}

fn pop(stack: &mut Vec<(usize, Node)>) {
    if let Some((_, n)) = stack.pop() {
        if let Some((_, parent)) = stack.last_mut() {
            parent.children.push(n);
        }
    }
}

/// `key: value` or `key:` → the key (unquoted) and the value's byte offset, if inline.
fn split_key(s: &str) -> Option<(String, Option<usize>)> {
    let (key, after) = if let Some(q @ ('"' | '\'')) = s.chars().next() {
        let end = s[1..].find(q)? + 1;
        (s[1..end].to_string(), end + 1)
    } else {
        let end = s
            .char_indices()
            .find(|&(i, c)| c == ':' && s[i + 1..].chars().next().is_none_or(|n| n == ' '))
            .map(|(i, _)| i)?;
        let key = &s[..end];
        if key.is_empty() || key.starts_with(['{', '[', '&', '*', '!', '|', '>']) {
            return None;
        }
        (key.trim_end().to_string(), end)
    };
    let rest = s[after..].strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let value = rest.trim_start_matches(' ');
    let off = s.len() - value.len();
    Some((
        key,
        (!value.is_empty() && !value.starts_with('#')).then_some(off),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
groups:
- name: a
  interval: 1m
  rules:
  - record: x
    expr: up
  - alert: Y
    expr: |
      sum(up)
        - on() z: 1
    labels:
      severity: page
  - name: b
";

    #[test]
    fn finds_groups_rules_and_fields() {
        let l = Locator::new(FILE);
        assert_eq!(l.group_pos(0), Pos { line: 3, col: 3 });
        assert_eq!(l.group_field(0, "interval"), Pos { line: 4, col: 13 });
        assert_eq!(l.rule_pos(0, 0), Pos { line: 6, col: 5 });
        assert_eq!(l.rule_field(0, 0, "expr"), Pos { line: 7, col: 11 });
        assert_eq!(l.rule_field(0, 1, "expr"), Pos { line: 9, col: 11 });
        assert_eq!(
            l.rule_map_key(0, 1, "labels", "severity"),
            Pos { line: 13, col: 7 }
        );
        // Not a group: an item of `rules` at the same indentation.
        assert_eq!(l.rule_pos(0, 2), Pos { line: 14, col: 5 });
        assert_eq!(l.group_pos(1), Pos { line: 2, col: 1 });
    }

    #[test]
    fn indented_lists_and_missing_things() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n";
        let l = Locator::new(text);
        assert_eq!(l.group_pos(0), Pos { line: 2, col: 5 });
        assert_eq!(l.rule_field(0, 0, "expr"), Pos { line: 5, col: 15 });
        assert_eq!(l.rule_field(0, 0, "for"), Pos { line: 4, col: 9 });
        assert_eq!(l.rule_pos(0, 5), Pos { line: 4, col: 9 });
        let flow = Locator::new("groups: [{name: a, rules: []}]\n");
        assert_eq!(flow.group_pos(0), Pos { line: 1, col: 1 });
        assert_eq!(Locator::new("").rule_pos(3, 3), Pos { line: 1, col: 1 });
    }
}
