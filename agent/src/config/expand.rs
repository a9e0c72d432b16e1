//! keepalived's config-language expansions, as keepalived 2.2.7 (Debian's)
//! performs them in `read_line()` (lib/parser.c):
//!
//! * `$NAME=VALUE` definitions, and multi-line ones (`$NAME=line1 \` with
//!   continuation lines). A multi-line definition is expanded only when its
//!   reference ends the line: its first line replaces the reference, and its
//!   other lines follow as lines of their own.
//! * `$NAME` (before a blank, `,`, `)` or the end of the line) and `${NAME}`
//!   references, substituted recursively at use time; undefined names stay.
//! * Built-ins `${_PWD}`, `${_INSTANCE}`, `${_RANDOM [MIN [MAX]]}`, `${_HASH}`,
//!   `${_BANG}`, and `${_ENV NAME}` (the environment's NAME, as keepalived
//!   2.4.0 and later read it; 2.2.7 left it as written).
//! * `~SEQ(VAR, [START, [STEP,]] END) TEXT`, `~SEQx(...)` (hex values) and
//!   `~LST(VAR, V1, V2, ...)` / `~LST({VAR1, VAR2}, {V1, V2}, ...)`: TEXT is
//!   read again once per value, with VAR defined; they nest on one line.
//! * `@ID` / `@^ID` conditional lines, which may also come out of an expansion.
//! * Every unquoted `{` / `}` ends the line; the text after it is read as a
//!   new line (so it may itself be a definition, `@ID` or `~SEQ` line).
//!
//! keepalived keeps the expansions on two lists (the ~SEQ/~LST list and the
//! multi-line stack) whose interplay amounts to one stack, which is what
//! `Expander::frames` is: the newest expansion runs to its end first.
//!
//! Everything is bounded: keepalived hangs on `$A=$A` or a ~SEQ to LONG_MAX;
//! here those are errors naming the cap.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
};

use super::diag::{Diags, Loc, Severity};

/// keepalived reads lines into a 1024-byte buffer (MAXBUF) and stops
/// substituting when a line would not fit.
pub(crate) const MAX_LINE_LEN: usize = 1023;
/// keepalived copies a ~SEQ's parameters (after the variable, up to `)`) into
/// a 64-byte buffer.
const MAX_SEQ_PARAMS_LEN: usize = 63;
/// Substitutions in one line: more means a definition refers to itself
/// (keepalived loops forever on `$A=$A`).
pub(crate) const MAX_SUBSTITUTIONS: usize = 1000;
/// Values of one ~SEQ (a whole 16-bit range for ~SEQx over IPv6 groups).
pub(crate) const MAX_SEQ_VALUES: i128 = 65_536;
/// Lines all expansions of one configuration may generate, so that a runaway
/// expansion ends with an error instead of exhausting memory.
pub(crate) const MAX_GENERATED_LINES: usize = 200_000;
/// Expansions open at once (~SEQ inside ~SEQ inside a multi-line definition...).
pub(crate) const MAX_NESTING: usize = 64;
/// Length of one definition's value (multi-line ones grow line by line).
pub(crate) const MAX_DEFINITION_LEN: usize = 1 << 20;

/// Text of a line with, for each byte, the column (1-based, in characters)
/// of the source character it came from; substituted text takes the column
/// of the `$` that brought it in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Src {
    pub text: String,
    pub cols: Vec<u32>,
}

impl Src {
    /// A physical line: each character at its own column.
    pub(crate) fn from_line(raw: &str) -> Self {
        let mut s = Src::default();
        for (n, c) in raw.chars().enumerate() {
            s.push(c, u32::try_from(n + 1).unwrap_or(u32::MAX));
        }
        s
    }

    fn uniform(text: &str, col: u32) -> Self {
        Src {
            text: text.to_string(),
            cols: vec![col; text.len()],
        }
    }

    fn push(&mut self, c: char, col: u32) {
        self.text.push(c);
        self.cols.resize(self.text.len(), col);
    }

    pub(crate) fn col(&self, byte: usize) -> u32 {
        self.cols
            .get(byte)
            .or(self.cols.last())
            .copied()
            .unwrap_or(1)
    }

    /// `start` must be a char boundary (callers only cut at ASCII bytes).
    fn tail(&self, start: usize) -> Src {
        Src {
            text: self.text.get(start..).unwrap_or("").to_string(),
            cols: self.cols.get(start..).unwrap_or(&[]).to_vec(),
        }
    }

    fn head(&self, end: usize) -> Src {
        Src {
            text: self.text.get(..end).unwrap_or("").to_string(),
            cols: self.cols.get(..end).unwrap_or(&[]).to_vec(),
        }
    }

    fn trim_end_blanks(mut self) -> Src {
        let keep = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(keep);
        self.cols.truncate(keep);
        self
    }

    fn replace(&mut self, start: usize, end: usize, with: &str, col: u32) {
        self.text.replace_range(start..end, with);
        self.cols
            .splice(start..end, std::iter::repeat_n(col, with.len()));
    }
}

fn skip_blanks(b: &[u8], mut p: usize) -> usize {
    while matches!(b.get(p), Some(b' ' | b'\t')) {
        p += 1;
    }
    p
}

/// keepalived's `decomment()`: drops leading blanks, the comment (`!` or `#`
/// outside double quotes) and trailing blanks, turns `\#` / `\!` outside
/// quotes into `#` / `!`, and keeps a final `\` (a continuation mark) right
/// after the last word. Scanning goes on inside the comment, as keepalived's
/// does, so a comment ending in `\` still marks a continuation.
///
/// Err(column) when a double quote is left open.
pub(crate) fn decomment(src: &Src) -> Result<Src, u32> {
    let b = src.text.as_bytes();
    let lead = skip_blanks(b, 0);
    let mut out = Src::default();
    let (mut quote, mut cont) = (false, None);
    let mut comment: Option<usize> = None;
    let mut chars = src.text[lead..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let col = src.col(lead + i);
        match c {
            '"' => {
                if comment.is_none() {
                    quote = !quote;
                }
                out.push(c, col);
            }
            '\\' => match chars.peek().copied() {
                Some((j, n)) => {
                    if !(!quote && (n == '#' || n == '!')) {
                        out.push('\\', col);
                    }
                    out.push(n, src.col(lead + j));
                    chars.next();
                }
                None => {
                    cont = Some(col);
                    break;
                }
            },
            '!' | '#' if !quote && comment.is_none() => {
                comment = Some(out.text.len());
                out.push(c, col);
            }
            _ => out.push(c, col),
        }
    }
    if quote {
        return Err(src.col(lead));
    }
    if let Some(at) = comment {
        out.text.truncate(at);
        out.cols.truncate(at);
    }
    let mut out = out.trim_end_blanks();
    if let Some(col) = cont {
        out.push('\\', col);
    }
    Ok(out)
}

/// keepalived's `strtol(s, &end, 0)`: blanks, a sign, then `0x` hex, `0`
/// octal or decimal digits, saturating. Returns the value and the index
/// after it; (0, start) when there is no number.
fn strtol(b: &[u8], start: usize) -> (i64, usize) {
    let mut p = start;
    while matches!(b.get(p), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
        p += 1;
    }
    let neg = match b.get(p) {
        Some(b'-') => {
            p += 1;
            true
        }
        Some(b'+') => {
            p += 1;
            false
        }
        _ => false,
    };
    let base: u32 = if b.get(p) == Some(&b'0')
        && matches!(b.get(p + 1), Some(b'x' | b'X'))
        && b.get(p + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        p += 2;
        16
    } else if b.get(p) == Some(&b'0') {
        8
    } else {
        10
    };
    let digits_start = p;
    let mut acc: i128 = 0;
    while let Some(d) = b.get(p).and_then(|&c| char::from(c).to_digit(base)) {
        // Saturate (strtol returns LONG_MAX/LONG_MIN) but keep consuming digits.
        acc = (acc * i128::from(base) + i128::from(d)).min(i128::from(i64::MAX) + 1);
        p += 1;
    }
    if p == digits_start {
        return (0, start);
    }
    let v = if neg { -acc } else { acc };
    let v = i64::try_from(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).unwrap_or(0);
    (v, p)
}

/// How a definition's value is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Builtin {
    Pwd,
    Instance,
    Random,
    Env,
}

#[derive(Clone, Debug)]
struct Def {
    /// Lines separated by '\n' when `multiline`.
    value: String,
    multiline: bool,
    /// Computed at each use (keepalived's `def->fn`); a `$NAME=` clears it.
    builtin: Option<Builtin>,
    /// Only `_RANDOM` (numbers) and `_ENV` (one name) take parameters; kept
    /// when it is redefined, as in keepalived.
    max_params: usize,
    min_params: usize,
    numbers_only: bool,
}

impl Def {
    fn plain(value: &str) -> Self {
        Def {
            value: value.to_string(),
            multiline: false,
            builtin: None,
            max_params: 0,
            min_params: 0,
            numbers_only: false,
        }
    }
}

/// One expansion in progress.
#[derive(Debug)]
enum Frame {
    Seq {
        var: String,
        next: i64,
        step: i64,
        last: i64,
        hex: bool,
        text: Src,
        done: bool,
    },
    Lst {
        vars: Vec<String>,
        sets: Vec<Vec<String>>,
        at: usize,
        text: Src,
    },
    /// The remaining lines of a multi-line definition (first one on top).
    Lines(Vec<Src>),
}

/// A reference found after a `$`.
struct Ref {
    name: String,
    /// Bytes replaced, the `$` included (keepalived's arithmetic, quirks and all).
    span: usize,
    /// `${_RANDOM 1 6}`: the parameter text.
    params: Option<String>,
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Out {
    /// A logical line: a lone `{` or `}`, or text with no unquoted brace.
    Line(Src),
    /// `include PATTERN` / `includet PATTERN`, whole (braces are glob syntax there).
    Include(Src),
}

/// Where the line being read is, and what the built-ins need.
pub(crate) struct Ctx<'a> {
    pub file: &'a Arc<str>,
    pub line: u32,
    /// keepalived's config id (`-i`, default the node name): `@ID` and `${_INSTANCE}`.
    pub config_id: Option<&'a str>,
    /// keepalived's working directory: the directory of the file being read
    /// (or of the last file an expansion included), for `${_PWD}`.
    pub cwd: &'a Path,
    pub diags: &'a mut Diags,
}

enum Subst {
    Unchanged,
    Changed,
    /// An error was reported; the line is dropped.
    Failed,
}

pub(crate) struct Expander {
    defs: HashMap<String, Def>,
    frames: Vec<Frame>,
    /// Text after a brace, read next as a line of its own.
    residue: Option<Src>,
    /// The line fed by the reader, read after everything above.
    input: Option<Src>,
    /// A multi-line definition collecting its continuation lines.
    pending: Option<String>,
    generated: usize,
    capped: bool,
    rng: u64,
    /// Expansions repeat a line; report each finding once per place.
    reported: HashSet<(Loc, String)>,
}

impl Default for Expander {
    fn default() -> Self {
        Self::new()
    }
}

impl Expander {
    pub(crate) fn new() -> Self {
        let mut defs = HashMap::new();
        for (name, builtin, min_params, max_params, numbers_only) in [
            ("_PWD", Builtin::Pwd, 0, 0, false),
            ("_INSTANCE", Builtin::Instance, 0, 0, false),
            ("_RANDOM", Builtin::Random, 0, 2, true),
            ("_ENV", Builtin::Env, 1, 1, false),
        ] {
            defs.insert(
                name.to_string(),
                Def {
                    value: String::new(),
                    multiline: false,
                    builtin: Some(builtin),
                    max_params,
                    min_params,
                    numbers_only,
                },
            );
        }
        defs.insert("_HASH".to_string(), Def::plain("#"));
        defs.insert("_BANG".to_string(), Def::plain("!"));
        // keepalived seeds random() from the time; the values differ anyway.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id()).rotate_left(32);
        Expander {
            defs,
            frames: Vec::new(),
            residue: None,
            input: None,
            pending: None,
            generated: 0,
            capped: false,
            rng: seed,
            reported: HashSet::new(),
        }
    }

    /// keepalived: an empty physical line ends a multi-line definition (a
    /// comment-only or blank-only line does not).
    pub(crate) fn empty_line(&mut self) {
        if let Some(name) = self.pending.take()
            && let Some(d) = self.defs.get_mut(&name)
            && d.value.is_empty()
        {
            d.multiline = false;
        }
    }

    /// A decommented physical line, read by the following `next()` calls.
    pub(crate) fn feed(&mut self, line: Src) {
        self.input = Some(line);
    }

    /// The next logical line, until the fed line and everything it
    /// generated are read.
    pub(crate) fn next(&mut self, ctx: &mut Ctx<'_>) -> Option<Out> {
        loop {
            let line = if let Some(r) = self.residue.take() {
                r
            } else if !self.frames.is_empty() {
                if self.generated >= MAX_GENERATED_LINES {
                    if !self.capped {
                        self.capped = true;
                        self.report(
                            ctx,
                            Severity::Error,
                            0,
                            format!(
                                "expansions generate more than {MAX_GENERATED_LINES} lines; the rest is dropped"
                            ),
                            "a multi-line definition that names itself on its last line repeats forever; otherwise make the ~SEQ/~LST ranges smaller",
                        );
                    }
                    self.frames.clear();
                    continue;
                }
                let Some(line) = self.pull() else {
                    continue;
                };
                self.generated += 1;
                line
            } else {
                self.input.take()?
            };
            if let Some(out) = self.process(line, ctx) {
                return Some(out);
            }
        }
    }

    /// The next line of the newest expansion; an expansion is dropped as soon
    /// as it has given its last line (keepalived frees it then), so that a
    /// definition naming itself last does not pile up frames.
    fn pull(&mut self) -> Option<Src> {
        // The variables are set once the frame is no longer borrowed.
        let mut set: Vec<(String, String)> = Vec::new();
        let (line, finished) = match self.frames.last_mut()? {
            Frame::Seq {
                var,
                next,
                step,
                last,
                hex,
                text,
                done,
            } => {
                if *done {
                    (None, true)
                } else {
                    let val = if *hex {
                        format!("{:x}", *next)
                    } else {
                        next.to_string()
                    };
                    set.push((var.clone(), val));
                    match next.checked_add(*step) {
                        Some(n) if (*step > 0 && n <= *last) || (*step < 0 && n >= *last) => {
                            *next = n
                        }
                        _ => *done = true,
                    }
                    (Some(text.clone()), *done)
                }
            }
            Frame::Lst {
                vars,
                sets,
                at,
                text,
            } => match sets.get(*at) {
                Some(values) => {
                    set.extend(vars.iter().cloned().zip(values.iter().cloned()));
                    *at += 1;
                    (Some(text.clone()), *at >= sets.len())
                }
                None => (None, true),
            },
            Frame::Lines(lines) => {
                let line = lines.pop();
                (line, lines.is_empty())
            }
        };
        if finished {
            self.frames.pop();
        }
        for (k, v) in set {
            self.set_definition(&k, &v);
        }
        line
    }

    /// keepalived's `set_definition()` (a ~SEQ/~LST variable): the value
    /// changes, a built-in stays a built-in.
    fn set_definition(&mut self, name: &str, value: &str) {
        let d = self
            .defs
            .entry(name.to_string())
            .or_insert_with(|| Def::plain(""));
        d.value = value.to_string();
        d.multiline = false;
    }

    fn push_frame(&mut self, frame: Frame, ctx: &mut Ctx<'_>, col: u32) -> bool {
        if self.frames.len() >= MAX_NESTING {
            self.report(
                ctx,
                Severity::Error,
                col,
                format!("expansions nested more than {MAX_NESTING} deep; this one is dropped"),
                "a multi-line definition probably expands itself; nest ~SEQ/~LST and definitions less deeply",
            );
            return false;
        }
        self.frames.push(frame);
        true
    }

    /// keepalived's processing of one line in `read_line()`.
    fn process(&mut self, mut line: Src, ctx: &mut Ctx<'_>) -> Option<Out> {
        if self.pending.is_some() {
            self.collect(line, ctx);
            return None;
        }
        loop {
            if line.text.is_empty() {
                return None;
            }
            if line.text.starts_with('@') {
                line = self.conditional(line, ctx)?;
            }
            if line.text.starts_with('$') && self.check_definition(&line) {
                return None;
            }
            if line.text.starts_with("~SEQ") {
                self.add_seq(&line, ctx);
                return None;
            }
            if line.text.starts_with("~LST") {
                self.add_lst(&line, ctx);
                return None;
            }
            // Any other `~` line goes to the parser as it is, unsubstituted.
            if line.text.starts_with('~') || !line.text.contains('$') {
                break;
            }
            match self.replace_params(&mut line, MAX_LINE_LEN, ctx, true) {
                Subst::Unchanged => break,
                Subst::Failed => return None,
                Subst::Changed => {}
            }
            // A substituted `#` or `!` (${_HASH}) starts a comment, as in keepalived.
            line = match decomment(&line) {
                Ok(l) => l,
                Err(col) => {
                    self.report(
                        ctx,
                        Severity::Error,
                        col,
                        "unterminated quote after substituting definitions",
                        "a definition's value brings in an unmatched double quote",
                    );
                    return None;
                }
            };
            if !(line.text.starts_with('@') || line.text.contains('$')) {
                break;
            }
        }
        if line.text.is_empty() {
            return None;
        }
        if is_include(&line.text) {
            return Some(Out::Include(line));
        }
        Some(Out::Line(self.split_brace(line)))
    }

    /// `@ID rest` / `@^ID rest`: the rest when the config id matches (or,
    /// with `^`, does not); nothing when there is no rest.
    fn conditional(&mut self, line: Src, ctx: &Ctx<'_>) -> Option<Src> {
        let b = line.text.as_bytes();
        let negate = b.get(1) == Some(&b'^');
        let ofs = if negate { 2 } else { 1 };
        let sp = line.text[ofs..].find([' ', '\t'])? + ofs;
        let matches = ctx.config_id == Some(&line.text[ofs..sp]);
        if matches == negate {
            return None;
        }
        Some(line.tail(skip_blanks(b, sp)))
    }

    /// Every unquoted brace stands alone: returns the line up to the first
    /// one (or the brace itself) and keeps what follows for the next read.
    fn split_brace(&mut self, line: Src) -> Src {
        let b = line.text.as_bytes();
        let mut p = 0;
        let mut at = None;
        while p < b.len() {
            match b[p] {
                b'{' | b'}' => {
                    at = Some(p);
                    break;
                }
                b'"' => match line.text[p + 1..].find('"') {
                    Some(q) => p += q + 2,
                    None => break,
                },
                _ => p += 1,
            }
        }
        match at {
            None => line.trim_end_blanks(),
            Some(0) => {
                let rest = line.tail(skip_blanks(b, 1)).trim_end_blanks();
                if !rest.text.is_empty() {
                    self.residue = Some(rest);
                }
                line.head(1)
            }
            Some(p) => {
                self.residue = Some(line.tail(p).trim_end_blanks());
                line.head(p).trim_end_blanks()
            }
        }
    }

    /// A continuation line of a multi-line definition (from any source,
    /// not re-read for `@`, definitions or references).
    fn collect(&mut self, line: Src, ctx: &mut Ctx<'_>) {
        let Some(name) = self.pending.clone() else {
            return;
        };
        let mut s = line.text;
        let more = s.ends_with('\\');
        if more {
            s.pop();
            s.truncate(s.trim_end_matches([' ', '\t']).len());
            s.push('\n');
        } else {
            self.pending = None;
        }
        let Some(d) = self.defs.get_mut(&name) else {
            return;
        };
        if !more && d.value.is_empty() {
            d.multiline = false;
        }
        // keepalived does not add blank lines.
        if s.len() >= 2 || (!s.is_empty() && !more) {
            if d.value.len() + s.len() > MAX_DEFINITION_LEN {
                self.pending = None;
                let col = line.cols.first().copied().unwrap_or(1);
                self.report(
                    ctx,
                    Severity::Error,
                    col,
                    format!(
                        "definition ${name} grows beyond {MAX_DEFINITION_LEN} bytes; the rest is dropped"
                    ),
                    "a line ending in '\\' continues the definition; end it with a line without one",
                );
                return;
            }
            d.value.push_str(&s);
        }
    }

    /// keepalived's `check_definition()`: `$NAME=VALUE`, no blank before `=`.
    fn check_definition(&mut self, line: &Src) -> bool {
        let b = line.text.as_bytes();
        if !b
            .get(1)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
        {
            return false;
        }
        let mut p = 2;
        loop {
            match b.get(p) {
                Some(b'=') => break,
                Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => p += 1,
                _ => return false,
            }
        }
        let name = line.text[1..p].to_string();
        let start = skip_blanks(b, p + 1);
        let mut value = line.text[start..].to_string();
        let multiline = value.ends_with('\\');
        if multiline {
            value.pop();
            value.truncate(value.trim_end_matches([' ', '\t']).len());
            if !value.is_empty() {
                value.push('\n');
            }
            self.pending = Some(name.clone());
        }
        let d = self.defs.entry(name).or_insert_with(|| Def::plain(""));
        d.value = value;
        d.multiline = multiline;
        d.builtin = None;
        true
    }

    /// keepalived's `find_definition()` for the text after a `$`.
    fn find_ref(&self, s: &str) -> Option<Ref> {
        let b = s.as_bytes();
        let braces = b.first() == Some(&b'{');
        let ns = usize::from(braces);
        if !b
            .get(ns)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
        {
            return None;
        }
        let mut p = ns + 1;
        while b
            .get(p)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        {
            p += 1;
        }
        let name = &s[ns..p];
        let mut params = None;
        let (mut count, mut numbers_only) = (0, true);
        if braces {
            let (mut first, mut last, mut in_param) = (None, 0, false);
            while let Some(&c) = b
                .get(p)
                .filter(|&&c| matches!(c, b' ' | b'\t' | b'_') || c.is_ascii_alphanumeric())
            {
                if c == b' ' || c == b'\t' {
                    in_param = false;
                } else {
                    first.get_or_insert(p);
                    last = p;
                    numbers_only &= c.is_ascii_digit();
                    if !in_param {
                        in_param = true;
                        count += 1;
                    }
                }
                p += 1;
            }
            if let Some(first) = first {
                if last + 1 != p {
                    return None;
                }
                params = Some((first, last));
            }
            if b.get(p) != Some(&b'}') {
                return None;
            }
        } else if !matches!(b.get(p), None | Some(b' ' | b'\t' | b',' | b')')) {
            return None;
        }
        // A multi-line definition only as the last thing on the line.
        let at_end = if braces {
            b.len() == ns + name.len() + 1
        } else {
            b.len() == name.len()
        };
        let def = self.defs.get(name)?;
        if def.multiline && !at_end {
            return None;
        }
        if params.is_some()
            && (def.max_params == 0
                || (def.numbers_only && !numbers_only)
                // `_RANDOM`'s extra numbers are read and reported (2.2.7).
                || (def.min_params > 0 && !(def.min_params..=def.max_params).contains(&count)))
        {
            return None;
        }
        if params.is_none() && def.min_params > 0 {
            return None;
        }
        // keepalived replaces `${NAME` plus one character: right for
        // `${NAME}`, and what it does with `${NAME }` too.
        let span = match params {
            Some((_, last)) => last + 3,
            None => 1 + name.len() + if braces { 2 } else { 0 },
        };
        Some(Ref {
            name: name.to_string(),
            span,
            params: params.map(|(f, l)| s[f..=l].to_string()),
        })
    }

    /// keepalived's `replace_param()`: substitutes every reference, reading
    /// substituted text again (so values may refer to other definitions).
    /// Multi-line definitions push their other lines when `lines_allowed`.
    fn replace_params(
        &mut self,
        line: &mut Src,
        max_len: usize,
        ctx: &mut Ctx<'_>,
        lines_allowed: bool,
    ) -> Subst {
        let mut cur = 0;
        let mut found = false;
        let mut count = 0;
        while let Some(off) = line.text.get(cur..).and_then(|t| t.find('$')) {
            let pos = cur + off;
            if pos + 1 >= line.text.len() {
                break;
            }
            let col = line.col(pos);
            let Some(r) = self.find_ref(&line.text[pos + 1..]) else {
                self.explain_miss(&line.text[pos + 1..], col, ctx);
                cur = pos + 1;
                continue;
            };
            count += 1;
            if count > MAX_SUBSTITUTIONS {
                self.report(
                    ctx,
                    Severity::Error,
                    col,
                    format!(
                        "more than {MAX_SUBSTITUTIONS} substitutions in one line; ${} probably refers to itself",
                        r.name
                    ),
                    "a definition must not name itself, directly or through others (keepalived would loop forever)",
                );
                return Subst::Failed;
            }
            found = true;
            let value = self.value_of(&r, pos + r.span < line.text.len(), col, ctx);
            let multiline = self.defs.get(&r.name).is_some_and(|d| d.multiline);
            let (first, rest) = match value.split_once('\n') {
                Some((f, rest)) if multiline => (f.to_string(), Some(rest.to_string())),
                _ => (value.clone(), None),
            };
            let new_len = line.text.len() - r.span + first.len();
            if new_len > max_len {
                self.report(
                    ctx,
                    Severity::Error,
                    col,
                    format!(
                        "substituting ${} makes the text longer than keepalived's {max_len}-character buffer",
                        r.name
                    ),
                    "keepalived stops substituting there and reads the line half-done; shorten the definitions or split the line",
                );
                return Subst::Failed;
            }
            line.replace(pos, pos + r.span, &first, col);
            if let Some(rest) = rest {
                if !lines_allowed {
                    self.report(
                        ctx,
                        Severity::Error,
                        col,
                        format!("~SEQ parameter is multi-line definition ${}", r.name),
                        "use a one-line definition in ~SEQ parameters",
                    );
                    return Subst::Failed;
                }
                let lines: Vec<Src> = rest
                    .split('\n')
                    .rev()
                    .map(|l| Src::uniform(l, col))
                    .collect();
                if !self.push_frame(Frame::Lines(lines), ctx, col) {
                    return Subst::Failed;
                }
            }
            // A value starting with `~` is a ~SEQ/~LST line: its own
            // references wait until it is read.
            if value.trim_start_matches([' ', '\t']).starts_with('~') {
                break;
            }
        }
        if found {
            Subst::Changed
        } else {
            Subst::Unchanged
        }
    }

    fn value_of(&mut self, r: &Ref, text_follows: bool, col: u32, ctx: &mut Ctx<'_>) -> String {
        let Some(builtin) = self.defs.get(&r.name).map(|d| d.builtin) else {
            return String::new();
        };
        match builtin {
            None => self
                .defs
                .get(&r.name)
                .map(|d| d.value.clone())
                .unwrap_or_default(),
            Some(Builtin::Pwd) => {
                let dir = if ctx.cwd.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    ctx.cwd
                };
                std::fs::canonicalize(dir)
                    .or_else(|_| std::env::current_dir().map(|c| c.join(dir)))
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| dir.display().to_string())
            }
            Some(Builtin::Instance) => match ctx.config_id {
                Some(id) => id.to_string(),
                None => {
                    self.report(
                        ctx,
                        Severity::Warning,
                        col,
                        "${_INSTANCE}: the config id is not known here; it expands to nothing",
                        "keepalived uses -i ID, or the node name up to its first '.'",
                    );
                    String::new()
                }
            },
            Some(Builtin::Random) => self.random(r.params.as_deref(), text_follows, col, ctx),
            Some(Builtin::Env) => {
                let name = r.params.as_deref().unwrap_or_default();
                match std::env::var(name) {
                    Ok(v) => v,
                    Err(_) => {
                        self.report(
                            ctx,
                            Severity::Warning,
                            col,
                            format!("${{_ENV {name}}}: {name} is not set (or not UTF-8); it expands to nothing"),
                            "set it in the daemon's environment (a systemd drop-in: Environment=NAME=VALUE)",
                        );
                        String::new()
                    }
                }
            }
        }
    }

    /// `${_RANDOM [MIN [MAX]]}`: MIN defaults to 0, MAX to 32767.
    fn random(
        &mut self,
        params: Option<&str>,
        text_follows: bool,
        col: u32,
        ctx: &mut Ctx<'_>,
    ) -> String {
        let nums: Vec<u64> = params
            .unwrap_or("")
            .split_ascii_whitespace()
            // strtoul saturates; the text is digits only (checked by find_ref).
            .map(|n| n.parse::<u64>().unwrap_or(u64::MAX))
            .collect();
        let min = nums.first().copied().unwrap_or(0);
        let max = nums.get(1).copied().unwrap_or(32767);
        if nums.len() > 2 {
            self.report(
                ctx,
                Severity::Warning,
                col,
                format!(
                    "too many parameters for ${{_RANDOM {}}}: only MIN and MAX are read",
                    params.unwrap_or("")
                ),
                "write ${_RANDOM MIN MAX}",
            );
        }
        if params.is_some() && text_follows {
            self.report(
                ctx,
                Severity::Warning,
                col,
                "keepalived 2.2.7 garbles the text that follows ${_RANDOM MIN MAX} on the same line (fixed in 2.4.0)",
                "put ${_RANDOM ...} last on its line, e.g. define $R=${_RANDOM MIN MAX} and use ${R}",
            );
        }
        if min > max {
            self.report(
                ctx,
                Severity::Error,
                col,
                format!("${{_RANDOM {min} {max}}}: MIN is greater than MAX"),
                "keepalived 2.2.7 produces garbage or crashes (division by zero) here; swap them",
            );
            return min.to_string();
        }
        // splitmix64: no need for keepalived's random() sequence, only a value in range.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let range = u128::from(max - min) + 1;
        let v = u128::from(min) + u128::from(z) % range;
        v.to_string()
    }

    /// Warns about a `$...` that keepalived leaves as written although it
    /// looks like a use of a definition that exists.
    fn explain_miss(&mut self, s: &str, col: u32, ctx: &mut Ctx<'_>) {
        let b = s.as_bytes();
        let braces = b.first() == Some(&b'{');
        let ns = usize::from(braces);
        if !b
            .get(ns)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
        {
            return;
        }
        let end = s[ns..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(s.len(), |e| e + ns);
        let name = &s[ns..end];
        let next = b.get(end).copied();
        let Some(def) = self.defs.get(name) else {
            return;
        };
        if braces && def.builtin == Some(Builtin::Env) {
            self.report(
                ctx,
                Severity::Warning,
                col,
                format!(
                    "${{{name} ...}} is not substituted: it takes one environment variable's name"
                ),
                "write ${_ENV NAME}",
            );
            return;
        }
        let separated = if braces {
            next == Some(b'}')
        } else {
            matches!(next, None | Some(b' ' | b'\t' | b',' | b')'))
        };
        let (msg, hint) = if separated {
            // Well formed, so the definition is multi-line and not last.
            if !def.multiline {
                return;
            }
            (
                format!(
                    "multi-line definition ${name} is not substituted: keepalived expands it only at the end of a line"
                ),
                format!("put ${name} last on its line, or make ${name} a one-line definition"),
            )
        } else if braces && matches!(next, Some(b' ' | b'\t')) {
            if def.max_params > 0 {
                (
                    format!(
                        "${{{name} ...}} is not substituted: keepalived reads only numbers as its parameters"
                    ),
                    format!("write ${{{name} MIN MAX}} with decimal numbers"),
                )
            } else {
                (
                    format!("${{{name} ...}} is not substituted: keepalived definitions take no parameters (only ${{_RANDOM MIN MAX}} does)"),
                    "keepalived has no parameterised definitions; set the varying part in its own definition before the use, or use ~SEQ/~LST".to_string(),
                )
            }
        } else if braces {
            return;
        } else if next == Some(b'(') {
            (
                format!(
                    "${name}(...) is not substituted: keepalived has no parameterised definitions"
                ),
                format!(
                    "set the varying part in its own definition before using ${name}, or use ~SEQ/~LST"
                ),
            )
        } else {
            (
                format!(
                    "${name} is not substituted: keepalived substitutes $NAME only before a blank, ',', ')' or the end of the line"
                ),
                format!("write ${{{name}}}"),
            )
        };
        self.report(ctx, Severity::Warning, col, msg, hint);
    }

    /// keepalived's `add_seq()`.
    fn add_seq(&mut self, line: &Src, ctx: &mut Ctx<'_>) {
        const USAGE: &str = "write ~SEQ(VAR, [START, [STEP,]] END) TEXT (or ~SEQx for hex values); keepalived skips this line";
        let b = line.text.as_bytes();
        let at = line.col(0);
        let shown = &line.text;
        let mut p = 4;
        let hex = b.get(p) == Some(&b'x');
        if hex {
            p += 1;
        }
        p = skip_blanks(b, p);
        if b.get(p) != Some(&b'(') {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("invalid ~SEQ specification '{shown}'"),
                USAGE,
            );
            return;
        }
        p = skip_blanks(b, p + 1);
        let var_start = p;
        while b
            .get(p)
            .is_some_and(|c| !matches!(c, b' ' | b'\t' | b',' | b')'))
        {
            p += 1;
        }
        let var = line.text[var_start..p].to_string();
        p = skip_blanks(b, p);
        if p >= b.len() || b[p] == b')' || var.is_empty() {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("invalid ~SEQ definition '{shown}'"),
                USAGE,
            );
            return;
        }
        // keepalived skips the character after the variable without checking
        // it is ',' (a whole character here, so that slicing stays on UTF-8
        // boundaries).
        let skipped = line.text[p..].chars().next().map_or(1, char::len_utf8);
        p = skip_blanks(b, p + skipped);
        let Some(close) = line.text[p..].find(')').map(|c| c + p) else {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("invalid ~SEQ definition '{shown}': no ')' closes its parameters"),
                "close the parameters with ')'; keepalived 2.2.7 reports this as '~SEQ parameter strings too long'",
            );
            return;
        };
        if close + 1 - p > MAX_SEQ_PARAMS_LEN {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("~SEQ parameter strings too long '{shown}'"),
                format!("keepalived reads at most {MAX_SEQ_PARAMS_LEN} characters from after the variable to ')'; shorten them"),
            );
            return;
        }
        let mut params = Src {
            text: line.text[p..=close].to_string(),
            cols: line.cols.get(p..=close).unwrap_or(&[]).to_vec(),
        };
        if let Subst::Failed = self.replace_params(&mut params, MAX_SEQ_PARAMS_LEN, ctx, false) {
            return;
        }
        let nb = params.text.as_bytes();
        let bad_number = |s: &mut Self, ctx: &mut Ctx<'_>| {
            s.report(
                ctx,
                Severity::Error,
                at,
                format!("invalid ~SEQ definition '{shown}'"),
                "START, STEP and END are integers (decimal, 0x hex or 0-prefixed octal) separated by ','; keepalived skips this line",
            );
        };
        let (one, q) = strtol(nb, 0);
        let q = skip_blanks(nb, q);
        let (start, step, end) = if nb.get(q) == Some(&b')') {
            let end = one;
            (
                if end < 0 { -1 } else { 1 },
                if end < 1 { -1 } else { 1 },
                end,
            )
        } else if nb.get(q) != Some(&b',') {
            return bad_number(self, ctx);
        } else {
            let (two, q) = strtol(nb, q + 1);
            let q = skip_blanks(nb, q);
            if nb.get(q) == Some(&b')') {
                (one, if one <= two { 1 } else { -1 }, two)
            } else if nb.get(q) != Some(&b',') {
                return bad_number(self, ctx);
            } else {
                let (three, q) = strtol(nb, q + 1);
                let q = skip_blanks(nb, q);
                if nb.get(q) != Some(&b')') {
                    return bad_number(self, ctx);
                }
                let (start, step, end) = (one, two, three);
                if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
                    self.report(
                        ctx,
                        Severity::Error,
                        at,
                        format!("invalid ~SEQ values '{shown}'"),
                        "STEP must not be 0 and must go from START towards END; keepalived skips this line",
                    );
                    return;
                }
                (start, step, end)
            }
        };
        if hex && (start < 0 || end < 0) {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("~SEQx is only valid for positive numbers '{shown}'"),
                "use ~SEQ for negative values",
            );
            return;
        }
        let count = (i128::from(end) - i128::from(start)) / i128::from(step) + 1;
        if count > MAX_SEQ_VALUES {
            self.report(
                ctx,
                Severity::Error,
                at,
                format!("~SEQ '{shown}' would generate {count} lines; xvrrpd allows at most {MAX_SEQ_VALUES} values per ~SEQ"),
                "check START, STEP and END, or split the range (keepalived would try to generate them all)",
            );
            return;
        }
        let text = line.tail(skip_blanks(b, close + 1));
        let frame = Frame::Seq {
            var,
            next: start,
            step,
            last: end,
            hex,
            text,
            done: false,
        };
        self.push_frame(frame, ctx, at);
    }

    /// keepalived's `add_lst()`.
    fn add_lst(&mut self, line: &Src, ctx: &mut Ctx<'_>) {
        let at = line.col(0);
        match parse_lst(&line.text) {
            Ok((vars, sets, text_at)) => {
                let frame = Frame::Lst {
                    vars,
                    sets,
                    at: 0,
                    text: line.tail(text_at),
                };
                self.push_frame(frame, ctx, at);
            }
            Err(LstError::TooMany(n)) => self.report(
                ctx,
                Severity::Error,
                at,
                format!("~LST specification has too many values '{}'", line.text),
                format!("a {{...}} value set holds at most one value per variable ({n} here); keepalived skips this line"),
            ),
            Err(LstError::Invalid) => self.report(
                ctx,
                Severity::Error,
                at,
                format!("invalid ~LST specification '{}'", line.text),
                "write ~LST(VAR, V1, V2, ...) TEXT or ~LST({VAR1, VAR2}, {V1, V2}, ...) TEXT; values cannot hold blanks, ',', '}' or ')'; keepalived skips this line",
            ),
        }
    }

    fn report(
        &mut self,
        ctx: &mut Ctx<'_>,
        severity: Severity,
        col: u32,
        msg: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let loc = Loc {
            file: ctx.file.clone(),
            line: ctx.line,
            column: col.max(1),
        };
        let msg = msg.into();
        if self.reported.insert((loc.clone(), msg.clone())) {
            ctx.diags.add(severity, Some(loc), msg).hint(hint);
        }
    }
}

/// `include` (or xvrrpd's `includet`) followed by a blank.
fn is_include(text: &str) -> bool {
    ["include", "includet"].iter().any(|k| {
        text.strip_prefix(k)
            .is_some_and(|r| r.starts_with([' ', '\t']))
    })
}

enum LstError {
    Invalid,
    /// More values in a set than variables (their number).
    TooMany(usize),
}

type LstParts = (Vec<String>, Vec<Vec<String>>, usize);

/// keepalived's `add_lst()` parse: the variables, the value sets (padded
/// with empty values) and where the text starts.
fn parse_lst(t: &str) -> Result<LstParts, LstError> {
    let b = t.as_bytes();
    let word = |p: usize, stops: &[u8]| -> usize {
        let mut q = p;
        while b.get(q).is_some_and(|c| !stops.contains(c)) {
            q += 1;
        }
        q
    };
    let mut p = skip_blanks(b, 4);
    if b.get(p) != Some(&b'(') {
        return Err(LstError::Invalid);
    }
    p = skip_blanks(b, p + 1);
    let mut end_char = b',';
    if b.get(p) == Some(&b'{') {
        end_char = b'}';
        p = skip_blanks(b, p + 1);
    }
    let mut vars = Vec::new();
    loop {
        let e = word(p, b" \t,}");
        vars.push(t[p..e].to_string());
        p = skip_blanks(b, e);
        if b.get(p) == Some(&end_char) {
            break;
        }
        if b.get(p) != Some(&b',') {
            return Err(LstError::Invalid);
        }
        p = skip_blanks(b, p + 1);
    }
    if b.get(p) == Some(&b'}') {
        p = skip_blanks(b, p + 1);
    }
    if b.get(p) != Some(&b',') {
        return Err(LstError::Invalid);
    }
    p = skip_blanks(b, p + 1);
    let mut sets = Vec::new();
    loop {
        let mut end_char = b',';
        if b.get(p) == Some(&b'{') {
            end_char = b'}';
            p = skip_blanks(b, p + 1);
        }
        let mut set = Vec::new();
        loop {
            let e = word(p, b" \t,})");
            set.push(t[p..e].to_string());
            p = skip_blanks(b, e);
            let c = b.get(p).copied();
            if c == Some(end_char) || (c == Some(b')') && end_char == b',') {
                break;
            }
            if c != Some(b',') {
                return Err(LstError::Invalid);
            }
            p = skip_blanks(b, p + 1);
            if set.len() >= vars.len() {
                return Err(LstError::TooMany(vars.len()));
            }
        }
        set.resize(vars.len(), String::new());
        sets.push(set);
        if b.get(p) == Some(&b'}') && end_char == b'}' {
            p = skip_blanks(b, p + 1);
        }
        if b.get(p) == Some(&b')') {
            break;
        }
        if b.get(p) != Some(&b',') {
            return Err(LstError::Invalid);
        }
        p = skip_blanks(b, p + 1);
    }
    Ok((vars, sets, skip_blanks(b, p + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the expander over `text` as the lexer does (physical lines,
    /// comments, empty lines), returning the logical lines (includes marked
    /// with a leading `INCLUDE `) and the diagnostics.
    fn run_with(text: &str, config_id: Option<&str>) -> (Vec<String>, Diags) {
        let mut ex = Expander::new();
        let mut diags = Diags::default();
        let file: Arc<str> = Arc::from("t.conf");
        let mut out = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            if raw.is_empty() {
                ex.empty_line();
                continue;
            }
            let Ok(src) = decomment(&Src::from_line(raw)) else {
                continue;
            };
            if src.text.is_empty() {
                continue;
            }
            ex.feed(src);
            let mut ctx = Ctx {
                file: &file,
                line: u32::try_from(n + 1).unwrap_or(0),
                config_id,
                cwd: Path::new("/"),
                diags: &mut diags,
            };
            while let Some(o) = ex.next(&mut ctx) {
                out.push(match o {
                    Out::Line(s) => s.text,
                    Out::Include(s) => format!("INCLUDE {}", s.text),
                });
            }
        }
        (out, diags)
    }

    fn run(text: &str) -> (Vec<String>, Diags) {
        run_with(text, None)
    }

    fn lines(text: &str) -> Vec<String> {
        let (l, d) = run(text);
        assert!(!d.has_errors(), "unexpected errors: {:?}", d.list);
        l
    }

    fn errors(d: &Diags) -> Vec<String> {
        d.list
            .iter()
            .filter(|x| x.severity == Severity::Error)
            .map(|x| x.message.clone())
            .collect()
    }

    fn warnings(d: &Diags) -> Vec<String> {
        d.list
            .iter()
            .filter(|x| x.severity == Severity::Warning)
            .map(|x| x.message.clone())
            .collect()
    }

    #[test]
    fn seq_forms_match_keepalived() {
        assert_eq!(lines("~SEQ(i, 3) a_$i"), ["a_1", "a_2", "a_3"]);
        assert_eq!(lines("~SEQ(i,) b_$i"), ["b_1", "b_0"]);
        assert_eq!(lines("~SEQ(i, 0) c_$i"), ["c_1", "c_0"]);
        assert_eq!(lines("~SEQ(i,-3) d_$i"), ["d_-1", "d_-2", "d_-3"]);
        assert_eq!(
            lines("~SEQ(n, -2, 2) n_$n"),
            ["n_-2", "n_-1", "n_0", "n_1", "n_2"]
        );
        assert_eq!(lines("~SEQ(i,1,5,3) s_$i"), ["s_1"]);
        assert_eq!(lines("~SEQ(i,3,-1,3) e_$i"), ["e_3"]);
        assert_eq!(lines("~SEQ (i , 2 ) m_$i"), ["m_1", "m_2"]);
        // strtol base 0: 0x hex and 0-prefixed octal.
        assert_eq!(lines("~SEQ(i,0x10,0x11) h_$i"), ["h_16", "h_17"]);
        assert_eq!(lines("~SEQ(i,010,011) o_$i"), ["o_8", "o_9"]);
        // keepalived does not check the separator after the variable.
        assert_eq!(lines("~SEQ(i x 2) x_$i"), ["x_1", "x_2"]);
    }

    #[test]
    fn seq_hex_and_negative_steps() {
        assert_eq!(
            lines("~SEQx(h, 0x9, 0x3, 0x10) c_${h}"),
            ["c_9", "c_c", "c_f"]
        );
        assert_eq!(
            lines("~SEQx(h,10,-3,1) hx_$h"),
            ["hx_a", "hx_7", "hx_4", "hx_1"]
        );
        assert_eq!(lines("~SEQ(j, 5, -2, 1) b_${j}"), ["b_5", "b_3", "b_1"]);
        assert_eq!(
            lines("~SEQx(h,0x7ffffffffffffffd,0x7fffffffffffffff) $h"),
            ["7ffffffffffffffd", "7ffffffffffffffe", "7fffffffffffffff"]
        );
    }

    #[test]
    fn nested_seq_and_lst_on_one_line() {
        assert_eq!(
            lines("~SEQ(i, 0, 2) ~SEQ(j, 5, -2, 3) b_${i}_${j}"),
            ["b_0_5", "b_0_3", "b_1_5", "b_1_3", "b_2_5", "b_2_3"]
        );
        // The inner range may use the outer variable.
        assert_eq!(
            lines("~SEQ(i,3) ~SEQ(j,$i) t_${i}_${j}"),
            ["t_1_1", "t_2_1", "t_2_2", "t_3_1", "t_3_2", "t_3_3"]
        );
        assert_eq!(
            lines("~LST({IP, IP1}, {10,1},{20,4}) ~SEQ(IP2,168,2,170) 192.${IP2}.${IP}.${IP1}"),
            [
                "192.168.10.1",
                "192.170.10.1",
                "192.168.20.4",
                "192.170.20.4"
            ]
        );
        // Each ~SEQ counts on its own, even with the same variable.
        assert_eq!(
            lines("~SEQ(k,2) ~SEQ(k,2) s_$k"),
            ["s_1", "s_2", "s_1", "s_2"]
        );
    }

    #[test]
    fn seq_variable_stays_defined_after_the_block() {
        assert_eq!(
            lines("~SEQ(i, 0, 2) x\nafter_$i"),
            ["x", "x", "x", "after_2"]
        );
    }

    #[test]
    fn lst_forms_match_keepalived() {
        assert_eq!(lines("~LST(v, x, y, z) d_${v}"), ["d_x", "d_y", "d_z"]);
        assert_eq!(
            lines("~LST({A,B}, {1,2}, {3}, 4) e_${A}_${B}_"),
            ["e_1_2_", "e_3__", "e_4__"]
        );
        assert_eq!(lines("~LST(v, , y) f_${v}_"), ["f__", "f_y_"]);
        assert_eq!(lines("~LST ( v , 1 , 2 ) l_$v"), ["l_1", "l_2"]);
        assert_eq!(
            lines("~LST(IP, 1, 2) ~LST(IP1, 5,6) 192.169.${IP}.${IP1}"),
            ["192.169.1.5", "192.169.1.6", "192.169.2.5", "192.169.2.6"]
        );
    }

    #[test]
    fn seq_errors_match_keepalived() {
        let cases = [
            ("~SEQ(i) a", "invalid ~SEQ definition"),
            ("~SEQ(,3) h", "invalid ~SEQ definition"),
            ("~SEQ(i,abc) l", "invalid ~SEQ definition"),
            ("~SEQ(i, 0x, 2) z", "invalid ~SEQ definition"),
            ("~SEQ(i,1,0,5) e", "invalid ~SEQ values"),
            ("~SEQ(i,5,1,1) f", "invalid ~SEQ values"),
            ("~SEQ(i,1,-1,5) g", "invalid ~SEQ values"),
            ("~SEQ(i,3 i", "no ')' closes its parameters"),
            ("~SEQUENCE(i,3) j", "invalid ~SEQ specification"),
            (
                "~SEQx(i,-1,3) k",
                "~SEQx is only valid for positive numbers",
            ),
        ];
        let long = format!("~SEQ(i, 1, {}3) x", " ".repeat(60));
        let cases = cases
            .into_iter()
            .chain([(long.as_str(), "~SEQ parameter strings too long")]);
        for (text, want) in cases {
            let (l, d) = run(text);
            let e = errors(&d);
            assert!(l.is_empty(), "{text}: {l:?}");
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert!(e[0].contains(want), "{text}: {e:?}");
            assert!(d.list[0].hint.is_some());
        }
    }

    #[test]
    fn lst_errors_match_keepalived() {
        for (text, want) in [
            ("~LST(v) a", "invalid ~LST specification"),
            ("~LST(v, x y) b", "invalid ~LST specification"),
            ("~LST({A,B}, {1,2,3}) c", "too many values"),
            ("~LST({A,B}, {1,2) d", "invalid ~LST specification"),
            ("~LST(v, a, b e", "invalid ~LST specification"),
            ("~LST(v,{1,2}) g", "too many values"),
            ("~LST({A B}, 1) h", "invalid ~LST specification"),
            ("~LSTX(v, 1) j", "invalid ~LST specification"),
            ("~LST({A,B},{1,2}{3,4}) k", "invalid ~LST specification"),
        ] {
            let (l, d) = run(text);
            let e = errors(&d);
            assert!(l.is_empty(), "{text}: {l:?}");
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert!(e[0].contains(want), "{text}: {e:?}");
        }
    }

    #[test]
    fn huge_seq_is_refused_quickly() {
        let (l, d) = run("~SEQ(i, 1, 1000000000) x$i");
        assert!(l.is_empty());
        let e = errors(&d);
        assert!(
            e[0].contains("1000000000 lines") && e[0].contains("65536"),
            "{e:?}"
        );
        // keepalived loops forever on these (LONG_MAX, and overflow past it).
        let (_, d) = run("~SEQ(i, 99999999999999999999) x");
        assert!(d.has_errors());
        let (l, d) = run("~SEQ(i,9223372036854775806,9223372036854775807) $i");
        assert!(!d.has_errors());
        assert_eq!(l, ["9223372036854775806", "9223372036854775807"]);
    }

    #[test]
    fn runaway_expansions_are_capped() {
        // 300 x 300 x 3 lines: more than the generated-lines cap.
        let (l, d) = run("~SEQ(a,300) ~SEQ(b,300) ~SEQ(c,3) x");
        assert!(l.len() < MAX_GENERATED_LINES);
        assert!(errors(&d)[0].contains(&MAX_GENERATED_LINES.to_string()));
        // A multi-line definition that names itself last repeats forever in keepalived.
        let (_, d) = run("$M=a \\\n$M\n\n$M");
        assert!(errors(&d)[0].contains("more than"));
        // Self reference in one line: keepalived hangs.
        let (_, d) = run("$A=$A\nx $A");
        assert!(errors(&d)[0].contains("refers to itself"), "{:?}", d.list);
        // Growing self reference: keepalived stops at its line buffer.
        let (_, d) = run("$A=xxxxxxxxxx$A\ny_$A");
        assert!(errors(&d)[0].contains("1023"), "{:?}", d.list);
        // A multi-line definition expanding itself first nests without end.
        let (_, d) = run("$M=$M \\\nx\n\n$M");
        assert!(d.has_errors());
    }

    #[test]
    fn references_need_a_separator_or_braces() {
        let (l, d) = run("$V=vv\na_$V/24\nb_${V}/24\nc_$V,x\nd_$V)\n$V(1,2)");
        assert_eq!(l, ["a_$V/24", "b_vv/24", "c_vv,x", "d_vv)", "$V(1,2)"]);
        let w = warnings(&d);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("$V is not substituted"));
        assert!(w[1].contains("no parameterised definitions"));
    }

    #[test]
    fn definitions_are_read_at_use_time_and_recursively() {
        assert_eq!(
            lines(
                "$ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}\n$ADDRESS_BASE_SUB=0\n${ADDRESS_BASE}.100/32\n$ADDRESS_BASE_SUB=10\n${ADDRESS_BASE}.100/32"
            ),
            ["10.2.0.100/32", "10.2.10.100/32"]
        );
        assert_eq!(lines("$E=\nr_${E}_\n${E} lead"), ["r__", "lead"]);
        // Not definitions: a blank before '=', a name starting with a digit.
        assert_eq!(lines("$W = sp\n$1X=z"), ["$W = sp", "$1X=z"]);
    }

    #[test]
    fn conditional_lines_and_definitions_combine() {
        let text = "@main $PRIORITY=240\n@backup $PRIORITY=200\npriority $PRIORITY\n$IF_MAIN=@main\n$IF_MAIN x 1";
        assert_eq!(run_with(text, Some("main")).0, ["priority 240", "x 1"]);
        assert_eq!(run_with(text, Some("backup")).0, ["priority 200"]);
        assert_eq!(lines("@^zz a\n@zz b\n@x"), ["a"]);
    }

    #[test]
    fn multiline_definitions_become_lines() {
        let text = "$M=a1 \\\n# comment only\n   a2_$K \\\n\na3\n$K=k\n$M\nx_$M y\npre_$M";
        let (l, d) = run(text);
        assert_eq!(l, ["a3", "a1", "a2_k", "x_$M y", "pre_a1", "a2_k"]);
        assert!(warnings(&d)[0].contains("only at the end of a line"));
        // Blank continuation lines are not kept; an empty first value is fine.
        assert_eq!(lines("$P=p1 \\\n  p2 \\\n\\\n  p3\n$P"), ["p1", "p2", "p3"]);
        assert_eq!(lines("$Q=\\\n\nq_$Q."), ["q_$Q."]);
        assert_eq!(lines("$Q=\\\n\nq_${Q}."), ["q_."]);
    }

    #[test]
    fn multiline_definition_lines_are_read_like_file_lines() {
        let text = "$M=a1\n$N=\\\n  n1 { n2 \\\n  @vm n3_at \\\n  @other n4_no \\\n  ~SEQ(q,2) n5_$q \\\n  $M \\\n  n6\n$N";
        assert_eq!(
            run_with(text, Some("vm")).0,
            ["n1", "{", "n2", "n3_at", "n5_1", "n5_2", "a1", "n6"]
        );
    }

    #[test]
    fn seq_over_a_multiline_definition_makes_blocks() {
        let text = "$I=\\\ninst VI_${n} { \\\n  vrid ${n} \\\n}\n~SEQ(n, 1, 2) $I";
        assert_eq!(
            lines(text),
            [
                "inst VI_1",
                "{",
                "vrid 1",
                "}",
                "inst VI_2",
                "{",
                "vrid 2",
                "}"
            ]
        );
    }

    #[test]
    fn a_definition_holding_a_seq_runs_it() {
        assert_eq!(
            lines("$X=~SEQ(i,2) r_$i\n$X\npre_$X"),
            ["r_1", "r_2", "pre_~SEQ(i,2) r_2"]
        );
        assert_eq!(lines("$N=3\n~SEQ(j, $N) s_$j"), ["s_1", "s_2", "s_3"]);
    }

    #[test]
    fn text_after_a_brace_is_a_new_line() {
        assert_eq!(
            run_with("x_1 { $A=1\n}\nb_$A\nx_2 { @vm c_at\n}", Some("vm")).0,
            ["x_1", "{", "}", "b_1", "x_2", "{", "c_at", "}"]
        );
        assert_eq!(
            lines("a \"{ q }\" { b } c"),
            ["a \"{ q }\"", "{", "b", "}", "c"]
        );
    }

    #[test]
    fn builtins() {
        let (l, d) = run_with(
            "i_${_INSTANCE}\nn_$_INSTANCE\nf_${_RANDOM 3 3}\nk${_HASH}x\nl${_BANG}x\nq \"${_HASH} ${_BANG}\"\np_${_PWD}",
            Some("vm"),
        );
        assert!(d.list.is_empty(), "{:?}", d.list);
        assert_eq!(l, ["i_vm", "n_vm", "f_3", "k", "l", "q \"# !\"", "p_/"]);
        // Overriding a built-in is allowed.
        assert_eq!(lines("$_HASH=H\nq_${_HASH}"), ["q_H"]);
    }

    #[test]
    fn random_stays_in_range() {
        for _ in 0..50 {
            let (l, _) = run("${_RANDOM 5 7}");
            let v: u32 = l[0].parse().expect("a number");
            assert!((5..=7).contains(&v));
            let (l, _) = run("${_RANDOM}");
            let v: u32 = l[0].parse().expect("a number");
            assert!(v <= 32767);
            let (l, _) = run("${_RANDOM 32760}");
            let v: u32 = l[0].parse().expect("a number");
            assert!((32760..=32767).contains(&v));
        }
        let (_, d) = run("${_RANDOM 6 5}");
        assert!(errors(&d)[0].contains("MIN is greater than MAX"));
        let (_, d) = run("${_RANDOM 1 2 3}");
        assert!(warnings(&d)[0].contains("too many parameters"));
        // keepalived 2.2.7 mangles what follows ${_RANDOM MIN MAX}.
        let (l, d) = run("x_${_RANDOM 5 5}_y");
        assert_eq!(l, ["x_5_y"]);
        assert!(warnings(&d)[0].contains("2.2.7 garbles"));
    }

    #[test]
    fn env_is_the_environment_and_parameterised_uses_stay_as_written() {
        // PATH is set wherever tests run.
        let path = std::env::var("PATH").expect("PATH is set");
        let (l, d) = run("m_${_ENV PATH}_n");
        assert_eq!(l, [format!("m_{path}_n")]);
        assert!(d.list.is_empty(), "{d:?}");
        let (l, d) = run("m_${_ENV XVRRPD_SURELY_UNSET_VARIABLE}");
        assert_eq!(l, ["m_"]);
        assert!(warnings(&d)[0].contains("is not set"));
        // One name, no more, no less, as keepalived checks it.
        let (l, d) = run("m_${_ENV A B}");
        assert_eq!(l, ["m_$", "{", "_ENV A B", "}"]);
        assert!(warnings(&d)[0].contains("one environment variable"));
        let (_, d) = run("m_${_ENV}");
        assert!(warnings(&d)[0].contains("one environment variable"));
        let (l, d) = run("$V=v\ne_${V 1}");
        assert_eq!(l, ["e_$", "{", "V 1", "}"]);
        assert!(warnings(&d)[0].contains("take no parameters"));
    }

    #[test]
    fn keepalived_quirks_kept() {
        // `${NAME }` replaces `${NAME ` and leaves the brace, as keepalived
        // does (the stray '}' is then reported by the block reader).
        assert_eq!(lines("$V=vv\na_${V }b"), ["a_vv", "}", "b"]);
        // A substituted line is decommented again: an escaped '#' now starts a comment.
        assert_eq!(lines("$V=vv\ne_ab\\#cd_$V\nf_ab\\#cd"), ["e_ab", "f_ab#cd"]);
        // A trailing backslash sticks to the last word.
        assert_eq!(lines("h_tail   \\"), ["h_tail\\"]);
        // Other `~` lines go through unsubstituted.
        assert_eq!(lines("$V=v\n~FOO $V"), ["~FOO $V"]);
    }

    #[test]
    fn includes_come_out_whole() {
        assert_eq!(
            lines("~LST(p, a.conf, b.conf) include $p\ninclude x{1,2}.conf"),
            [
                "INCLUDE include a.conf",
                "INCLUDE include b.conf",
                "INCLUDE include x{1,2}.conf"
            ]
        );
    }

    #[test]
    fn columns_point_into_the_source_line() {
        let mut ex = Expander::new();
        let mut diags = Diags::default();
        let file: Arc<str> = Arc::from("t.conf");
        let mut ctx = Ctx {
            file: &file,
            line: 1,
            config_id: None,
            cwd: Path::new("/"),
            diags: &mut diags,
        };
        ex.feed(decomment(&Src::from_line("$V=10.0.0.1")).expect("decomment"));
        assert_eq!(ex.next(&mut ctx), None);
        ex.feed(decomment(&Src::from_line("  ~SEQ(i, 2) addr $V x$i")).expect("decomment"));
        let Some(Out::Line(l)) = ex.next(&mut ctx) else {
            panic!("no line");
        };
        assert_eq!(l.text, "addr 10.0.0.1 x1");
        // "addr" where it is written, the value at its '$', "x1" at 'x'.
        assert_eq!(
            (l.col(0), l.col(5), l.col(12), l.col(14), l.col(15)),
            (14, 19, 19, 22, 23)
        );
    }

    #[test]
    fn decomment_like_keepalived() {
        let d = |s: &str| decomment(&Src::from_line(s)).map(|x| x.text);
        assert_eq!(d("  a # b").as_deref(), Ok("a"));
        assert_eq!(d("a \"# b\" ! c").as_deref(), Ok("a \"# b\""));
        assert_eq!(d("a\\#b").as_deref(), Ok("a#b"));
        assert_eq!(d("a\\\\#b").as_deref(), Ok("a\\\\"));
        assert_eq!(d("x  # comment \\").as_deref(), Ok("x\\"));
        assert!(d("a \"b").is_err());
    }

    /// Pieces of the config language, glued at random: reading must never
    /// panic, and must end (every expansion is bounded).
    const PIECES: &[&str] = &[
        "~SEQ(",
        "~SEQx(",
        "~LST(",
        "~LST({",
        "$A",
        "$B",
        "${A}",
        "${_RANDOM 1 3}",
        "${_RANDOM 9 2}",
        "${_PWD}",
        "${_INSTANCE}",
        "${_HASH}",
        "${_BANG}",
        "${_ENV X}",
        "$A=",
        "$B=",
        "$A=$B",
        "$B=$A",
        "$M=",
        "$M",
        " \\\n",
        "\n",
        "\n\n",
        "@x ",
        "@^x ",
        "{",
        "}",
        "(",
        ")",
        ",",
        " ",
        "\"",
        "#",
        "!",
        "\\",
        "1",
        "-2",
        "0x1f",
        "a",
        "é",
        "x=",
        "include ",
        "~",
        "'",
        "\t",
    ];

    proptest::proptest! {
        #[test]
        fn random_text_never_panics(s in "[~SEQLSTx$(){},\\\\\"#! é0-9a-z_=@^\n\t-]{0,120}") {
            let _ = run(&s);
        }

        #[test]
        fn glued_pieces_never_panic(v in proptest::collection::vec(proptest::sample::select(PIECES), 0..40)) {
            let _ = run_with(&v.concat(), Some("x"));
        }
    }

    #[test]
    fn strtol_like_c() {
        assert_eq!(strtol(b" 12,", 0), (12, 3));
        assert_eq!(strtol(b"-0x1f)", 0), (-31, 5));
        assert_eq!(strtol(b"0x)", 0), (0, 1));
        assert_eq!(strtol(b"08", 0), (0, 1));
        assert_eq!(strtol(b"abc", 0), (0, 0));
        assert_eq!(strtol(b"99999999999999999999", 0).0, i64::MAX);
        assert_eq!(strtol(b"-99999999999999999999", 0).0, i64::MIN);
    }
}
