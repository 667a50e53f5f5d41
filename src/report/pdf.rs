//! PDF output over pdf-writer: every laid-out page written with its header, and its
//! footer with "Page X of Y", now that the count is known.

use chrono::{Datelike, Timelike};
use pdf_writer::types::PageMode;
use pdf_writer::{Content, Date, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::budget::{BudgetExceeded, Meter};
use super::document::Document;
use super::layout::{Layout, MARGIN, Op, PAGE_H, PAGE_W, lay_out};
use super::model::Style;

const BODY: &[u8] = b"F1";
const BOLD: &[u8] = b"F2";

/// Renders `doc` in `style` as a PDF file, within the budget `meter` keeps.
///
/// # Errors
/// The limit that the document would pass: pages and time while laying out, bytes and
/// time while writing.
pub(crate) fn render(
    doc: &Document,
    style: &Style,
    meter: Meter,
) -> Result<Vec<u8>, BudgetExceeded> {
    let layout = lay_out(doc, style, meter)?;
    let mut meter = layout.meter.clone();
    write(doc, style, &layout, &mut meter)
}

fn write(
    doc: &Document,
    style: &Style,
    layout: &Layout,
    meter: &mut Meter,
) -> Result<Vec<u8>, BudgetExceeded> {
    let mut next = 1;
    let mut id = || {
        next += 1;
        Ref::new(next - 1)
    };
    let (catalog, tree, body_font, bold_font, info) = (id(), id(), id(), id(), id());
    let mut pdf = Pdf::new();
    let count = layout.pages.len();
    let mut kids = Vec::with_capacity(count);
    for (i, ops) in layout.pages.iter().enumerate() {
        let (page_id, content_id) = (id(), id());
        kids.push(page_id);
        let content = page_content(doc, layout, ops, i + 1, count);
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&content, 6);
        // The stream and the page object around it.
        meter.bytes(compressed.len() + 200)?;
        pdf.stream(content_id, &compressed)
            .filter(Filter::FlateDecode);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
            .parent(tree)
            .contents(content_id);
        page.resources()
            .fonts()
            .pair(Name(BODY), body_font)
            .pair(Name(BOLD), bold_font);
        page.finish();
    }
    pdf.pages(tree)
        .kids(kids.iter().copied())
        .count(count as i32);
    let outline = outline(&mut pdf, layout, &kids, &mut id);
    let mut cat = pdf.catalog(catalog);
    cat.pages(tree);
    if let Some(outline) = outline {
        cat.outlines(outline).page_mode(PageMode::UseOutlines);
    }
    cat.finish();
    for (font_id, font) in [(body_font, style.font), (bold_font, style.font.bold())] {
        let mut f = pdf.type1_font(font_id);
        f.base_font(Name(font.name().as_bytes()));
        if !font.is_symbolic() {
            f.encoding_predefined(Name(b"WinAnsiEncoding"));
        }
    }
    let t = doc.created;
    let created = Date::new(u16::try_from(t.year()).unwrap_or(0))
        .month(t.month() as u8)
        .day(t.day() as u8)
        .hour(t.hour() as u8)
        .minute(t.minute() as u8)
        .second(t.second() as u8)
        .utc_offset_hour(0);
    pdf.document_info(info)
        .title(TextStr(&doc.title))
        .producer(TextStr(concat!("jobworks ", env!("CARGO_PKG_VERSION"))))
        .creation_date(created);
    Ok(pdf.finish())
}

/// The document outline: one top-level bookmark per section heading, each opening its
/// page at the heading. `None` when the report has no sections.
fn outline(
    pdf: &mut Pdf,
    layout: &Layout,
    pages: &[Ref],
    id: &mut impl FnMut() -> Ref,
) -> Option<Ref> {
    if layout.headings.is_empty() {
        return None;
    }
    let root = id();
    let items: Vec<Ref> = layout.headings.iter().map(|_| id()).collect();
    for (i, (title, page, top)) in layout.headings.iter().enumerate() {
        let mut item = pdf.outline_item(items[i]);
        item.title(TextStr(title)).parent(root);
        if i > 0 {
            item.prev(items[i - 1]);
        }
        if let Some(next) = items.get(i + 1) {
            item.next(*next);
        }
        item.dest().page(pages[*page]).xyz(MARGIN, *top, None);
    }
    let (first, last) = (items[0], items[items.len() - 1]);
    pdf.outline(root)
        .first(first)
        .last(last)
        .count(items.len() as i32);
    Some(root)
}

/// One page's content stream: header, body operations, footer with the page number.
fn page_content(
    doc: &Document,
    layout: &Layout,
    ops: &[Op],
    number: usize,
    count: usize,
) -> Vec<u8> {
    let size = layout.size;
    let small = size * 0.8;
    let mut page_ops = Vec::with_capacity(ops.len() + 4);
    if let Some(header) = &doc.header {
        let y = PAGE_H - MARGIN;
        page_ops.push(Op::Text {
            x: MARGIN,
            y,
            bold: false,
            size: small,
            text: header.clone(),
        });
        page_ops.push(Op::Rule {
            y: y - small * 0.6,
            x1: MARGIN,
            x2: PAGE_W - MARGIN,
        });
    }
    let footer_y = MARGIN;
    page_ops.push(Op::Rule {
        y: footer_y + small * 1.4,
        x1: MARGIN,
        x2: PAGE_W - MARGIN,
    });
    if let Some(footer) = &doc.footer {
        page_ops.push(Op::Text {
            x: MARGIN,
            y: footer_y,
            bold: false,
            size: small,
            text: footer.clone(),
        });
    }
    let number = format!("Page {number} of {count}");
    let x = PAGE_W - MARGIN - layout.body.width(&number, small);
    page_ops.push(Op::Text {
        x,
        y: footer_y,
        bold: false,
        size: small,
        text: number,
    });

    let mut c = Content::new();
    c.set_line_width(0.5);
    c.set_stroke_gray(0.6);
    let mut in_text = false;
    let mut current: Option<(bool, f32)> = None;
    for op in ops.iter().chain(&page_ops) {
        match op {
            Op::Text {
                x,
                y,
                bold,
                size,
                text,
            } => {
                if !in_text {
                    c.begin_text();
                    in_text = true;
                    current = None;
                }
                if current != Some((*bold, *size)) {
                    c.set_font(Name(if *bold { BOLD } else { BODY }), *size);
                    current = Some((*bold, *size));
                }
                c.set_text_matrix([1.0, 0.0, 0.0, 1.0, *x, *y]);
                let font = layout.font(*bold);
                c.show(Str(&font.encode(text)));
            }
            Op::Rule { y, x1, x2 } => {
                if in_text {
                    c.end_text();
                    in_text = false;
                }
                c.move_to(*x1, *y).line_to(*x2, *y).stroke();
            }
            Op::Fill { x, y, w, h, gray } => {
                if in_text {
                    c.end_text();
                    in_text = false;
                }
                c.set_fill_gray(*gray)
                    .rect(*x, *y, *w, *h)
                    .fill_nonzero()
                    .set_fill_gray(0.0);
            }
        }
    }
    if in_text {
        c.end_text();
    }
    c.finish().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::document::Block;
    use crate::report::{RenderBudget, StandardFont};

    #[test]
    fn out_of_range_sizes_still_render() {
        let doc = Document {
            title: "t".into(),
            subtitle: "s".into(),
            header: None,
            footer: None,
            blocks: vec![Block::Table {
                header: vec!["a".into()],
                kinds: vec![crate::report::ColumnKind::Number],
                rows: vec![vec!["1".into()]; 50],
            }],
            created: chrono::Utc::now(),
        };
        for size in [0.0, -3.0, 1e30, f32::NAN] {
            let style = Style {
                font: StandardFont::Helvetica,
                font_size: size,
            };
            let pdf = render(&doc, &style, Meter::start(RenderBudget::default())).unwrap();
            assert!(pdf.starts_with(b"%PDF-"), "{size}");
        }
    }
}
