//! How deep keys nest, counted before `toml` parses the text: `toml` gives up on keys nested a
//! hundred deep with an error that names no place.

/// The deepest a key may nest, counting table headers, dotted keys, inline tables and arrays
/// together. No policy key is deeper than 6 (`[[context.NAME.secrets.bind]]` and its keys);
/// `toml` itself gives up somewhere below a hundred, with an error that names no place.
pub const MAX_KEY_DEPTH: usize = 32;

/// The line and column of the first key (or array) nested deeper than [`MAX_KEY_DEPTH`], if any.
/// A small scanner of TOML's structure (strings, comments, headers, dotted keys, inline tables,
/// arrays) that never recurses deeper than that: on anything it does not understand it stops and
/// leaves the error to `toml`.
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    match scan_whole(text) {
        Err(Some(at)) => Some(at),
        _ => None,
    }
}

/// The scanner run over the whole of `text`: `Ok` if it understood it to its end.
pub(super) fn scan_whole(text: &str) -> std::result::Result<(), Stop> {
    Scan {
        b: text.as_bytes(),
        i: 0,
        line: 1,
        line_start: 0,
    }
    .document()
}

/// Why [`Scan`] stopped early: `Some((line, col))` nested too deep there, `None` not understood.
type Stop = Option<(usize, usize)>;

/// Where [`too_deep`] is in the text.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    line_start: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at(&self) -> (usize, usize) {
        (self.line, self.i - self.line_start + 1)
    }

    fn newline(&mut self) {
        self.i += 1;
        self.line += 1;
        self.line_start = self.i;
    }

    fn check(depth: usize, at: (usize, usize)) -> std::result::Result<(), Stop> {
        match depth > MAX_KEY_DEPTH {
            true => Err(Some(at)),
            false => Ok(()),
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), Stop> {
        if self.peek() != Some(c) {
            return Err(None);
        }
        self.i += 1;
        Ok(())
    }

    fn blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Blanks, newlines and comments (between lines, inside arrays and inline tables).
    fn space(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.i += 1,
                Some(b'\n') => self.newline(),
                Some(b'#') => self.comment(),
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.i += 1;
        }
    }

    /// The end of a line: blanks, a comment, then a newline or the end of the text.
    fn end_of_line(&mut self) -> std::result::Result<(), Stop> {
        self.blanks();
        match self.peek() {
            Some(b'#') => self.comment(),
            Some(b'\r') => self.i += 1,
            _ => {}
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n') => {
                self.newline();
                Ok(())
            }
            _ => Err(None),
        }
    }

    /// A basic or literal string, one-line or multi-line.
    fn string(&mut self) -> std::result::Result<(), Stop> {
        let q = self.peek().ok_or(None)?;
        let triple = self.b[self.i..].starts_with(&[q, q, q]);
        self.i += if triple { 3 } else { 1 };
        loop {
            match self.peek() {
                None => return Err(None),
                Some(b'\n') if triple => self.newline(),
                Some(b'\n') => return Err(None),
                Some(b'\\') if q == b'"' => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'\n') => self.newline(),
                        Some(_) => self.i += 1,
                        None => return Err(None),
                    }
                }
                Some(c) if c == q && !triple => {
                    self.i += 1;
                    return Ok(());
                }
                Some(c) if c == q && self.b[self.i..].starts_with(&[q, q, q]) => {
                    // Up to two more quotes belong to the content before the closing three.
                    self.i += 3;
                    while self.peek() == Some(q) {
                        self.i += 1;
                    }
                    return Ok(());
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// A dotted key; returns how many parts it has.
    fn key(&mut self) -> std::result::Result<usize, Stop> {
        let mut parts = 0;
        loop {
            self.blanks();
            match self.peek() {
                Some(b'"' | b'\'') => self.string()?,
                _ => {
                    let start = self.i;
                    while self.peek().is_some_and(|c| {
                        !matches!(
                            c,
                            b' ' | b'\t'
                                | b'\r'
                                | b'\n'
                                | b'.'
                                | b'='
                                | b'['
                                | b']'
                                | b'{'
                                | b'}'
                                | b','
                                | b'#'
                                | b'"'
                                | b'\''
                        )
                    }) {
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(None);
                    }
                }
            }
            parts += 1;
            self.blanks();
            if self.peek() != Some(b'.') {
                return Ok(parts);
            }
            self.i += 1;
        }
    }

    /// `KEY = VALUE` whose key starts `depth` levels deep; returns nothing, or where it is too
    /// deep.
    fn key_value(&mut self, depth: usize) -> std::result::Result<(), Stop> {
        let at = self.at();
        let depth = depth + self.key()?;
        Self::check(depth, at)?;
        self.expect(b'=')?;
        self.value(depth)
    }

    /// A value whose key sits `depth` levels deep.
    fn value(&mut self, depth: usize) -> std::result::Result<(), Stop> {
        self.blanks();
        let (open, close) = match self.peek() {
            Some(b'"' | b'\'') => return self.string(),
            Some(b'[') => (b'[', b']'),
            Some(b'{') => (b'{', b'}'),
            Some(_) => {
                // A number, boolean or date: up to the next delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b'\n' | b'\r' | b'#')
                ) {
                    self.i += 1;
                }
                return Ok(());
            }
            None => return Err(None),
        };
        Self::check(depth + 1, self.at())?;
        self.i += 1;
        loop {
            self.space();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(());
            }
            match open {
                b'[' => self.value(depth + 1)?,
                _ => self.key_value(depth)?,
            }
            self.space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(None),
            }
        }
    }

    /// The whole text: table headers and `KEY = VALUE` lines.
    fn document(&mut self) -> std::result::Result<(), Stop> {
        let mut table = 0;
        loop {
            self.space();
            let at = self.at();
            match self.peek() {
                None => return Ok(()),
                Some(b'[') => {
                    self.i += 1;
                    let array = self.peek() == Some(b'[');
                    self.i += usize::from(array);
                    table = self.key()?;
                    Self::check(table, at)?;
                    self.expect(b']')?;
                    if array {
                        self.expect(b']')?;
                    }
                }
                Some(_) => self.key_value(table)?,
            }
            self.end_of_line()?;
        }
    }
}
