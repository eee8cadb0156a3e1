//! Compiling CEL expressions into programs, with errors that say where.
//!
//! cel-parser 0.10 (the parser of cel-interpreter, the CEL crate this
//! project uses) panics on some malformed input, e.g. `((((`,
//! `amount > ` or `'unterminated`: its ANTLR grammar recovers from the
//! syntax error and its tree walk then hits `unreachable!()`. Its
//! successor crate `cel` keeps the same tree walk. So the common kinds of
//! broken expression (unbalanced brackets, unterminated strings, a
//! dangling operator, nothing at all) are found here first, with their
//! position, and the parser's panic is caught, without its panic message,
//! for anything else.

use cel_interpreter::Program;

use super::guard::quietly;

/// Compiles `source`.
///
/// # Errors
/// `expression "..." does not parse: ...`, with the line and column of
/// the problem where it can be known.
pub(crate) fn compile(source: &str) -> Result<Program, String> {
    let fail = |why: String| format!("expression {source:?} does not parse: {why}");
    if let Some(why) = find_syntax_error(source) {
        return Err(fail(why));
    }
    match quietly(|| Program::compile(source)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(errors)) => Err(fail(match errors.errors.first() {
            Some(e) => format!("at line {}, column {}: {}", e.pos.0, e.pos.1, e.msg),
            None => errors.to_string(),
        })),
        Err(_) => Err(fail(
            "the CEL parser cannot read it (check brackets, quotes and operators)".into(),
        )),
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy)]
struct At {
    line: usize,
    column: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The first broken bracket, string or operator of `source`, if any.
fn find_syntax_error(source: &str) -> Option<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut open: Vec<(char, At)> = Vec::new();
    let mut at = At { line: 1, column: 0 };
    // The last character outside strings and comments that is not
    // whitespace, and where it was.
    let mut last: Option<(char, At)> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        at.column += 1;
        if c == '\n' {
            at = At {
                line: at.line + 1,
                column: 0,
            };
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            at.column = 0;
            continue;
        }
        if c == '\'' || c == '"' {
            // A raw string: prefix `r`, also in raw bytes (`br'…'`, CEL's
            // grammar: BYTES is `b` then a string).
            let raw = i > 0 && matches!(chars[i - 1], 'r' | 'R');
            let start = at;
            match string_end(&chars, i, raw) {
                Some(end) => {
                    for &ch in &chars[i + 1..end] {
                        if ch == '\n' {
                            at = At {
                                line: at.line + 1,
                                column: 0,
                            };
                        } else {
                            at.column += 1;
                        }
                    }
                    at.column += 1;
                    last = Some((c, start));
                    i = end + 1;
                    continue;
                }
                None => return Some(format!("the string starting at {start} is not closed")),
            }
        }
        match c {
            '(' | '[' | '{' => open.push((c, at)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((o, _)) if o == want => {}
                    Some((o, from)) => {
                        return Some(format!("{c:?} at {at} does not close {o:?} at {from}"));
                    }
                    None => return Some(format!("{c:?} at {at} closes nothing")),
                }
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last = Some((c, at));
        }
        i += 1;
    }
    if let Some((o, from)) = open.pop() {
        return Some(format!("{o:?} at {from} is not closed"));
    }
    match last {
        None => Some("it is empty".into()),
        Some((c, at)) if "+-*/%<>=!&|,.?:".contains(c) => Some(format!(
            "it ends with {c:?} at {at}, where an operand should follow"
        )),
        Some(_) => None,
    }
}

/// The index of the quote that closes the string opened at `chars[i]`
/// (a quote, tripled for a multi-line string), or `None`.
fn string_end(chars: &[char], i: usize, raw: bool) -> Option<usize> {
    let q = chars[i];
    let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' && !raw {
            j += 2;
            continue;
        }
        if !triple && c == '\n' {
            return None;
        }
        if c == q && (!triple || (chars.get(j + 1) == Some(&q) && chars.get(j + 2) == Some(&q))) {
            return Some(if triple { j + 2 } else { j });
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::compile;

    fn error(source: &str) -> String {
        match compile(source) {
            Ok(_) => panic!("{source:?} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn inputs_the_parser_panics_on_give_a_position() {
        assert_eq!(
            error("(((("),
            "expression \"((((\" does not parse: '(' at line 1, column 4 is not closed"
        );
        assert_eq!(
            error("amount_eur > "),
            "expression \"amount_eur > \" does not parse: it ends with '>' at line 1, \
             column 12, where an operand should follow"
        );
        assert_eq!(
            error("'unterminated"),
            "expression \"'unterminated\" does not parse: the string starting at line 1, \
             column 1 is not closed"
        );
        assert_eq!(
            error("a == 1)"),
            "expression \"a == 1)\" does not parse: ')' at line 1, column 7 closes nothing"
        );
        assert_eq!(
            error("[a)"),
            "expression \"[a)\" does not parse: ')' at line 1, column 3 does not close '[' \
             at line 1, column 1"
        );
        assert!(error("  ").ends_with("it is empty"));
    }

    #[test]
    fn parser_errors_keep_their_position() {
        let e = error("amount >> 1");
        assert!(e.contains("at line 1, column "), "{e}");
    }

    #[test]
    fn strings_comments_and_brackets_inside_them_are_not_syntax_errors() {
        for ok in [
            "currency == 'E(R'",
            "currency == \"it's\"",
            "currency == '''multi\nline ('''",
            "currency.matches(r'^\\d+$')",
            "b'a' != br'a' && currency != R'\\'",
            "amount > 1 // a comment with ( and '\n&& amount < 10",
            "[1, 2, 3].exists(x, x > 2)",
            "{'a': 1}['a'] == 1",
        ] {
            assert!(compile(ok).is_ok(), "{ok:?}: {:?}", compile(ok).err());
        }
    }
}
