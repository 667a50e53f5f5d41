//! Glyph widths of the 14 standard fonts (Adobe's AFM files), and WinAnsi encoding.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The 14 standard PDF fonts, which every PDF reader has: no font files are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum StandardFont {
    /// Helvetica.
    #[default]
    Helvetica,
    /// Helvetica-Bold.
    #[serde(rename = "Helvetica-Bold")]
    HelveticaBold,
    /// Helvetica-Oblique.
    #[serde(rename = "Helvetica-Oblique")]
    HelveticaOblique,
    /// Helvetica-BoldOblique.
    #[serde(rename = "Helvetica-BoldOblique")]
    HelveticaBoldOblique,
    /// Times-Roman.
    #[serde(rename = "Times-Roman")]
    TimesRoman,
    /// Times-Bold.
    #[serde(rename = "Times-Bold")]
    TimesBold,
    /// Times-Italic.
    #[serde(rename = "Times-Italic")]
    TimesItalic,
    /// Times-BoldItalic.
    #[serde(rename = "Times-BoldItalic")]
    TimesBoldItalic,
    /// Courier.
    Courier,
    /// Courier-Bold.
    #[serde(rename = "Courier-Bold")]
    CourierBold,
    /// Courier-Oblique.
    #[serde(rename = "Courier-Oblique")]
    CourierOblique,
    /// Courier-BoldOblique.
    #[serde(rename = "Courier-BoldOblique")]
    CourierBoldOblique,
    /// Symbol (its own encoding: Greek letters and symbols).
    Symbol,
    /// ZapfDingbats (its own encoding: ornaments).
    ZapfDingbats,
}

impl StandardFont {
    /// All 14.
    pub const ALL: [StandardFont; 14] = [
        StandardFont::Helvetica,
        StandardFont::HelveticaBold,
        StandardFont::HelveticaOblique,
        StandardFont::HelveticaBoldOblique,
        StandardFont::TimesRoman,
        StandardFont::TimesBold,
        StandardFont::TimesItalic,
        StandardFont::TimesBoldItalic,
        StandardFont::Courier,
        StandardFont::CourierBold,
        StandardFont::CourierOblique,
        StandardFont::CourierBoldOblique,
        StandardFont::Symbol,
        StandardFont::ZapfDingbats,
    ];

    /// Its PostScript name, as PDF writes it.
    pub fn name(self) -> &'static str {
        use StandardFont::*;
        match self {
            Helvetica => "Helvetica",
            HelveticaBold => "Helvetica-Bold",
            HelveticaOblique => "Helvetica-Oblique",
            HelveticaBoldOblique => "Helvetica-BoldOblique",
            TimesRoman => "Times-Roman",
            TimesBold => "Times-Bold",
            TimesItalic => "Times-Italic",
            TimesBoldItalic => "Times-BoldItalic",
            Courier => "Courier",
            CourierBold => "Courier-Bold",
            CourierOblique => "Courier-Oblique",
            CourierBoldOblique => "Courier-BoldOblique",
            Symbol => "Symbol",
            ZapfDingbats => "ZapfDingbats",
        }
    }

    /// The font named `name`.
    pub fn parse(name: &str) -> Option<StandardFont> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The bold face of the same family, for headings (Helvetica-Bold for the symbol fonts,
    /// whose glyphs cannot spell words).
    pub fn bold(self) -> StandardFont {
        use StandardFont::*;
        match self {
            Helvetica | HelveticaBold => HelveticaBold,
            HelveticaOblique | HelveticaBoldOblique => HelveticaBoldOblique,
            TimesRoman | TimesBold => TimesBold,
            TimesItalic | TimesBoldItalic => TimesBoldItalic,
            Courier | CourierBold => CourierBold,
            CourierOblique | CourierBoldOblique => CourierBoldOblique,
            Symbol | ZapfDingbats => HelveticaBold,
        }
    }

    /// Whether it uses its own built-in encoding rather than WinAnsi.
    pub fn is_symbolic(self) -> bool {
        matches!(self, StandardFont::Symbol | StandardFont::ZapfDingbats)
    }
}

/// Glyph names of WinAnsiEncoding for codes 32 to 255 (`-` where the code is unused),
/// from the PDF specification's Annex D.
const WIN_ANSI_NAMES: &str = "space exclam quotedbl numbersign dollar percent ampersand \
quotesingle parenleft parenright asterisk plus comma hyphen period slash zero one two three \
four five six seven eight nine colon semicolon less equal greater question at A B C D E F G H \
I J K L M N O P Q R S T U V W X Y Z bracketleft backslash bracketright asciicircum underscore \
grave a b c d e f g h i j k l m n o p q r s t u v w x y z braceleft bar braceright asciitilde - \
Euro - quotesinglbase florin quotedblbase ellipsis dagger daggerdbl circumflex perthousand \
Scaron guilsinglleft OE - Zcaron - - quoteleft quoteright quotedblleft quotedblright bullet \
endash emdash tilde trademark scaron guilsinglright oe - zcaron Ydieresis space exclamdown cent \
sterling currency yen brokenbar section dieresis copyright ordfeminine guillemotleft logicalnot \
hyphen registered macron degree plusminus twosuperior threesuperior acute mu paragraph \
periodcentered cedilla onesuperior ordmasculine guillemotright onequarter onehalf \
threequarters questiondown Agrave Aacute Acircumflex Atilde Adieresis Aring AE Ccedilla Egrave \
Eacute Ecircumflex Edieresis Igrave Iacute Icircumflex Idieresis Eth Ntilde Ograve Oacute \
Ocircumflex Otilde Odieresis multiply Oslash Ugrave Uacute Ucircumflex Udieresis Yacute Thorn \
germandbls agrave aacute acircumflex atilde adieresis aring ae ccedilla egrave eacute \
ecircumflex edieresis igrave iacute icircumflex idieresis eth ntilde ograve oacute ocircumflex \
otilde odieresis divide oslash ugrave uacute ucircumflex udieresis yacute thorn ydieresis";

/// Characters of WinAnsi's 0x80–0x9F block, which differ from Unicode's code points.
const WIN_ANSI_HIGH: [(char, u8); 27] = [
    ('€', 0x80),
    ('‚', 0x82),
    ('ƒ', 0x83),
    ('„', 0x84),
    ('…', 0x85),
    ('†', 0x86),
    ('‡', 0x87),
    ('ˆ', 0x88),
    ('‰', 0x89),
    ('Š', 0x8A),
    ('‹', 0x8B),
    ('Œ', 0x8C),
    ('Ž', 0x8E),
    ('‘', 0x91),
    ('’', 0x92),
    ('“', 0x93),
    ('”', 0x94),
    ('•', 0x95),
    ('–', 0x96),
    ('—', 0x97),
    ('˜', 0x98),
    ('™', 0x99),
    ('š', 0x9A),
    ('›', 0x9B),
    ('œ', 0x9C),
    ('ž', 0x9E),
    ('Ÿ', 0x9F),
];

/// What a character the font cannot show is replaced with, visibly.
pub(crate) const REPLACEMENT: u8 = b'?';

/// A font's widths by encoded byte, in thousandths of the font size.
#[derive(Debug)]
pub(crate) struct FontMetrics {
    font: StandardFont,
    widths: [u16; 256],
}

fn afm(font: StandardFont) -> &'static str {
    use StandardFont::*;
    use pdf_core_14_font_afms as a;
    match font {
        Helvetica => a::HELVETICA,
        HelveticaBold => a::HELVETICA_BOLD,
        HelveticaOblique => a::HELVETICA_OBLIQUE,
        HelveticaBoldOblique => a::HELVETICA_BOLD_OBLIQUE,
        TimesRoman => a::TIMES_ROMAN,
        TimesBold => a::TIMES_BOLD,
        TimesItalic => a::TIMES_ITALIC,
        TimesBoldItalic => a::TIMES_BOLD_ITALIC,
        Courier => a::COURIER,
        CourierBold => a::COURIER_BOLD,
        CourierOblique => a::COURIER_OBLIQUE,
        CourierBoldOblique => a::COURIER_BOLD_OBLIQUE,
        Symbol => a::SYMBOL,
        ZapfDingbats => a::ZAPF_DINGBATS,
    }
}

/// Reads `C code ; WX width ; N name ; …` lines.
fn parse_afm(text: &str) -> (HashMap<&str, u16>, Vec<(u8, u16)>) {
    let mut by_name = HashMap::new();
    let mut by_code = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("C ")) {
        let (mut code, mut width, mut name) = (None, None, None);
        for field in line.split(';') {
            let mut parts = field.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("C"), Some(c)) => code = c.parse::<i32>().ok(),
                (Some("WX"), Some(w)) => width = w.parse::<u16>().ok(),
                (Some("N"), Some(n)) => name = Some(n),
                _ => {}
            }
        }
        if let (Some(width), Some(name)) = (width, name) {
            by_name.insert(name, width);
            if let Some(code) = code.and_then(|c| u8::try_from(c).ok()) {
                by_code.push((code, width));
            }
        }
    }
    (by_name, by_code)
}

impl FontMetrics {
    fn load(font: StandardFont) -> FontMetrics {
        let (by_name, by_code) = parse_afm(afm(font));
        let mut widths = [0u16; 256];
        if font.is_symbolic() {
            for (code, width) in by_code {
                widths[usize::from(code)] = width;
            }
        } else {
            for (i, name) in WIN_ANSI_NAMES.split_whitespace().enumerate() {
                widths[32 + i] = by_name.get(name).copied().unwrap_or(0);
            }
        }
        FontMetrics { font, widths }
    }

    /// The metrics of `font`, parsed once per process.
    pub(crate) fn of(font: StandardFont) -> &'static FontMetrics {
        static ALL: OnceLock<Vec<FontMetrics>> = OnceLock::new();
        let all = ALL.get_or_init(|| StandardFont::ALL.into_iter().map(Self::load).collect());
        &all[StandardFont::ALL
            .iter()
            .position(|f| *f == font)
            .expect("every font is loaded")]
    }

    /// The byte that shows `c`, or [`REPLACEMENT`] when the font cannot.
    pub(crate) fn encode_char(&self, c: char) -> u8 {
        let byte = match u32::from(c) {
            _ if self.font.is_symbolic() => u8::try_from(u32::from(c)).ok(),
            0x20..=0x7E | 0xA0..=0xFF => u8::try_from(u32::from(c)).ok(),
            _ => WIN_ANSI_HIGH.iter().find(|(h, _)| *h == c).map(|(_, b)| *b),
        };
        match byte {
            Some(b) if self.widths[usize::from(b)] > 0 => b,
            _ if c.is_whitespace() => b' ',
            _ => REPLACEMENT,
        }
    }

    /// `text` as the font's bytes.
    pub(crate) fn encode(&self, text: &str) -> Vec<u8> {
        text.chars().map(|c| self.encode_char(c)).collect()
    }

    /// The width of `text` at `size` points.
    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        let units: u32 = text
            .chars()
            .map(|c| u32::from(self.widths[usize::from(self.encode_char(c))]))
            .sum();
        units as f32 * size / 1000.0
    }

    /// The width of one character at `size` points.
    pub(crate) fn char_width(&self, c: char, size: f32) -> f32 {
        f32::from(self.widths[usize::from(self.encode_char(c))]) * size / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_come_from_the_afm_files() {
        let h = FontMetrics::of(StandardFont::Helvetica);
        assert_eq!(h.width(" ", 1000.0), 278.0);
        assert_eq!(h.width("é", 1000.0), 556.0);
        assert_eq!(h.width("€", 1000.0), 556.0);
        let c = FontMetrics::of(StandardFont::Courier);
        assert_eq!(c.width("iW", 10.0), 12.0);
        assert_eq!(WIN_ANSI_NAMES.split_whitespace().count(), 224);
    }

    #[test]
    fn unknown_characters_are_replaced_visibly() {
        let h = FontMetrics::of(StandardFont::Helvetica);
        assert_eq!(h.encode("a€ž✓漢"), vec![b'a', 0x80, 0x9E, b'?', b'?']);
        assert_eq!(h.encode("tab\there"), b"tab here".to_vec());
        let s = FontMetrics::of(StandardFont::Symbol);
        assert_eq!(s.encode("ab"), b"ab".to_vec());
    }
}
