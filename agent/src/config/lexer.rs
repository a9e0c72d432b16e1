//! Reads keepalived.conf as keepalived does: comments, quoting, `include`,
//! `$NAME=` definitions, `@id` lines, and braces that always stand alone.
//!
//! keepalived splits every `{` and `}` outside quotes onto a line of its own
//! before it looks at keywords, so `vrrp_instance X {`, `vrrp_instance X` +
//! `{` on the next line, and `virtual_ipaddress { 10.0.0.1 }` all read the
//! same. The output here is that stream of logical lines.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::diag::{Diags, Loc};

/// Nested includes deeper than this are refused: a file including itself would never end.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub text: String,
    pub loc: Loc,
    /// Written in double quotes (a quoted `{` is a word, not a brace).
    pub quoted: bool,
}

impl Token {
    pub(crate) fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// A logical line: a keyword with its arguments, or a lone brace.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub tokens: Vec<Token>,
}

/// What the reader needs from outside.
pub(crate) struct LexOptions<'a> {
    /// keepalived's `-i` config id (defaults to the node name): `@ID` lines
    /// apply only when it matches, `@^ID` lines only when it does not.
    pub config_id: Option<&'a str>,
    /// Off when reading text that has no file behind it (nothing to be relative to).
    pub follow_includes: bool,
}

struct Lexer<'a> {
    opts: LexOptions<'a>,
    defs: HashMap<String, String>,
    root_dir: PathBuf,
    out: Vec<Line>,
    diags: &'a mut Diags,
}

/// Reads configuration text that has no file behind it; `include` is not followed.
pub(crate) fn read_source(
    bytes: &[u8],
    name: &str,
    opts: LexOptions<'_>,
    diags: &mut Diags,
) -> Vec<Line> {
    let mut lx = Lexer {
        opts,
        defs: HashMap::new(),
        root_dir: PathBuf::from("."),
        out: Vec::new(),
        diags,
    };
    lx.file(bytes, Arc::from(name), Path::new(name), 0);
    lx.out
}

/// Reads `main` and everything it includes into logical lines.
pub(crate) fn read(main: &Path, opts: LexOptions<'_>, diags: &mut Diags) -> Vec<Line> {
    let root_dir = main
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut lx = Lexer {
        opts,
        defs: HashMap::new(),
        root_dir,
        out: Vec::new(),
        diags,
    };
    match std::fs::read(main) {
        Ok(bytes) => {
            let name = main
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| main.display().to_string());
            lx.file(&bytes, Arc::from(name), main, 0);
        }
        Err(e) => {
            lx.diags
                .add(
                    super::diag::Severity::Error,
                    None,
                    format!("cannot read configuration file {}: {e}", main.display()),
                )
                .hint("pass the file with -f FILE (default /etc/keepalived/keepalived.conf)");
        }
    }
    lx.out
}

impl Lexer<'_> {
    fn display_name(&self, path: &Path) -> Arc<str> {
        let shown = path
            .strip_prefix(&self.root_dir)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(path);
        Arc::from(shown.display().to_string())
    }

    fn file(&mut self, bytes: &[u8], name: Arc<str>, path: &Path, depth: usize) {
        let text = String::from_utf8_lossy(bytes);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut pending_def: Option<String> = None;
        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
            let raw = raw.trim_end_matches('\r');
            // A `$NAME=value \` definition continues on the following lines.
            if let Some(name_cont) = pending_def.take() {
                let (body, more) = match raw.trim_end().strip_suffix('\\') {
                    Some(b) => (b.trim(), true),
                    None => (raw.trim(), false),
                };
                let entry = self.defs.entry(name_cont.clone()).or_default();
                if !body.is_empty() {
                    if !entry.is_empty() {
                        entry.push('\n');
                    }
                    entry.push_str(body);
                }
                if more {
                    pending_def = Some(name_cont);
                }
                continue;
            }
            let loc = |col: usize| Loc {
                file: name.clone(),
                line: line_no,
                column: u32::try_from(col + 1).unwrap_or(u32::MAX),
            };
            let Some(stripped) = self.decomment(raw, &loc) else {
                continue;
            };
            let (mut body, mut offset) = stripped;
            if body.is_empty() {
                continue;
            }
            // `@ID rest` / `@^ID rest`: conditional lines.
            if let Some(rest) = body.strip_prefix('@') {
                let (negate, rest) = match rest.strip_prefix('^') {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let Some(sp) = rest.find([' ', '\t']) else {
                    continue;
                };
                let id = &rest[..sp];
                let matches = self.opts.config_id == Some(id);
                if matches == negate {
                    continue;
                }
                let after = rest[sp..].trim_start();
                offset += body.len() - after.len();
                body = after.to_string();
            }
            // `$NAME=value` definitions.
            if body.starts_with('$')
                && let Some((n, v, cont)) = parse_definition(&body)
            {
                self.defs.insert(n.clone(), v);
                if cont {
                    pending_def = Some(n);
                }
                continue;
            }
            if body.contains('$') && !self.defs.is_empty() {
                body = self.substitute(&body);
            }
            let tokens = self.tokenize(&body, offset, &loc);
            if tokens.is_empty() {
                continue;
            }
            if tokens.len() == 2 && (tokens[0].is("include") || tokens[0].is("includet")) {
                if self.opts.follow_includes {
                    self.include(&tokens[1], &dir, depth);
                } else {
                    self.diags.note(
                        &tokens[0].loc,
                        "include not followed when checking text without a file",
                    );
                }
                continue;
            }
            self.push_split(tokens);
        }
    }

    /// Strips comments (`!` or `#` outside double quotes; `\!` and `\#` are
    /// literal) and leading/trailing blanks. Returns the text and the column
    /// offset of its first character.
    fn decomment(&mut self, raw: &str, loc: &dyn Fn(usize) -> Loc) -> Option<(String, usize)> {
        let lead = raw.len() - raw.trim_start_matches([' ', '\t']).len();
        let s = &raw[lead..];
        let mut out = String::with_capacity(s.len());
        let mut in_quote = false;
        let mut chars = s.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            match c {
                '"' => {
                    in_quote = !in_quote;
                    out.push(c);
                }
                '\\' => match chars.peek() {
                    Some(&(_, n)) if !in_quote && (n == '#' || n == '!') => {
                        // Keep the escape so the tokenizer knows this is not a comment.
                        out.push('\\');
                        out.push(n);
                        chars.next();
                    }
                    Some(&(_, n)) => {
                        out.push('\\');
                        out.push(n);
                        chars.next();
                    }
                    None => out.push('\\'),
                },
                '!' | '#' if !in_quote => break,
                _ => out.push(c),
            }
        }
        if in_quote {
            self.diags
                .error(&loc(lead), "unterminated quote")
                .hint("close the string with a double quote on the same line");
            return None;
        }
        let trimmed = out.trim_end_matches([' ', '\t']).to_string();
        Some((trimmed, lead))
    }

    fn substitute(&self, body: &str) -> String {
        let mut out = String::new();
        let mut rest = body;
        // Bounded: a definition whose value names itself would otherwise loop.
        let mut budget = 64;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, consumed) = if let Some(b) = after.strip_prefix('{') {
                match b.find('}') {
                    Some(end) => (&b[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.defs.get(name) {
                Some(v) if consumed > 0 && budget > 0 => {
                    budget -= 1;
                    out.push_str(v);
                    rest = &after[consumed..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn tokenize(&mut self, body: &str, offset: usize, loc: &dyn Fn(usize) -> Loc) -> Vec<Token> {
        let mut tokens = Vec::new();
        let bytes: Vec<(usize, char)> = body.char_indices().collect();
        let mut i = 0;
        while i < bytes.len() {
            let (pos, c) = bytes[i];
            if c == ' ' || c == '\t' || c == '\x0c' || c == '\x0b' {
                i += 1;
                continue;
            }
            let col = offset + body[..pos].chars().count();
            if c == '{' || c == '}' {
                tokens.push(Token {
                    text: c.to_string(),
                    loc: loc(col),
                    quoted: false,
                });
                i += 1;
                continue;
            }
            if c == '"' {
                let mut text = String::new();
                i += 1;
                while i < bytes.len() && bytes[i].1 != '"' {
                    text.push(bytes[i].1);
                    i += 1;
                }
                i += 1; // closing quote (decomment guarantees it exists)
                tokens.push(Token {
                    text,
                    loc: loc(col),
                    quoted: true,
                });
                continue;
            }
            let mut text = String::new();
            while i < bytes.len() {
                let c = bytes[i].1;
                if matches!(c, ' ' | '\t' | '\x0c' | '\x0b' | '"' | '{' | '}') {
                    break;
                }
                if c == '\\'
                    && let Some(&(_, n)) = bytes.get(i + 1)
                    && (n == '#' || n == '!')
                {
                    text.push(n);
                    i += 2;
                    continue;
                }
                text.push(c);
                i += 1;
            }
            tokens.push(Token {
                text,
                loc: loc(col),
                quoted: false,
            });
        }
        tokens
    }

    /// Emits tokens as lines, with every unquoted brace on a line of its own.
    fn push_split(&mut self, tokens: Vec<Token>) {
        let mut cur = Vec::new();
        for t in tokens {
            if t.is("{") || t.is("}") {
                if !cur.is_empty() {
                    self.out.push(Line {
                        tokens: std::mem::take(&mut cur),
                    });
                }
                self.out.push(Line { tokens: vec![t] });
            } else {
                cur.push(t);
            }
        }
        if !cur.is_empty() {
            self.out.push(Line { tokens: cur });
        }
    }

    fn include(&mut self, pattern: &Token, dir: &Path, depth: usize) {
        if depth >= MAX_INCLUDE_DEPTH {
            self.diags
                .error(
                    &pattern.loc,
                    format!("includes nested more than {MAX_INCLUDE_DEPTH} deep"),
                )
                .hint("a file probably includes itself");
            return;
        }
        // keepalived changes into the including file's directory first, so
        // relative patterns are relative to that file, not to the cwd.
        let full = if Path::new(&pattern.text).is_absolute() {
            PathBuf::from(&pattern.text)
        } else {
            dir.join(&pattern.text)
        };
        let mut paths = Vec::new();
        for pat in expand_braces(&full.to_string_lossy()) {
            match glob::glob(&pat) {
                Ok(found) => paths.extend(found.flatten()),
                Err(e) => {
                    self.diags
                        .error(&pattern.loc, format!("bad include pattern '{pat}': {e}"));
                    return;
                }
            }
        }
        if paths.is_empty() {
            self.diags
                .note(
                    &pattern.loc,
                    format!("no config files matched '{}'", pattern.text),
                )
                .hint("keepalived skips an include that matches nothing");
            return;
        }
        for p in paths {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            let executable = {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o111 != 0
            };
            if !meta.is_file() || executable {
                self.diags.warn(
                    &pattern.loc,
                    format!(
                        "included file '{}' is not a regular non-executable file - skipping",
                        p.display()
                    ),
                );
                continue;
            }
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let name = self.display_name(&p);
                    self.file(&bytes, name, &p, depth + 1);
                }
                Err(e) => {
                    self.diags.warn(
                        &pattern.loc,
                        format!("cannot read included file '{}': {e}", p.display()),
                    );
                }
            }
        }
    }
}

/// `$NAME=value` (value may end with `\` to continue on the next line).
fn parse_definition(body: &str) -> Option<(String, String, bool)> {
    let rest = body.strip_prefix('$')?;
    let first = rest.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    let after = rest[end..].trim_start_matches([' ', '\t']);
    let value = after.strip_prefix('=')?.trim();
    match value.strip_suffix('\\') {
        Some(v) => Some((name.to_string(), v.trim_end().to_string(), true)),
        None => Some((name.to_string(), value.to_string(), false)),
    }
}

/// glibc's GLOB_BRACE, which keepalived turns on: `a{b,c}d` → `abd`, `acd`.
fn expand_braces(pat: &str) -> Vec<String> {
    let Some(open) = pat.find('{') else {
        return vec![pat.to_string()];
    };
    let mut depth = 0;
    let mut close = None;
    for (i, c) in pat[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![pat.to_string()];
    };
    let (pre, inner, post) = (&pat[..open], &pat[open + 1..close], &pat[close + 1..]);
    let mut parts = Vec::new();
    let (mut d, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => d += 1,
            '}' => d -= 1,
            ',' if d == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .flat_map(|p| expand_braces(&format!("{pre}{p}{post}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> (Vec<Vec<String>>, Diags) {
        let dir =
            std::env::temp_dir().join(format!("xvrrpd-lex-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join("k.conf");
        std::fs::write(&f, text).expect("write temp config");
        let mut d = Diags::default();
        let lines = read(
            &f,
            LexOptions {
                config_id: None,
                follow_includes: true,
            },
            &mut d,
        );
        let _ = std::fs::remove_dir_all(&dir);
        (
            lines
                .into_iter()
                .map(|l| l.tokens.into_iter().map(|t| t.text).collect())
                .collect(),
            d,
        )
    }

    #[test]
    fn braces_stand_alone_and_comments_go() {
        let (l, d) = lex("vrrp_instance X { # c\n virtual_ipaddress { 10.0.0.1 } ! x\n}\n");
        assert!(d.list.is_empty());
        let want: Vec<Vec<&str>> = vec![
            vec!["vrrp_instance", "X"],
            vec!["{"],
            vec!["virtual_ipaddress"],
            vec!["{"],
            vec!["10.0.0.1"],
            vec!["}"],
            vec!["}"],
        ];
        assert_eq!(l, want);
    }

    #[test]
    fn quotes_keep_spaces_and_hashes() {
        let (l, _) = lex("script \"/bin/x -a # b\" root\n");
        assert_eq!(l, vec![vec!["script", "/bin/x -a # b", "root"]]);
    }

    #[test]
    fn escaped_comment_chars_are_literal() {
        let (l, _) = lex("auth_pass ab\\#cd\n");
        assert_eq!(l, vec![vec!["auth_pass", "ab#cd"]]);
    }

    #[test]
    fn definitions_substitute() {
        let (l, _) = lex("$VIP=10.1.1.1/24\naddr $VIP ${VIP}\n");
        assert_eq!(l, vec![vec!["addr", "10.1.1.1/24", "10.1.1.1/24"]]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let (_, d) = lex("script \"/bin/x\n");
        assert!(d.has_errors());
    }

    #[test]
    fn brace_expansion() {
        assert_eq!(expand_braces("a{b,c}d"), vec!["abd", "acd"]);
    }
}
