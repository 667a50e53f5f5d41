//! The layout of a report's pages: wrapped text, tables that break across pages with
//! their header repeated, all measured with the standard fonts' real widths, within the
//! render budget. The result is pages of drawing operations, which `pdf` writes.

use super::budget::{BudgetExceeded, Meter};
use super::data::ColumnKind;
use super::document::{Bar, Block, Document};
use super::fonts::FontMetrics;
use super::model::{MAX_FONT_SIZE, MIN_FONT_SIZE, Style};

/// A4 portrait, in points.
pub(super) const PAGE_W: f32 = 595.0;
pub(super) const PAGE_H: f32 = 842.0;
pub(super) const MARGIN: f32 = 50.0;
/// Space inside table cells.
const PAD: f32 = 4.0;
/// The grey of a table's header row.
const SHADE: f32 = 0.9;
/// The grey of a chart's bars: dark enough to print, light enough to tell from text.
const INK: f32 = 0.35;

/// One drawing operation of a page.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Text {
        x: f32,
        y: f32,
        bold: bool,
        size: f32,
        text: String,
    },
    Rule {
        y: f32,
        x1: f32,
        x2: f32,
    },
    /// A filled rectangle in `gray` (0 black, 1 white): a table header's shade, a
    /// chart's bar or axis.
    Fill {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        gray: f32,
    },
}

pub(super) struct Layout {
    pub(super) body: &'static FontMetrics,
    bold: &'static FontMetrics,
    pub(super) size: f32,
    leading: f32,
    top: f32,
    bottom: f32,
    y: f32,
    pub(super) pages: Vec<Vec<Op>>,
    /// Each heading: its text, its page (from 0) and the top of its line.
    pub(super) headings: Vec<(String, usize, f32)>,
    pub(super) meter: Meter,
}

/// Splits `text` into lines no wider than `max` (words wider than a line are broken).
fn wrap(font: &FontMetrics, size: f32, text: &str, max: f32) -> Vec<String> {
    let space = font.char_width(' ', size);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut width = 0.0;
        for word in paragraph.split_whitespace() {
            let w = font.width(word, size);
            if !line.is_empty() && width + space + w <= max {
                line.push(' ');
                line.push_str(word);
                width += space + w;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if w <= max {
                line.push_str(word);
                width = w;
                continue;
            }
            // A word wider than a line: as many characters per line as fit.
            width = 0.0;
            for c in word.chars() {
                let cw = font.char_width(c, size);
                if width + cw > max && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    width = 0.0;
                }
                line.push(c);
                width += cw;
            }
        }
        lines.push(line);
    }
    lines
}

impl Layout {
    fn new(style: &Style, doc: &Document, meter: Meter) -> Layout {
        // Validated templates are in range already; anything else renders at a sane size
        // rather than laying out forever.
        let size = if style.font_size.is_finite() {
            style.font_size.clamp(MIN_FONT_SIZE, MAX_FONT_SIZE)
        } else {
            10.0
        };
        let header_space = if doc.header.is_some() {
            size * 2.0
        } else {
            0.0
        };
        let top = PAGE_H - MARGIN - header_space;
        Layout {
            body: FontMetrics::of(style.font),
            bold: FontMetrics::of(style.font.bold()),
            size,
            leading: size * 1.3,
            top,
            bottom: MARGIN + size * 2.0,
            y: top,
            pages: vec![Vec::new()],
            headings: Vec::new(),
            meter,
        }
    }

    pub(super) fn font(&self, bold: bool) -> &'static FontMetrics {
        if bold { self.bold } else { self.body }
    }

    fn page(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("there is always a page")
    }

    /// Starts a page, unless that would pass the page budget (or the time is up).
    fn new_page(&mut self) -> Result<(), BudgetExceeded> {
        self.meter.pages(self.pages.len() + 1)?;
        self.meter.memory()?;
        self.pages.push(Vec::new());
        self.y = self.top;
        Ok(())
    }

    /// Starts a new page unless `height` fits above the bottom margin.
    fn room_for(&mut self, height: f32) -> Result<(), BudgetExceeded> {
        if self.y - height < self.bottom && self.y < self.top {
            self.new_page()?;
        }
        Ok(())
    }

    fn text(&mut self, x: f32, baseline: f32, bold: bool, size: f32, text: String) {
        self.meter.held(std::mem::size_of::<Op>() + text.len());
        self.page().push(Op::Text {
            x,
            y: baseline,
            bold,
            size,
            text,
        });
    }

    /// Wrapped text across the full width, breaking pages between lines.
    fn paragraph(
        &mut self,
        text: &str,
        bold: bool,
        size: f32,
        after: f32,
    ) -> Result<(), BudgetExceeded> {
        let leading = size * 1.3;
        for line in wrap(self.font(bold), size, text, PAGE_W - 2.0 * MARGIN) {
            self.room_for(leading)?;
            let baseline = self.y - size;
            self.text(MARGIN, baseline, bold, size, line);
            self.y -= leading;
        }
        self.y -= after;
        Ok(())
    }

    fn title_block(&mut self, doc: &Document) -> Result<(), BudgetExceeded> {
        self.paragraph(&doc.title, true, self.size * 2.0, self.size * 0.4)?;
        self.paragraph(&doc.subtitle, false, self.size * 0.9, self.size * 0.6)?;
        let y = self.y;
        self.page().push(Op::Rule {
            y,
            x1: MARGIN,
            x2: PAGE_W - MARGIN,
        });
        self.y -= self.size * 1.2;
        Ok(())
    }

    fn heading(&mut self, text: &str) -> Result<(), BudgetExceeded> {
        let size = self.size * 1.3;
        // Keep a heading with at least two lines of what follows.
        self.room_for(size * 1.3 + self.leading * 3.0)?;
        self.y -= self.size * 0.5;
        self.headings
            .push((text.to_owned(), self.pages.len() - 1, self.y));
        self.paragraph(text, true, size, self.size * 0.3)
    }

    /// Column widths: each at least its longest word (up to half the page), the rest
    /// shared in proportion to how much more each column's longest cell wants.
    fn widths(&self, header: &[String], columns: &[Cells], rows: &[Vec<String>]) -> Vec<f32> {
        let total = PAGE_W - 2.0 * MARGIN;
        let n = header.len().max(1);
        let mut min = vec![0f32; n];
        let mut want = vec![0f32; n];
        let cells =
            std::iter::once((header, true)).chain(rows.iter().map(|r| (r.as_slice(), false)));
        for (row, head) in cells {
            for (i, text) in row.iter().enumerate().take(n) {
                let font = self.font(head || columns[i].bold);
                let words = text.split_whitespace().map(|w| font.width(w, self.size));
                min[i] = min[i].max(words.fold(0.0, f32::max) + 2.0 * PAD);
                want[i] = want[i].max(font.width(text, self.size) + 2.0 * PAD);
            }
        }
        for (m, w) in min.iter_mut().zip(&mut want) {
            *m = m.min(total / 2.0);
            *w = w.min(total).max(*m);
        }
        let min_sum: f32 = min.iter().sum();
        if min_sum >= total {
            return min.iter().map(|m| m * total / min_sum).collect();
        }
        let extra_wanted: f32 = min.iter().zip(&want).map(|(m, w)| w - m).sum();
        let extra = total - min_sum;
        if extra_wanted >= extra {
            let share = extra / extra_wanted;
            return min
                .iter()
                .zip(&want)
                .map(|(m, w)| m + (w - m) * share)
                .collect();
        }
        // Everything fits: spread what is left in proportion to what each wants.
        let want_sum: f32 = want.iter().sum();
        want.iter().map(|w| w * total / want_sum).collect()
    }

    /// A table: header shaded and repeated on every page it runs onto, numbers on the
    /// right, labels in bold.
    fn table(
        &mut self,
        header: &[String],
        kinds: &[ColumnKind],
        rows: &[Vec<String>],
    ) -> Result<(), BudgetExceeded> {
        let columns: Vec<Cells> = kinds
            .iter()
            .map(|k| Cells {
                bold: *k == ColumnKind::Label,
                right: k.is_numeric(),
            })
            .collect();
        let widths = self.widths(header, &columns, rows);
        let wrap_row = |layout: &Layout, row: &[String], head: bool| -> Vec<Vec<String>> {
            row.iter()
                .zip(&widths)
                .zip(&columns)
                .map(|((text, w), c)| {
                    wrap(
                        layout.font(head || c.bold),
                        layout.size,
                        text,
                        w - 2.0 * PAD,
                    )
                })
                .collect()
        };
        let head = wrap_row(self, header, true);
        let head_lines = head.iter().map(Vec::len).max().unwrap_or(1);
        let head_height = head_lines as f32 * self.leading + 2.0 * PAD;
        let heading = |c: &Cells| Cells { bold: true, ..*c };
        let head_columns: Vec<Cells> = columns.iter().map(heading).collect();
        self.room_for(head_height + self.leading + 2.0 * PAD)?;
        self.row(&widths, &head_columns, &head, 0, head_lines, true);
        for row in rows {
            self.meter.time()?;
            self.meter.memory()?;
            let cells = wrap_row(self, row, false);
            let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
            let mut start = 0;
            while start < lines {
                let fit = ((self.y - self.bottom - 2.0 * PAD) / self.leading).floor();
                let fit = if fit < 1.0 { 0 } else { fit as usize };
                let whole_fits_fresh = (lines as f32) * self.leading + 2.0 * PAD
                    <= self.top - self.bottom - head_height;
                // Keep rows whole when a fresh page can hold them; split only taller ones.
                if fit == 0 || (start == 0 && fit < lines && whole_fits_fresh) {
                    self.new_page()?;
                    self.row(&widths, &head_columns, &head, 0, head_lines, true);
                    continue;
                }
                let n = fit.min(lines - start);
                self.row(&widths, &columns, &cells, start, n, false);
                start += n;
            }
        }
        self.y -= self.size;
        Ok(())
    }

    /// Draws lines `start..start + n` of each cell as one row band, shaded for a header.
    fn row(
        &mut self,
        widths: &[f32],
        columns: &[Cells],
        cells: &[Vec<String>],
        start: usize,
        n: usize,
        shaded: bool,
    ) {
        let height = n as f32 * self.leading + 2.0 * PAD;
        if shaded {
            let (y, w) = (self.y - height, PAGE_W - 2.0 * MARGIN);
            self.page().push(Op::Fill {
                x: MARGIN,
                y,
                w,
                h: height,
                gray: SHADE,
            });
        }
        let mut x = MARGIN;
        for ((lines, w), column) in cells.iter().zip(widths).zip(columns) {
            for (i, line) in lines.iter().skip(start).take(n).enumerate() {
                let baseline = self.y - PAD - self.size - i as f32 * self.leading;
                let left = match column.right {
                    true => x + w - PAD - self.font(column.bold).width(line, self.size),
                    false => x + PAD,
                };
                self.text(left, baseline, column.bold, self.size, line.clone());
            }
            x += w;
        }
        self.y -= height;
        let y = self.y;
        self.page().push(Op::Rule {
            y,
            x1: MARGIN,
            x2: PAGE_W - MARGIN,
        });
    }
}

/// How a column's cells are set.
#[derive(Debug, Clone, Copy)]
struct Cells {
    bold: bool,
    right: bool,
}

impl Layout {
    /// A horizontal bar chart: labels on the left, a bar per count scaled to the largest,
    /// the count after each bar, an axis at the bars' start; rows break across pages.
    fn bars(&mut self, bars: &[Bar]) -> Result<(), BudgetExceeded> {
        if bars.is_empty() {
            return Ok(());
        }
        let most = bars.iter().map(|b| b.value).fold(0.0, f64::max);
        let total = PAGE_W - 2.0 * MARGIN;
        let widest = |text: fn(&Bar) -> &str| {
            bars.iter()
                .map(|b| self.body.width(text(b), self.size))
                .fold(0.0, f32::max)
        };
        let label_w = (widest(|b| &b.label) + 2.0 * PAD).min(total * 0.4);
        let value_w = (widest(|b| &b.shown) + 2.0 * PAD).min(total * 0.2);
        let area = (total - label_w - value_w).max(1.0);
        let (row, thickness) = (self.leading * 1.2, self.size * 0.9);
        let axis = MARGIN + label_w;
        self.y -= self.size * 0.5;
        for bar in bars {
            self.room_for(row)?;
            let baseline = self.y - (row + self.size * 0.7) / 2.0;
            let label = self.fit(&bar.label, label_w - 2.0 * PAD);
            self.text(MARGIN, baseline, false, self.size, label);
            let w = if most > 0.0 {
                area * (bar.value / most) as f32
            } else {
                0.0
            };
            let (y, top) = (self.y - row, self.y);
            self.meter.held(2 * std::mem::size_of::<Op>());
            self.page().push(Op::Fill {
                x: axis,
                y,
                w: 0.8,
                h: top - y,
                gray: INK,
            });
            if w > 0.0 {
                self.page().push(Op::Fill {
                    x: axis,
                    y: y + (row - thickness) / 2.0,
                    w,
                    h: thickness,
                    gray: INK,
                });
            }
            let shown = self.fit(&bar.shown, value_w - PAD);
            self.text(axis + w + PAD, baseline, false, self.size, shown);
            self.y -= row;
        }
        self.y -= self.size * 0.6;
        Ok(())
    }

    /// `text` cut to `max` wide, ending in "…" when it was cut.
    fn fit(&self, text: &str, max: f32) -> String {
        if self.body.width(text, self.size) <= max {
            return text.to_owned();
        }
        let mut out = String::new();
        let room = max - self.body.width("…", self.size);
        let mut width = 0.0;
        for c in text.chars() {
            width += self.body.char_width(c, self.size);
            if width > room {
                break;
            }
            out.push(c);
        }
        out.push('…');
        out
    }
}

/// Lays out `doc` in `style` within the budget `meter` keeps.
///
/// # Errors
/// The page or time limit the document would pass.
pub(super) fn lay_out(
    doc: &Document,
    style: &Style,
    meter: Meter,
) -> Result<Layout, BudgetExceeded> {
    let mut layout = Layout::new(style, doc, meter);
    layout.title_block(doc)?;
    for block in &doc.blocks {
        match block {
            Block::Heading(text) => layout.heading(text)?,
            Block::Paragraph(text) => {
                layout.paragraph(text, false, layout.size, layout.size * 0.6)?;
            }
            Block::Table {
                header,
                kinds,
                rows,
            } => layout.table(header, kinds, rows)?,
            Block::Bars(bars) => layout.bars(bars)?,
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StandardFont;

    #[test]
    fn lines_never_exceed_the_width() {
        let font = FontMetrics::of(StandardFont::Helvetica);
        let text = format!("short words then {} and more", "x".repeat(300));
        let lines = wrap(font, 10.0, &text, 100.0);
        assert!(
            lines.iter().all(|l| font.width(l, 10.0) <= 100.0),
            "{lines:?}"
        );
        assert_eq!(
            lines.concat().replace(' ', "").len(),
            text.replace(' ', "").len()
        );
        assert_eq!(wrap(font, 10.0, "a\n\nb", 100.0), ["a", "", "b"]);
    }
}
