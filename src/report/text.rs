//! HTML and CSV outputs of a report.

use super::data::{Cell, ColumnKind, Table};
use super::document::{Bar, Block, Document};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole report as one HTML page; every text is escaped.
pub(crate) fn html(doc: &Document, font: &str, size: f32) -> Vec<u8> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:{font},sans-serif;font-size:{size}pt;margin:2em}}\
         table{{border-collapse:collapse;width:100%}}th,td{{border-bottom:1px solid #ccc;\
         padding:4px;text-align:left;vertical-align:top}}th{{background:#eee}}\
         .num{{text-align:right}}.label{{font-weight:bold}}\
         header,footer{{color:#666;font-size:smaller}}</style></head><body>\n",
        escape(&doc.title)
    );
    if let Some(h) = &doc.header {
        out.push_str(&format!("<header>{}</header>\n", escape(h)));
    }
    out.push_str(&format!(
        "<h1>{}</h1>\n<p>{}</p>\n",
        escape(&doc.title),
        escape(&doc.subtitle)
    ));
    for block in &doc.blocks {
        match block {
            Block::Heading(t) => out.push_str(&format!("<h2>{}</h2>\n", escape(t))),
            Block::Paragraph(t) => out.push_str(&format!("<p>{}</p>\n", escape(t))),
            Block::Table {
                header,
                kinds,
                rows,
            } => {
                let class = |k: &ColumnKind| match k {
                    ColumnKind::Number | ColumnKind::Percent => " class=\"num\"",
                    ColumnKind::Label => " class=\"label\"",
                    ColumnKind::Text | ColumnKind::Time => "",
                };
                out.push_str("<table><thead><tr>");
                for (h, k) in header.iter().zip(kinds) {
                    out.push_str(&format!("<th{}>{}</th>", class(k), escape(h)));
                }
                out.push_str("</tr></thead><tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for (c, k) in row.iter().zip(kinds) {
                        out.push_str(&format!("<td{}>{}</td>", class(k), escape(c)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table>\n");
            }
            Block::Bars(bars) => out.push_str(&svg_bars(bars)),
        }
    }
    if let Some(f) = &doc.footer {
        out.push_str(&format!("<footer>{}</footer>\n", escape(f)));
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// A horizontal bar chart as inline SVG, bars in grey scaled to the largest value.
fn svg_bars(bars: &[Bar]) -> String {
    let most = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let (label_w, area, row) = (220.0, 320.0, 22.0);
    let height = row * bars.len() as f64;
    let mut svg = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" \
         viewBox=\"0 0 600 {height}\" style=\"max-width:100%\" font-size=\"12\">\n"
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = row * i as f64;
        let w = if most > 0.0 {
            area * bar.value / most
        } else {
            0.0
        };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"14\" fill=\"#595959\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>\n",
            label_w - 6.0,
            y + 15.0,
            escape(&bar.label),
            y + 4.0,
            label_w + w + 4.0,
            y + 15.0,
            escape(&bar.shown),
        ));
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// A CSV field: quoted, and defused when a spreadsheet would read it as a formula.
fn field(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

/// `table` (the header and every row) as CSV: numbers as plain numbers (a percent as its
/// fraction), instants in RFC 3339, text quoted; no table is an empty file.
pub(crate) fn csv(table: Option<&Table>) -> Vec<u8> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut out = String::new();
    let line = |out: &mut String, fields: Vec<String>| {
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(
        &mut out,
        table.columns.iter().map(|c| field(&c.heading)).collect(),
    );
    for row in &table.rows {
        let cells = (0..table.columns.len()).map(|i| match row.get(i) {
            Some(Cell::Number(x)) if x.is_finite() => x.to_string(),
            Some(cell) => field(&cell.display(ColumnKind::Text)),
            None => field(""),
        });
        line(&mut out, cells.collect());
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_every_text() {
        let doc = Document {
            title: "<script>".into(),
            subtitle: "a & b".into(),
            header: None,
            footer: None,
            blocks: vec![Block::Paragraph("\"x\"".into())],
            created: chrono::Utc::now(),
        };
        let page = String::from_utf8(html(&doc, "Helvetica", 10.0)).unwrap();
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;") && page.contains("&quot;x&quot;"));
    }

    #[test]
    fn csv_defuses_formulas_and_quotes_and_keeps_numbers_plain() {
        use crate::report::Column;
        let table = Table::new([
            Column::new("a", "a", ColumnKind::Text),
            Column::new("n", "n", ColumnKind::Percent),
        ])
        .row([Cell::from("=1+2"), Cell::from(-0.5)])
        .row([Cell::from("say \"hi\"")]);
        assert_eq!(
            String::from_utf8(csv(Some(&table))).unwrap(),
            "\"a\",\"n\"\r\n\"'=1+2\",-0.5\r\n\"say \"\"hi\"\"\",\"\"\r\n"
        );
        assert!(csv(None).is_empty());
    }
}
