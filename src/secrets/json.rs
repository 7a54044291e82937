//! The JSON form of the secrets: one flat object of strings, `{"NAME": "value", ...}`, read in one
//! pass by a parser that owns every buffer a value passes through. A general JSON library keeps
//! escaped strings in a reusable scratch buffer it frees without wiping; here each value is
//! unescaped straight into a zeroizing string, and nothing else ever holds it. Duplicate names
//! are refused as they are met. Errors give a position and what was expected, never a value.

use zeroize::Zeroizing;

use super::extend_zeroizing as push;

/// Why the input is not a flat object of strings, and where (1-based line and column).
#[derive(Debug, PartialEq, Eq)]
pub struct Error {
    pub what: &'static str,
    pub line: usize,
    pub column: usize,
}

/// The pairs of the object, in the order given.
pub type Pairs = Vec<(String, Zeroizing<String>)>;

/// Parse `input` (which must start, after blanks, with `{`).
pub fn parse(input: &[u8]) -> Result<Pairs, Error> {
    let mut p = Parser { input, at: 0 };
    p.object()
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn fail(&self, what: &'static str) -> Error {
        let before = &self.input[..self.at.min(self.input.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        Error { what, line, column }
    }

    fn blanks(&mut self) {
        while self
            .input
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), Error> {
        self.blanks();
        match self.input.get(self.at) {
            Some(&b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            None => Err(self.fail("the JSON ends too early")),
            Some(_) => Err(self.fail(what)),
        }
    }

    fn object(&mut self) -> Result<Pairs, Error> {
        self.expect(b'{', "expected an object")?;
        let mut pairs: Pairs = Vec::new();
        self.blanks();
        if self.input.get(self.at) == Some(&b'}') {
            self.at += 1;
        } else {
            loop {
                self.expect(b'"', "expected a name in double quotes")?;
                let name = self.string()?;
                if pairs.iter().any(|(n, _)| **n == *name) {
                    return Err(self.fail("a secret name appears more than once"));
                }
                self.expect(b':', "expected ':' after a name")?;
                self.expect(b'"', "expected an object whose values are all strings")?;
                let value = self.string()?;
                pairs.push((name.to_string(), value));
                self.blanks();
                match self.input.get(self.at) {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        break;
                    }
                    None => return Err(self.fail("the JSON ends too early")),
                    Some(_) => return Err(self.fail("expected ',' or '}'")),
                }
            }
        }
        self.blanks();
        if self.at != self.input.len() {
            return Err(self.fail("unexpected text after the object"));
        }
        Ok(pairs)
    }

    /// The rest of a string whose opening quote was read, unescaped into a zeroizing buffer.
    fn string(&mut self) -> Result<Zeroizing<String>, Error> {
        let mut out = Zeroizing::new(Vec::<u8>::new());
        loop {
            let Some(&b) = self.input.get(self.at) else {
                return Err(self.fail("the JSON ends too early"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                0..=0x1f => return Err(self.fail("a control character inside a string")),
                _ => push(&mut out, &[b]),
            }
        }
        match std::str::from_utf8(&out) {
            Ok(s) => Ok(Zeroizing::new(s.to_string())),
            Err(_) => Err(self.fail("the text is not valid UTF-8")),
        }
    }

    fn escape(&mut self, out: &mut Zeroizing<Vec<u8>>) -> Result<(), Error> {
        let Some(&e) = self.input.get(self.at) else {
            return Err(self.fail("the JSON ends too early"));
        };
        self.at += 1;
        let byte = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode()?;
                let mut buf = [0u8; 4];
                push(out, c.encode_utf8(&mut buf).as_bytes());
                buf.iter_mut().for_each(|b| *b = 0);
                return Ok(());
            }
            _ => return Err(self.fail("an invalid escape in a string")),
        };
        push(out, &[byte]);
        Ok(())
    }

    /// `\uXXXX`, or a surrogate pair `\uD8xx\uDCxx`.
    fn unicode(&mut self) -> Result<char, Error> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.input.get(self.at..self.at + 2) != Some(b"\\u") {
                return Err(self.fail("an invalid \\u escape in a string"));
            }
            self.at += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.fail("an invalid \\u escape in a string"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.fail("an invalid \\u escape in a string"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .input
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.fail("the JSON ends too early"))?;
        let mut v = 0u32;
        for d in digits {
            let n = (*d as char)
                .to_digit(16)
                .ok_or_else(|| self.fail("an invalid \\u escape in a string"))?;
            v = v * 16 + n;
        }
        self.at += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        parse(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(n, v)| (n, v.to_string()))
            .collect()
    }

    #[test]
    fn reads_flat_objects_in_order_with_escapes() {
        assert_eq!(pairs(" { } "), vec![]);
        assert_eq!(
            pairs(r#"{"B":"2", "A" : "x\"y\\z\/\n\t\u00e9\ud83d\udd11"}"#),
            vec![
                ("B".into(), "2".into()),
                ("A".into(), "x\"y\\z/\n\té🔑".into())
            ]
        );
        // The same result as a general JSON parser for what both accept.
        let v = "line1\nline2 \"q\" = 'x' ünïcødé 🔑 \u{1}";
        let text = serde_json::to_string(&serde_json::json!({ "K": v })).unwrap();
        assert_eq!(pairs(&text), vec![("K".into(), v.into())]);
    }

    #[test]
    fn refuses_what_is_not_a_flat_object_of_strings() {
        for (input, what) in [
            (r#"{"A": 5}"#, "all strings"),
            (r#"{"A": ["x"]}"#, "all strings"),
            (r#"{"A": {"B": "x"}}"#, "all strings"),
            (r#"{"A": "1", "A": "2"}"#, "more than once"),
            (r#"{"A": "1""#, "ends too early"),
            (r#"{"A": "1"} x"#, "after the object"),
            (r#"{"A": "\q"}"#, "invalid escape"),
            (r#"{"A": "\ud800"}"#, "\\u escape"),
            ("{\"A\": \"a\nb\"}", "control character"),
            (r#"{"A" "1"}"#, "':'"),
            (r#"{A: "1"}"#, "double quotes"),
        ] {
            let e = parse(input.as_bytes()).unwrap_err();
            assert!(e.what.contains(what), "{input}: {e:?}");
        }
        let e = parse(b"{\n  \"A\": 5}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
        assert_eq!(
            parse(b"{\"A\": \"\xff\"}").unwrap_err().what,
            "the text is not valid UTF-8"
        );
    }
}
