//! Logical lines → a tree of keywords and blocks, with brace errors located.

use super::{
    diag::{Diags, Loc},
    lexer::{Line, Token},
};

/// A keyword line, with the block that follows it if any.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub key: Token,
    pub args: Vec<Token>,
    pub block: Option<Block>,
}

#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// Where its `{` is.
    pub open: Loc,
    pub children: Vec<Node>,
}

impl Node {
    pub(crate) fn name(&self) -> &str {
        &self.key.text
    }

    pub(crate) fn children(&self) -> &[Node] {
        self.block.as_ref().map_or(&[], |b| b.children.as_slice())
    }
}

pub(crate) fn build(lines: &[Line], diags: &mut Diags) -> Vec<Node> {
    let mut i = 0;
    // At top level a stray `}` is reported and skipped, so this reads to the end.
    seq(lines, &mut i, None, diags)
}

/// Reads nodes until the `}` closing `open` (or the end of input at top level).
fn seq(lines: &[Line], i: &mut usize, open: Option<(&Loc, &str)>, diags: &mut Diags) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    while *i < lines.len() {
        let line = &lines[*i];
        let first = &line.tokens[0];
        if first.is("}") {
            *i += 1;
            if open.is_some() {
                return nodes;
            }
            diags
                .error(&first.loc, "unexpected '}' with no block open")
                .hint("remove it, or look for a block above that was closed twice");
            continue;
        }
        if first.is("{") {
            *i += 1;
            diags
                .error(&first.loc, "unexpected '{' without a keyword before it")
                .hint("a block opens on the line of its keyword or the line right after it");
            // Read the block anyway so that its `}` does not close the enclosing one.
            let _ = seq(lines, i, Some((&first.loc, "{")), diags);
            continue;
        }
        let mut node = Node {
            key: first.clone(),
            args: line.tokens[1..].to_vec(),
            block: None,
        };
        *i += 1;
        if let Some(next) = lines.get(*i)
            && next.tokens[0].is("{")
        {
            let open_loc = next.tokens[0].loc.clone();
            *i += 1;
            let label = describe(&node);
            let children = seq(lines, i, Some((&open_loc, &label)), diags);
            node.block = Some(Block {
                open: open_loc,
                children,
            });
        }
        nodes.push(node);
    }
    if let Some((loc, label)) = open {
        diags
            .error(loc, format!("block '{label}' opened here is never closed"))
            .hint("add the missing '}' at the end of the block");
    }
    nodes
}

fn describe(n: &Node) -> String {
    match n.args.first() {
        Some(a) => format!("{} {}", n.key.text, a.text),
        None => n.key.text.clone(),
    }
}
