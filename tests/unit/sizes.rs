//! The size rule of issue 31: no function in `src/` longer than 80 lines and no `.rs` file there
//! longer than 500, so each reads in one sitting. A function (free, in an `impl` or a trait, a test,
//! nested in another) is measured from the line of its `fn` to the line of its closing brace; a
//! closure with a block body (`|x| { .. }`, `move || { .. }`, in a function or a `static`'s
//! initializer) from its first `|` to its closing brace. Braces are matched after comments, string,
//! byte-string, raw-string and character literals are blanked out, so a brace in them does not
//! count. A failure names each `FILE:LINE`, the item and its length. The control: a synthetic
//! over-long function, closure and file are caught, ones at the limit are not, and braces in
//! literals and comments do not throw the count off.

use std::path::Path;

const MAX_FN_LINES: usize = 80;
const MAX_FILE_LINES: usize = 500;

fn ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The end (index after the closing quote and hashes) of a raw string (`r"…"`, `r#"…"#`, `br"…"`)
/// starting at `i`, if a terminated one starts there (the layering test's scanner).
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    crate::layers::scan::raw_string(c, i).map(|(_, end)| end)
}

/// The end of the comment, string or character literal starting at `i`, if one starts there (a
/// lifetime is not one).
fn literal_end(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut i = i;
    match c[i] {
        '/' if at(i + 1) == '/' => {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        }
        '/' if at(i + 1) == '*' => {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        }
        'b' | 'r' => return raw_string_end(c, i),
        '"' => {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        }
        // A character literal ('x', '\n', '\'', '\u{7f}'); `'a` alone is a lifetime.
        '\'' if at(i + 1) == '\\' => {
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
        }
        '\'' if at(i + 2) == '\'' => i += 3,
        _ => return None,
    }
    Some(i.min(c.len()))
}

/// `text` with comments and string and character literals replaced by spaces (line breaks kept,
/// so every brace stays on its line).
fn code_only(text: &str) -> Vec<char> {
    let c: Vec<char> = text.chars().collect();
    let mut out = c.clone();
    let mut i = 0;
    while i < c.len() {
        match literal_end(&c, i) {
            Some(end) => {
                for ch in &mut out[i..end] {
                    if *ch != '\n' {
                        *ch = ' ';
                    }
                }
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

/// The index of the brace closing the one at `open` (the end of the text if it is never closed).
fn closing(code: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &ch) in code.iter().enumerate().skip(open) {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

/// The name and body's opening brace of the `fn` item whose keyword starts at `i`, if it is one
/// with a body (not `fn(u8)` in a type, not a trait's bodiless declaration).
fn fn_at(code: &[char], i: usize) -> Option<(String, usize)> {
    let is_kw = code[i..].starts_with(&['f', 'n'])
        && (i == 0 || !ident(code[i - 1]))
        && !code.get(i + 2).copied().is_some_and(ident);
    if !is_kw {
        return None;
    }
    let mut k = i + 2;
    while code.get(k).is_some_and(|c| c.is_whitespace()) {
        k += 1;
    }
    let start = k;
    while code.get(k).copied().is_some_and(ident) {
        k += 1;
    }
    if k == start {
        return None;
    }
    let name: String = code[start..k].iter().collect();
    // The body is the first `{` outside the signature's parentheses and brackets.
    let mut depth = 0i32;
    for (j, &ch) in code.iter().enumerate().skip(k) {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '{' if depth == 0 => return Some((name, j)),
            ';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// Where the closure whose block body opens at `open` starts (its first `|`), if a closure's
/// parameter list ends right before that brace.
fn closure_at(code: &[char], open: usize) -> Option<usize> {
    if code[open] != '{' {
        return None;
    }
    let bar = code[..open].iter().rposition(|c| !c.is_whitespace())?;
    if code[bar] != '|' {
        return None;
    }
    if bar > 0 && code[bar - 1] == '|' {
        return Some(bar - 1);
    }
    code[..bar].iter().rposition(|&c| c == '|')
}

/// Every function and block-bodied closure of `text`: the line it starts on (from 1), what it is
/// (`fn NAME` or `closure`) and its length in lines, in the order they start.
fn measure(text: &str) -> Vec<(usize, String, usize)> {
    let code = code_only(text);
    let mut line_of = Vec::with_capacity(code.len());
    let mut line = 1;
    for &ch in &code {
        line_of.push(line);
        if ch == '\n' {
            line += 1;
        }
    }
    let mut out = Vec::new();
    for i in 0..code.len() {
        let (what, start, open) = if let Some((name, open)) = fn_at(&code, i) {
            (format!("fn {name}"), i, open)
        } else if let Some(start) = closure_at(&code, i) {
            ("closure".to_string(), start, i)
        } else {
            continue;
        };
        let end = closing(&code, open);
        out.push((line_of[start], what, line_of[end] - line_of[start] + 1));
    }
    out.sort();
    out
}

/// `FILE:LINE: …` for the file `shown` (its text `text`) if it is too long, and for each of its
/// functions and closures that is.
fn too_long(shown: &str, text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let lines = text.lines().count();
    if lines > MAX_FILE_LINES {
        bad.push(format!(
            "{shown}:1: the file is {lines} lines (at most {MAX_FILE_LINES})"
        ));
    }
    for (line, what, len) in measure(text) {
        if len > MAX_FN_LINES {
            bad.push(format!(
                "{shown}:{line}: {what} is {len} lines (at most {MAX_FN_LINES})"
            ));
        }
    }
    bad
}

/// Every .rs file under `dir`, as (path from the repository's root, text), sorted.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for p in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()) {
        if p.is_dir() {
            rust_files(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let shown = p.strip_prefix(root).unwrap().display().to_string();
            out.push((shown, std::fs::read_to_string(&p).unwrap()));
        }
    }
    out.sort();
}

#[test]
fn no_fn_over_80_lines_and_no_file_over_500_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &root.join("src"), &mut files);
    let items: usize = files.iter().map(|(_, t)| measure(t).len()).sum();
    assert!(
        files.len() > 50 && items > 500,
        "only {} files and {items} functions and closures found under src/",
        files.len()
    );
    let bad: Vec<String> = files.iter().flat_map(|(f, t)| too_long(f, t)).collect();
    assert!(
        bad.is_empty(),
        "too long (split it into well-named parts):\n{}",
        bad.join("\n")
    );
}

/// A function named `name` of `len` lines (from `fn` to its closing brace, inclusive).
fn synthetic_fn(name: &str, len: usize) -> String {
    let mut s = format!("fn {name}() {{\n");
    for n in 0..len - 2 {
        s.push_str(&format!("    let _x{n} = {n};\n"));
    }
    s.push_str("}\n");
    s
}

/// Control: an 81-line function, a function over 80 lines inside an `impl`, an 81-line closure in
/// a `static` and a 501-line file are caught and named with their lines; an 80-line function and
/// a 500-line file are not; braces in strings, raw strings, characters and comments, a lifetime,
/// a `fn(..)` type and a bodiless trait method do not throw the measure off.
#[test]
fn the_size_check_catches_a_long_fn_a_long_closure_and_a_long_file() {
    let tricky = "fn tricky<'a>(f: fn(u8) -> u8, s: &'a str) -> [u8; 2] {\n\
                  let _ = \"}}}\"; let _ = '}'; let _ = '\\''; let _ = b'{';\n\
                  let _ = r#\"}\"}\"#; // }}\n\
                  /* } /* } */ } */ let _ = \"\\\"}\";\n\
                  [0; 2]\n\
                  }\n\
                  trait T { fn bodiless(&self); }\n";
    let mut text = tricky.to_string();
    text.push_str(&synthetic_fn("at_the_limit", 80));
    text.push_str(&synthetic_fn("one_over", 81));
    text.push_str("impl S {\n    ");
    text.push_str(&synthetic_fn("in_impl", 90));
    text.push_str("}\nstatic TABLE: LazyLock<u8> = LazyLock::new(|| {\n");
    text.push_str(&"    0;\n".repeat(79));
    text.push_str("});\n");
    let lines = text.lines().count();
    assert!(lines < MAX_FILE_LINES, "{lines}");
    let m = measure(&text);
    assert_eq!(m[0], (1, "fn tricky".to_string(), 6));
    assert!(!m.iter().any(|(_, w, _)| w == "fn bodiless"), "{m:?}");
    assert_eq!(
        too_long("src/x.rs", &text),
        [
            "src/x.rs:88: fn one_over is 81 lines (at most 80)",
            "src/x.rs:170: fn in_impl is 90 lines (at most 80)",
            "src/x.rs:261: closure is 81 lines (at most 80)",
        ]
    );
    // The file: 500 lines pass, 501 do not.
    let mut long = synthetic_fn("a", 50).repeat(10);
    assert_eq!(long.lines().count(), 500);
    assert!(too_long("src/y.rs", &long).is_empty());
    long.push_str("// one more\n");
    assert_eq!(
        too_long("src/y.rs", &long),
        ["src/y.rs:1: the file is 501 lines (at most 500)"]
    );
}
