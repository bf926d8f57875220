//! Plain aligned tables for a terminal (no colour codes, so they paste into tickets).

use serde_json::Value;

/// The first present field among several spellings, as text (`-` when none).
pub fn field(v: &Value, names: &[&str]) -> String {
    for name in names {
        let mut cur = v;
        for part in name.split('.') {
            cur = &cur[part];
        }
        if !cur.is_null() {
            return text(cur);
        }
    }
    "-".to_owned()
}

/// A value as a cell: strings without quotes, `-` for null.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders rows under headers, columns padded to their widest cell (counted in chars),
/// cells longer than `max` cut with an ellipsis.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 48;
    let cut = |s: &str| -> String {
        let one_line = s.replace(['\n', '\r'], " ");
        if one_line.chars().count() > MAX {
            let mut t: String = one_line.chars().take(MAX - 1).collect();
            t.push('…');
            t
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let head: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let mut out = line(&head);
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Seconds as `1h 02m`, `3m 05s`, `12s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_long_cells_are_cut() {
        let long = "x".repeat(60);
        let out = render(
            &["id", "title"],
            &[
                vec!["1".into(), "short".into()],
                vec!["22".into(), long.clone()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID  TITLE");
        assert_eq!(lines[1], "1   short");
        assert!(lines[2].ends_with('…') && lines[2].chars().count() == 4 + 48);
    }

    #[test]
    fn fields_fall_back_through_spellings() {
        let v = json!({"a": null, "b": {"c": 3}, "d": "x"});
        assert_eq!(field(&v, &["a", "b.c"]), "3");
        assert_eq!(field(&v, &["d"]), "x");
        assert_eq!(field(&v, &["zz"]), "-");
        assert_eq!(duration(3725), "1h 02m");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(-4), "0s");
    }
}
