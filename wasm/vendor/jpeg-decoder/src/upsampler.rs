use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use crate::error::{Error, Result, UnsupportedFeature};
use crate::parser::Component;

pub struct Upsampler {
    components: Vec<UpsamplerComponent>,
    // One row per component, reused from row to row: every upsampler writes each sample the color conversion reads.
    line_buffers: Vec<Vec<u8>>,
}

struct UpsamplerComponent {
    upsampler: Box<dyn Upsample + Sync>,
    width: usize,
    height: usize,
    row_stride: usize,
}

impl Upsampler {
    pub fn new(components: &[Component], _output_width: u16, _output_height: u16) -> Result<Upsampler> {
        let h_max = components.iter().map(|c| c.horizontal_sampling_factor).max().unwrap();
        let v_max = components.iter().map(|c| c.vertical_sampling_factor).max().unwrap();
        let mut upsampler_components = Vec::with_capacity(components.len());

        for component in components {
            // jdsample.c's do_fancy: jdmainct.c gives no context rows when the IDCT makes 1x1 blocks.
            let fancy = components.iter().map(|c| c.dct_scale).min().unwrap() > 1;
            let upsampler = choose_upsampler((component.horizontal_sampling_factor,
                                              component.vertical_sampling_factor),
                                             (h_max, v_max),
                                             component.size.width,
                                             fancy)?;
            upsampler_components.push(UpsamplerComponent {
                upsampler,
                width: component.size.width as usize,
                height: component.size.height as usize,
                row_stride: component.block_size.width as usize * component.dct_scale,
            });
        }

        let buffer_size = components.iter().map(|c| c.size.width).max().unwrap() as usize * h_max as usize;

        Ok(Upsampler {
            components: upsampler_components,
            line_buffers: vec![vec![0u8; buffer_size]; components.len()],
        })
    }

    pub fn upsample_and_interleave_row(&mut self, component_data: &[Vec<u8>], row: usize, output_width: usize, output: &mut [u8], color_convert: fn(&[Vec<u8>], &mut [u8])) {
        let line_buffers = &mut self.line_buffers;

        debug_assert_eq!(component_data.len(), self.components.len());

        for (i, component) in self.components.iter().enumerate() {
            component.upsampler.upsample_row(&component_data[i],
                                             component.width,
                                             component.height,
                                             component.row_stride,
                                             row,
                                             output_width,
                                             &mut line_buffers[i]);
        }
        color_convert(line_buffers, output);
    }
}

// libjpeg-turbo's upsamplers (jdsample.c) with its defaults (do_fancy_upsampling, no merged upsampling): each
// component gets the method jinit_upsampler picks from its sampling factors relative to the largest ones.
// The fancy (triangle filter) methods alternate their rounding bias from one output sample to the next, and
// read context rows as jdmainct.c provides them: above the first row, the first row again; below the last real
// row (downsampled_height, not the padded blocks), the last row again. Horizontally they stop at the
// component's downsampled_width.

/// fullsize_upsample: a copy.
struct UpsamplerH1V1;
/// h2v1_fancy_upsample (downsampled_width > 2).
struct UpsamplerH2V1;
/// h1v2_fancy_upsample.
struct UpsamplerH1V2;
/// h2v2_fancy_upsample (downsampled_width > 2).
struct UpsamplerH2V2;

/// int_upsample (and h2v1_upsample, h2v2_upsample, which are its 2x1 and 2x2 cases): replication.
struct UpsamplerGeneric {
    horizontal_scaling_factor: u8,
    vertical_scaling_factor: u8
}

fn choose_upsampler(sampling_factors: (u8, u8),
                    max_sampling_factors: (u8, u8),
                    input_width: u16,
                    fancy: bool) -> Result<Box<dyn Upsample + Sync>> {
    let h1 = sampling_factors.0 == max_sampling_factors.0;
    let v1 = sampling_factors.1 == max_sampling_factors.1;
    let h2 = sampling_factors.0 * 2 == max_sampling_factors.0;
    let v2 = sampling_factors.1 * 2 == max_sampling_factors.1;

    if h1 && v1 {
        Ok(Box::new(UpsamplerH1V1))
    }
    else if h2 && v1 && fancy && input_width > 2 {
        Ok(Box::new(UpsamplerH2V1))
    }
    else if h1 && v2 && fancy {
        Ok(Box::new(UpsamplerH1V2))
    }
    else if h2 && v2 && fancy && input_width > 2 {
        Ok(Box::new(UpsamplerH2V2))
    }
    else {
        if max_sampling_factors.0 % sampling_factors.0 != 0 || max_sampling_factors.1 % sampling_factors.1 != 0 {
            Err(Error::Unsupported(UnsupportedFeature::NonIntegerSubsamplingRatio))
        }
        else {
            Ok(Box::new(UpsamplerGeneric {
                horizontal_scaling_factor: max_sampling_factors.0 / sampling_factors.0,
                vertical_scaling_factor: max_sampling_factors.1 / sampling_factors.1
            }))
        }
    }
}

trait Upsample {
    fn upsample_row(&self,
                    input: &[u8],
                    input_width: usize,
                    input_height: usize,
                    row_stride: usize,
                    row: usize,
                    output_width: usize,
                    output: &mut [u8]);
}

/// For output row `row` of a component upsampled 2x vertically: the nearest input row, the next nearest (above
/// for even rows, below for odd ones, the edge row itself past the edges), and whether it is below.
fn context_rows(input: &[u8], input_height: usize, row_stride: usize, row: usize) -> (&[u8], &[u8], bool) {
    let near = row / 2;
    let below = row % 2 == 1;
    let far = if below { (near + 1).min(input_height - 1) } else { near.saturating_sub(1) };
    (&input[near * row_stride..], &input[far * row_stride..], below)
}

impl Upsample for UpsamplerH1V1 {
    fn upsample_row(&self,
                    input: &[u8],
                    _input_width: usize,
                    _input_height: usize,
                    row_stride: usize,
                    row: usize,
                    output_width: usize,
                    output: &mut [u8]) {
        let input = &input[row * row_stride ..];

        output[..output_width].copy_from_slice(&input[..output_width]);
    }
}

impl Upsample for UpsamplerH2V1 {
    fn upsample_row(&self,
                    input: &[u8],
                    input_width: usize,
                    _input_height: usize,
                    row_stride: usize,
                    row: usize,
                    _output_width: usize,
                    output: &mut [u8]) {
        let input = &input[row * row_stride ..];
        debug_assert!(input_width > 2);

        output[0] = input[0];
        output[1] = ((input[0] as u32 * 3 + input[1] as u32 + 2) >> 2) as u8;

        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "platform_independent")))]
        let start = crate::arch::simd128::upsample_row_h2v1(input, input_width, output);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "platform_independent"))))]
        let start = 1;

        for i in start .. input_width - 1 {
            let sample = 3 * input[i] as u32;
            output[i * 2]     = ((sample + input[i - 1] as u32 + 1) >> 2) as u8;
            output[i * 2 + 1] = ((sample + input[i + 1] as u32 + 2) >> 2) as u8;
        }

        output[(input_width - 1) * 2] = ((input[input_width - 1] as u32 * 3 + input[input_width - 2] as u32 + 1) >> 2) as u8;
        output[(input_width - 1) * 2 + 1] = input[input_width - 1];
    }
}

impl Upsample for UpsamplerH1V2 {
    fn upsample_row(&self,
                    input: &[u8],
                    input_width: usize,
                    input_height: usize,
                    row_stride: usize,
                    row: usize,
                    _output_width: usize,
                    output: &mut [u8]) {
        let (near, far, below) = context_rows(input, input_height, row_stride, row);
        let bias = if below { 2 } else { 1 };
        for ((out, &near), &far) in output[..input_width].iter_mut().zip(&near[..input_width]).zip(&far[..input_width]) {
            *out = ((3 * near as u32 + far as u32 + bias) >> 2) as u8;
        }
    }
}

impl Upsample for UpsamplerH2V2 {
    fn upsample_row(&self,
                    input: &[u8],
                    input_width: usize,
                    input_height: usize,
                    row_stride: usize,
                    row: usize,
                    _output_width: usize,
                    output: &mut [u8]) {
        let (input_near, input_far, _) = context_rows(input, input_height, row_stride, row);
        debug_assert!(input_width > 2);

        // Column sums 3 * near + far; the first output is the first sum's (4 * sum + 8) >> 4.
        output[0] = ((3 * input_near[0] as u32 + input_far[0] as u32 + 2) >> 2) as u8;

        #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "platform_independent")))]
        let start = crate::arch::simd128::upsample_row_h2v2(input_near, input_far, input_width, output);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "platform_independent"))))]
        let start = 1;

        let mut t1 = 3 * input_near[start - 1] as u32 + input_far[start - 1] as u32;
        for i in start .. input_width {
            let t0 = t1;
            t1 = 3 * input_near[i] as u32 + input_far[i] as u32;

            output[i * 2 - 1] = ((3 * t0 + t1 + 7) >> 4) as u8;
            output[i * 2]     = ((3 * t1 + t0 + 8) >> 4) as u8;
        }

        output[input_width * 2 - 1] = ((4 * t1 + 7) >> 4) as u8;
    }
}

impl Upsample for UpsamplerGeneric {
    // Uses nearest neighbor sampling
    fn upsample_row(&self,
                    input: &[u8],
                    _input_width: usize,
                    _input_height: usize,
                    row_stride: usize,
                    row: usize,
                    output_width: usize,
                    output: &mut [u8]) {
        let start = (row / self.vertical_scaling_factor as usize) * row_stride;
        let input = &input[start..];
        let h = self.horizontal_scaling_factor as usize;
        for (i, out) in output[..output_width].iter_mut().enumerate() {
            *out = input[i / h];
        }
    }
}

#[cfg(all(test, not(feature = "platform_independent")))]
mod tests {
    use super::*;
    use crate::arch::simd128::{self, tests::Rng};

    // The simd128 kernels fill the middle of a row; natively, these upsamplers are the scalar code.
    #[test]
    fn simd128_upsampling_matches_scalar() {
        let mut rng = Rng(11);
        for width in (3..70).chain([255, 256, 257, 1000]) {
            for _ in 0..20 {
                let (stride, height) = (width + 7, 3);
                let input = rng.bytes(stride * height);
                let mut expected = vec![0u8; 2 * stride];
                UpsamplerH2V1.upsample_row(&input, width, height, stride, 1, 2 * width, &mut expected);
                let mut actual = vec![0u8; 2 * stride];
                let end = simd128::upsample_row_h2v1(&input[stride..], width, &mut actual);
                assert!(end >= 1 && end < width);
                assert_eq!(actual[2..2 * end], expected[2..2 * end], "h2v1, width {width}");

                for row in 0..2 * height {
                    UpsamplerH2V2.upsample_row(&input, width, height, stride, row, 2 * width, &mut expected);
                    let near = &input[row / 2 * stride..];
                    let far_row = if row % 2 == 0 { (row / 2).max(1) - 1 } else { (row / 2 + 1).min(height - 1) };
                    let far = &input[far_row * stride..];
                    let end = simd128::upsample_row_h2v2(near, far, width, &mut actual);
                    assert!(end >= 1 && end <= width);
                    assert_eq!(actual[1..2 * end - 1], expected[1..2 * end - 1], "h2v2, width {width}, row {row}");
                }
            }
        }
    }
}
