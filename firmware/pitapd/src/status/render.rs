//! Drawing a page on a 128x64 monochrome display with embedded-graphics:
//! the same code draws on the SSD1306 and on the simulator's frame.

use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use super::pages::{Page, PageLines, ROWS};

pub const WIDTH: u32 = 128;
pub const HEIGHT: u32 = 64;
const ROW_HEIGHT: i32 = 10;

/// Draws a page: the first line white on black as a title bar with the
/// page's position shown as dots, the rest below it.
pub fn draw<D: DrawTarget<Color = BinaryColor>>(
    target: &mut D,
    page: Page,
    lines: &PageLines,
) -> Result<(), D::Error> {
    target.clear(BinaryColor::Off)?;
    Rectangle::new(Point::zero(), Size::new(WIDTH, ROW_HEIGHT as u32))
        .into_styled(PrimitiveStyle::with_fill(BinaryColor::On))
        .draw(target)?;
    let dark = MonoTextStyle::new(&FONT_6X10, BinaryColor::Off);
    let lit = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);
    for (row, text) in lines.text.iter().enumerate().take(ROWS) {
        let style = if row == 0 { dark } else { lit };
        Text::with_baseline(
            text,
            Point::new(0, row as i32 * ROW_HEIGHT),
            style,
            Baseline::Top,
        )
        .draw(target)?;
    }
    // Page dots in the bottom-right corner: which of the pages this is.
    for (i, p) in Page::ALL.iter().enumerate() {
        let style = if *p == page {
            PrimitiveStyle::with_fill(BinaryColor::On)
        } else {
            PrimitiveStyle::with_stroke(BinaryColor::On, 1)
        };
        Rectangle::new(
            Point::new(WIDTH as i32 - 16 + i as i32 * 4, HEIGHT as i32 - 3),
            Size::new(3, 3),
        )
        .into_styled(style)
        .draw(target)?;
    }
    Ok(())
}

/// A 128x64 frame in memory, one bit per pixel (the simulator's display,
/// and the golden frames' reference).
#[derive(Clone, PartialEq, Eq)]
pub struct Framebuffer {
    bits: [u8; (WIDTH * HEIGHT / 8) as usize],
}

impl Default for Framebuffer {
    fn default() -> Self {
        Framebuffer {
            bits: [0; (WIDTH * HEIGHT / 8) as usize],
        }
    }
}

impl Framebuffer {
    pub fn pixel(&self, x: u32, y: u32) -> bool {
        let i = (y * WIDTH + x) as usize;
        self.bits[i / 8] & (0x80 >> (i % 8)) != 0
    }

    fn set(&mut self, x: u32, y: u32, on: bool) {
        let i = (y * WIDTH + x) as usize;
        if on {
            self.bits[i / 8] |= 0x80 >> (i % 8);
        } else {
            self.bits[i / 8] &= !(0x80 >> (i % 8));
        }
    }

    /// The frame as a PNG, scaled up `scale` times for people to read.
    pub fn to_png(&self, scale: u32) -> Result<Vec<u8>, png::EncodingError> {
        let (w, h) = (WIDTH * scale, HEIGHT * scale);
        let mut rows = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                // Lit pixels in the blue-white of a typical SSD1306.
                rows.push(if self.pixel(x / scale, y / scale) {
                    0xff
                } else {
                    0x00
                });
            }
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header()?;
            writer.write_image_data(&rows)?;
        }
        Ok(out)
    }

    /// Reads a frame back from a PNG made by `to_png` (any scale).
    pub fn from_png(bytes: &[u8]) -> Result<Framebuffer, String> {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
        let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        if info.color_type != png::ColorType::Grayscale || info.width % WIDTH != 0 {
            return Err("not a frame PNG".into());
        }
        let scale = info.width / WIDTH;
        if info.height != HEIGHT * scale {
            return Err("not a frame PNG".into());
        }
        let mut frame = Framebuffer::default();
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let i = ((y * scale) * info.width + x * scale) as usize;
                frame.set(x, y, buf[i] > 127);
            }
        }
        Ok(frame)
    }

    /// Pixels that differ from another frame.
    pub fn diff(&self, other: &Framebuffer) -> usize {
        self.bits
            .iter()
            .zip(&other.bits)
            .map(|(a, b)| (a ^ b).count_ones() as usize)
            .sum()
    }
}

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Framebuffer {
    type Color = BinaryColor;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<BinaryColor>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, color) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < WIDTH && (p.y as u32) < HEIGHT {
                self.set(p.x as u32, p.y as u32, color.is_on());
            }
        }
        Ok(())
    }
}
