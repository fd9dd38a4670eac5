//! The captcha: five digits to type (`48213`), one of 90,000 codes.
//!
//! The code is drawn as a PNG with a small built-in bitmap font, each glyph scaled, jittered and
//! coloured at random, over noise dots and lines: easy for a person, not plain text for a script.
//! The answer lives in `sk:{g:ID}:captcha:UID` for [`crate::plumbing::keys::CAPTCHA_TTL`]. It is
//! used up by a wrong answer or by the path it unlocks (`lua/issue_path.lua`).
//!
//! What a captcha can and cannot do (security review, row 4; `docs/security.md`). The seeds' sum
//! of three digits had a few dozen answers, the most common one right ~2.8% of the time: a
//! script guessed blind. Here a blind guess is right 1 time in 90,000, a shopper's wrong answers
//! are counted per sale and lock the captcha for a while past a few (`captcha_wrong_max`), and
//! fresh captchas are made at most [`PER_MINUTE`] a minute per shopper and sale. A machine that
//! reads the image still passes (any image captcha is read by a model today): the captcha is a
//! speed bump for the first-come race, and the draw (`docs/draws.md`) is the answer to scripts.

use rand::Rng;

/// Fresh captchas one shopper may have made for one sale within a minute.
pub const PER_MINUTE: i64 = 12;

/// A captcha to show and the answer to expect.
#[derive(Debug, Clone)]
pub struct Captcha {
    /// The five digits shown (never starting with 0, so the answer is a plain number).
    pub expression: String,
    pub answer: i64,
}

impl Captcha {
    /// Five random digits, from the OS-seeded generator.
    pub fn generate() -> Self {
        let answer = rand::rng().random_range(10_000..=99_999i64);
        Self {
            expression: answer.to_string(),
            answer,
        }
    }

    /// The code as a PNG image.
    pub fn png(&self) -> Vec<u8> {
        render(&self.expression)
    }
}

const WIDTH: usize = 150;
const HEIGHT: usize = 44;
/// The PNG holds each pixel as DENSITY × DENSITY: the page shows it at WIDTH × HEIGHT CSS
/// pixels, and a phone's screen has two or three device pixels to each (a 1x image looks blurred
/// there, and Lighthouse counts it against the page).
const DENSITY: usize = 2;

/// A 5×7 bitmap glyph: one byte a row, the low five bits are the pixels, left to right.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '*' => [0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        _ => [0; 7],
    }
}

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&rgb);
        }
    }
}

fn render(text: &str) -> Vec<u8> {
    let mut rng = rand::rng();
    let bg = [
        rng.random_range(225..=255),
        rng.random_range(225..=255),
        rng.random_range(225..=255),
    ];
    let mut canvas = Canvas {
        px: bg.repeat(WIDTH * HEIGHT),
    };
    let dark = |rng: &mut rand::rngs::ThreadRng| -> [u8; 3] {
        [
            rng.random_range(0..140),
            rng.random_range(0..140),
            rng.random_range(0..140),
        ]
    };
    // noise dots under the text
    for _ in 0..WIDTH * HEIGHT / 12 {
        let c = [rng.random(), rng.random(), rng.random()];
        canvas.put(
            rng.random_range(0..WIDTH as i64),
            rng.random_range(0..HEIGHT as i64),
            c,
        );
    }
    // the glyphs, each drawn its own way, so that no template of the font fits them whole: a
    // width and a height of its own (3 or 4 pixels a dot), a gap of its own before it, a lean,
    // a shade that varies dot by dot, and the whole line bent along a wave. (An outside tester
    // read the earlier drawing, fixed places and one colour a glyph, with 40 lines of Python.)
    let (amplitude, period, phase) = (
        rng.random_range(1.0..2.5f64),
        rng.random_range(45.0..80.0f64),
        rng.random_range(0.0..std::f64::consts::TAU),
    );
    let mut x0 = rng.random_range(4..=16i64);
    for c in text.chars() {
        let base = dark(&mut rng);
        let (sx, sy) = (rng.random_range(3..=4i64), rng.random_range(3..=4i64));
        let y0 = (HEIGHT as i64 - 7 * sy) / 2 + rng.random_range(-4..=4);
        let lean: i64 = rng.random_range(-1..=1);
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                let shade = base.map(|v| v.saturating_add(rng.random_range(0..30)));
                for dy in 0..sy {
                    for dx in 0..sx {
                        let x = x0 + col * sx + dx + lean * (3 - row as i64) / 2;
                        let bend =
                            amplitude * ((x as f64) / period * std::f64::consts::TAU + phase).sin();
                        let y = y0 + row as i64 * sy + dy + bend.round() as i64;
                        canvas.put(x, y, shade);
                    }
                }
            }
        }
        x0 += 5 * sx + rng.random_range(2..=7i64);
    }
    // noise lines across the text, in the glyphs' own shades, some two pixels thick
    for i in 0..4 {
        let colour = dark(&mut rng);
        let (mut x, mut y) = (0.0f64, rng.random_range(0.0..HEIGHT as f64));
        let slope = rng.random_range(-0.3..0.3);
        while x < WIDTH as f64 {
            canvas.put(x as i64, y as i64, colour);
            if i == 0 {
                canvas.put(x as i64, y as i64 + 1, colour);
            }
            x += 1.0;
            y += slope;
        }
    }
    encode_png(&canvas.px)
}

fn encode_png(rgb: &[u8]) -> Vec<u8> {
    let mut dense = Vec::with_capacity(rgb.len() * DENSITY * DENSITY);
    for row in rgb.chunks(WIDTH * 3) {
        let mut wide = Vec::with_capacity(row.len() * DENSITY);
        for px in row.chunks(3) {
            for _ in 0..DENSITY {
                wide.extend_from_slice(px);
            }
        }
        for _ in 0..DENSITY {
            dense.extend_from_slice(&wide);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(
        &mut out,
        (WIDTH * DENSITY) as u32,
        (HEIGHT * DENSITY) as u32,
    );
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header to a Vec");
    writer.write_image_data(&dense).expect("png data to a Vec");
    writer.finish().expect("png end to a Vec");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_five_digits_and_spread_out() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let c = Captcha::generate();
            assert_eq!(c.expression.len(), 5);
            assert_eq!(c.expression, c.answer.to_string());
            seen.insert(c.answer);
        }
        // 2,000 draws of 90,000 codes: nearly all different (a blind guess has nothing to aim at)
        assert!(seen.len() > 1950, "{}", seen.len());
    }

    #[test]
    fn the_image_is_a_png_of_the_declared_size() {
        let png = Captcha::generate().png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width, (WIDTH * DENSITY) as u32);
        assert_eq!(reader.info().height, (HEIGHT * DENSITY) as u32);
    }
}
