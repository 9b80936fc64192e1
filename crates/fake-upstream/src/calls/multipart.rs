//! A small, strict `multipart/form-data` reader (RFC 7578 over RFC 2046) for the calls
//! endpoint's body: [`boundary`] takes the boundary from the `Content-Type` (quoted or not),
//! [`parse`] splits a body already read whole (the endpoint caps it) into named [`Part`]s.
//! Lines may end in CRLF, as the RFCs say, or in a bare LF, as some hand-made clients send; the
//! line break before each delimiter belongs to the delimiter, not to the part. Pure functions,
//! no allocation beyond the parts, at most [`MAX_PARTS`] parts of at most [`MAX_HEADERS`]
//! header lines each.

use std::fmt;

/// Parts in one body at most.
pub(crate) const MAX_PARTS: usize = 16;

/// Header lines in one part at most.
pub(crate) const MAX_HEADERS: usize = 16;

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// One part of a form: its field name, its own `Content-Type` if it gave one, and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Why a body is not a form this reader accepts; the message names what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed multipart body: {}", self.0)
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type, unquoted.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let value = params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim())
    })?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    let valid = !value.is_empty()
        && value.len() <= MAX_BOUNDARY
        && !value.ends_with(' ')
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    valid.then(|| value.to_owned())
}

/// The parts of `body`, a form delimited by `boundary`, in order.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, Malformed> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = first_delimiter(body, delimiter).ok_or(Malformed("no opening boundary"))?;
    let mut parts = Vec::new();
    loop {
        let after = &body[at + delimiter.len()..];
        if after.starts_with(b"--") {
            return Ok(parts);
        }
        if parts.len() == MAX_PARTS {
            return Err(Malformed("too many parts"));
        }
        // Transport padding may follow a delimiter before its line break (RFC 2046 §5.1.1).
        let padding = after
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let start = at + delimiter.len() + padding;
        let start = start
            + line_break(&body[start..]).ok_or(Malformed("no line break after a boundary"))?;
        let (headers, body_start) = read_headers(body, start)?;
        let (end, next) =
            next_delimiter(body, body_start, delimiter).ok_or(Malformed("no closing boundary"))?;
        parts.push(part(&headers, body[body_start..end].to_vec())?);
        at = next;
    }
}

/// Where the first delimiter starts: at the very start or at the start of a line.
fn first_delimiter(body: &[u8], delimiter: &[u8]) -> Option<usize> {
    if body.starts_with(delimiter) && ends_delimiter(&body[delimiter.len()..]) {
        return Some(0);
    }
    next_delimiter(body, 0, delimiter).map(|(_, at)| at)
}

/// Whether `rest`, what follows a delimiter's text, makes it a delimiter line: `--` (the close)
/// or optional padding and a line break. A line that merely starts like one is content.
fn ends_delimiter(rest: &[u8]) -> bool {
    let padding = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    rest.starts_with(b"--") || line_break(&rest[padding..]).is_some()
}

/// The next delimiter line at or after `from`: where the part before it ends (before its line
/// break) and where the delimiter itself starts.
fn next_delimiter(body: &[u8], from: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let mut search = from;
    while let Some(found) = find(&body[search..], delimiter) {
        let at = search + found;
        let starts_line = at > from && body[at - 1] == b'\n';
        if starts_line && ends_delimiter(&body[at + delimiter.len()..]) {
            let end = if at >= from + 2 && body[at - 2] == b'\r' {
                at - 2
            } else {
                at - 1
            };
            return Some((end, at));
        }
        search = at + 1;
    }
    None
}

/// The length of the line break at the start of `bytes` (CRLF or LF), if there is one.
fn line_break(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"\r\n") {
        Some(2)
    } else if bytes.starts_with(b"\n") {
        Some(1)
    } else {
        None
    }
}

/// The header lines of a part starting at `from`, and where its body starts (after the empty
/// line).
fn read_headers(body: &[u8], mut from: usize) -> Result<(Vec<String>, usize), Malformed> {
    let mut headers = Vec::new();
    loop {
        if let Some(gap) = line_break(&body[from..]) {
            return Ok((headers, from + gap));
        }
        if headers.len() == MAX_HEADERS {
            return Err(Malformed("too many header lines in a part"));
        }
        let len = find(&body[from..], b"\n").ok_or(Malformed("headers without an end"))?;
        let line = &body[from..from + len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| Malformed("a header is not UTF-8"))?;
        headers.push(line.to_owned());
        from += len + 1;
    }
}

/// A part from its header lines and body: it must be `form-data` with a name.
fn part(headers: &[String], body: Vec<u8>) -> Result<Part, Malformed> {
    let mut name = None;
    let mut content_type = None;
    for line in headers {
        let (field, value) = line
            .split_once(':')
            .ok_or(Malformed("a header line without a colon"))?;
        let field = field.trim();
        if field.eq_ignore_ascii_case("content-disposition") {
            name = Some(disposition_name(value.trim())?);
        } else if field.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        }
    }
    let name = name.ok_or(Malformed("a part without Content-Disposition"))?;
    Ok(Part {
        name,
        content_type,
        body,
    })
}

/// The `name` of a `form-data` disposition, quoted (with `\"` escapes) or a bare token.
fn disposition_name(value: &str) -> Result<String, Malformed> {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(Malformed("a part that is not form-data"));
    }
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return Err(Malformed("a form-data part without a name"));
        }
        let (param, tail) = rest
            .split_once('=')
            .ok_or(Malformed("a disposition parameter without a value"))?;
        let (value, tail) = param_value(tail.trim_start())?;
        if param.trim().eq_ignore_ascii_case("name") {
            return Ok(value);
        }
        rest = tail;
    }
}

/// One parameter value at the start of `s` and what follows it.
fn param_value(s: &str) -> Result<(String, &str), Malformed> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(';').unwrap_or(s.len());
        return Ok((s[..end].trim().to_owned(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &quoted[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(Malformed("an unterminated quoted parameter"))
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(lines: &[&str]) -> Vec<u8> {
        lines.join("\r\n").into_bytes()
    }

    /// The boundary is read quoted or bare, with any case and spacing; other types have none.
    #[test]
    fn boundary_is_read_from_the_content_type() {
        let cases = [
            ("multipart/form-data; boundary=abc", Some("abc")),
            ("Multipart/Form-Data;BOUNDARY=\"a b:c\"", Some("a b:c")),
            (
                "multipart/form-data; charset=utf-8; boundary=----x1",
                Some("----x1"),
            ),
            ("multipart/form-data", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"unterminated", None),
            ("multipart/mixed; boundary=abc", None),
            ("application/sdp", None),
        ];
        for (content_type, want) in cases {
            assert_eq!(boundary(content_type).as_deref(), want, "{content_type}");
        }
        let long = format!("multipart/form-data; boundary={}", "x".repeat(71));
        assert_eq!(boundary(&long), None);
    }

    /// Two CRLF parts as browsers and curl send them: names, types and bodies exactly, the
    /// line break before each delimiter left out, preamble and epilogue ignored.
    #[test]
    fn parses_a_crlf_form() {
        let body = crlf(&[
            "preamble",
            "--XyZ",
            "Content-Disposition: form-data; name=\"sdp\"",
            "Content-Type: application/sdp",
            "",
            "v=0",
            "o=- 1 2 IN IP4 127.0.0.1",
            "",
            "--XyZ",
            "content-disposition: form-data; name=session",
            "",
            "{\"type\":\"realtime\"}",
            "--XyZ--",
            "epilogue",
        ]);
        let parts = parse(&body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "sdp");
        assert_eq!(parts[0].content_type.as_deref(), Some("application/sdp"));
        assert_eq!(parts[0].body, b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n");
        assert_eq!(parts[1].name, "session");
        assert_eq!(parts[1].content_type, None);
        assert_eq!(parts[1].body, br#"{"type":"realtime"}"#);
    }

    /// Bare LF line ends, transport padding after a delimiter, a quoted name with an escape,
    /// and a boundary-like line inside a part that is not a delimiter.
    #[test]
    fn tolerates_lf_padding_and_lookalikes() {
        let body = b"--b  \nContent-Disposition: form-data; filename=\"x\"; name=\"s\\\"dp\"\n\n\
            line\n--bx not it\n--b\t\nContent-Disposition: form-data; name=e\n\n\n--b--";
        let parts = parse(body, "b").unwrap();
        assert_eq!(parts[0].name, "s\"dp");
        assert_eq!(parts[0].body, b"line\n--bx not it");
        assert_eq!(parts[1].name, "e");
        assert_eq!(parts[1].body, b"");
    }

    /// Bodies that are not well-formed forms are refused, each with its reason.
    #[test]
    fn refuses_malformed_bodies() {
        let cases: [(&[u8], &str); 7] = [
            (b"no boundary here", "no opening boundary"),
            (
                b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody",
                "no closing boundary",
            ),
            (b"--bjunk\r\n--b", "no opening boundary"),
            (
                b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
                "a part without Content-Disposition",
            ),
            (
                b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--",
                "a part that is not form-data",
            ),
            (
                b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--b--",
                "an unterminated quoted parameter",
            ),
            (
                b"--b\r\nno colon\r\n\r\nx\r\n--b--",
                "a header line without a colon",
            ),
        ];
        for (body, why) in cases {
            assert_eq!(
                parse(body, "b"),
                Err(Malformed(why)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Parts and header lines are capped.
    #[test]
    fn parts_and_headers_are_bounded() {
        let one = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n";
        let body = format!("{}--b--", one.repeat(MAX_PARTS + 1));
        assert_eq!(
            parse(body.as_bytes(), "b"),
            Err(Malformed("too many parts"))
        );
        let headers = "X-A: 1\r\n".repeat(MAX_HEADERS + 1);
        let body = format!("--b\r\n{headers}\r\nx\r\n--b--");
        assert_eq!(
            parse(body.as_bytes(), "b"),
            Err(Malformed("too many header lines in a part"))
        );
    }
}
