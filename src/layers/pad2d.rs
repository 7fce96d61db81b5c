use super::{check_output, expect_numel, expect_shape};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use std::marker::PhantomData;

/// Constant padding of the last two dims (height and width), each side by its own amount, like
/// `nn.ConstantPad2d` (and `nn.ZeroPad2d` for the value 0).
///
/// ```text
/// forward:  y[.., i + top, j + left] = x[.., i, j];   every other cell of y = value
/// backward: dx[.., i, j] = dy[.., i + top, j + left]   (the border's gradient is dropped)
/// ```
///
/// Convolution and pooling layers pad both sides of an axis equally; this layer in front of
/// them gives the asymmetric padding of `SAME` convolutions with an odd total and of models
/// converted from TensorFlow. A value of `-inf` in front of max pooling acts like the pooling
/// layer's own padding.
#[derive(Clone, Debug)]
pub struct Pad2d<T: Float> {
    padding: [usize; 4],
    value: f64,
    input_shape: Option<Vec<usize>>,
    _t: PhantomData<T>,
}

/// How to build a [`Pad2d`]: the cells added on each side, in PyTorch's order
/// `[left, right, top, bottom]`, and the value they hold (default 0).
///
/// ```
/// use convnet::layers::Pad2dConfig;
/// let cfg = Pad2dConfig::new([0, 1, 0, 1]).value(f64::NEG_INFINITY);
/// assert_eq!((cfg.padding, cfg.value), ([0, 1, 0, 1], f64::NEG_INFINITY));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pad2dConfig {
    /// Cells added `[left, right, top, bottom]`.
    pub padding: [usize; 4],
    /// The value of the added cells (default 0; infinities are allowed, NaN is not).
    pub value: f64,
}

impl Pad2dConfig {
    /// Zero padding by `[left, right, top, bottom]` cells.
    pub fn new(padding: [usize; 4]) -> Self {
        Pad2dConfig {
            padding,
            value: 0.0,
        }
    }

    /// Sets the value of the added cells.
    pub fn value(mut self, value: f64) -> Self {
        self.value = value;
        self
    }
}

impl<T: Float> Pad2d<T> {
    /// A padding layer, or [`Error::InvalidConfig`] for a NaN value.
    pub fn new(cfg: Pad2dConfig) -> Result<Self> {
        if cfg.value.is_nan() {
            return Err(Error::config("Pad2d", "the padding value must not be NaN"));
        }
        Ok(Pad2d {
            padding: cfg.padding,
            value: cfg.value,
            input_shape: None,
            _t: PhantomData,
        })
    }

    /// The cells added `[left, right, top, bottom]`.
    pub fn padding(&self) -> [usize; 4] {
        self.padding
    }

    /// The value of the added cells.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// `(planes, [h, w], [oh, ow], output shape)` for an input shape `[.., H, W]`.
    #[allow(clippy::type_complexity)]
    fn geometry(&self, input: &[usize]) -> Result<(usize, [usize; 2], [usize; 2], Vec<usize>)> {
        expect_numel("Pad2d", input)?;
        let &[ref lead @ .., h, w] = input else {
            return Err(Error::shape("Pad2d", "[.., H, W] (at least 2 dims)", input));
        };
        let [l, r, t, b] = self.padding;
        let grow = |n: usize, a: usize, b: usize| n.checked_add(a).and_then(|v| v.checked_add(b));
        let (Some(oh), Some(ow)) = (grow(h, t, b), grow(w, l, r)) else {
            return Err(Error::config("Pad2d", "the padded size overflows"));
        };
        let mut out = lead.to_vec();
        out.extend([oh, ow]);
        let out = check_output("Pad2d", out)?;
        Ok((lead.iter().product(), [h, w], [oh, ow], out))
    }
}

impl<T: Float> Layer<T> for Pad2d<T> {
    fn kind(&self) -> &'static str {
        "Pad2d"
    }

    fn describe(&self) -> String {
        let [l, r, t, b] = self.padding;
        format!(
            "left {l}, right {r}, top {t}, bottom {b}, value {}",
            self.value
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.geometry(input)?.3)
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.input_shape = Some(input.shape().to_vec());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (planes, [h, w], [oh, ow], shape) = self.geometry(input.shape())?;
        let [l, _, t, _] = self.padding;
        let x = contiguous(input);
        let mut y = vec![T::of(self.value); planes * oh * ow];
        if h * w == 0 {
            // An empty image (as PyTorch pads it): the output is all padding. Cutting the
            // input into planes of zero cells would panic.
            return Ok(from_vec(&shape, y));
        }
        for (xp, yp) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow)) {
            for (xr, yr) in xp.chunks_exact(w).zip(yp.chunks_exact_mut(ow).skip(t)) {
                // `ow = l + w + r` (geometry), so the middle of the row is there.
                if let Some(middle) = yr.get_mut(l..l + w) {
                    middle.copy_from_slice(xr);
                }
            }
        }
        Ok(from_vec(&shape, y))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let input_shape = self
            .input_shape
            .clone()
            .ok_or_else(|| Error::no_cache("Pad2d"))?;
        expect_shape(
            "Pad2d",
            &self.output_shape(&input_shape)?,
            grad_output.shape(),
        )?;
        let (planes, [h, w], [oh, ow], _) = self.geometry(&input_shape)?;
        let [l, _, t, _] = self.padding;
        if h * w == 0 {
            // An empty image has an empty gradient (and no plane to cut `dy` into).
            return Ok(from_vec(&input_shape, Vec::new()));
        }
        let dy = contiguous(grad_output);
        let mut dx = Vec::with_capacity(planes * h * w);
        for dyp in dy.chunks_exact(oh * ow) {
            for dyr in dyp.chunks_exact(ow).skip(t).take(h) {
                dx.extend_from_slice(dyr.get(l..l + w).unwrap_or_default());
            }
        }
        Ok(from_vec(&input_shape, dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    #[test]
    fn pads_each_side_by_its_own_amount() {
        let x = from_vec(&[1, 1, 2, 2], vec![1.0f64, 2.0, 3.0, 4.0]);
        let p = Pad2d::new(Pad2dConfig::new([1, 0, 0, 2]).value(-1.0)).unwrap();
        let y = p.infer(&x).unwrap();
        assert_eq!(y.shape(), &[1, 1, 4, 3]);
        #[rustfmt::skip]
        let want = [
            -1.0, 1.0, 2.0,
            -1.0, 3.0, 4.0,
            -1.0, -1.0, -1.0,
            -1.0, -1.0, -1.0,
        ];
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, padding) in [[0, 1, 2, 0], [2, 2, 1, 1], [0, 0, 0, 0]]
            .iter()
            .enumerate()
        {
            let x = random_tensor(&[2, 3, 4, 5], seed as u64);
            let mut p = Pad2d::new(Pad2dConfig::new(*padding).value(0.5)).unwrap();
            check_layer(&mut p, &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn an_empty_image_pads_to_all_padding() {
        // [2, 2, 0, 5] used to panic cutting the input into planes of zero cells.
        for (shape, padding) in [
            ([2usize, 2, 0, 5], [1, 2, 0, 1]),
            ([2, 2, 5, 0], [1, 2, 0, 1]),
            ([1, 1, 0, 0], [1, 2, 0, 1]),
            ([1, 1, 0, 3], [0, 0, 0, 0]),
        ] {
            let mut p = Pad2d::<f64>::new(Pad2dConfig::new(padding).value(-1.0)).unwrap();
            let x = Tensor::zeros(ndarray::IxDyn(&shape));
            let want = p.output_shape(&shape).unwrap();
            let y = p.forward(&x).unwrap();
            assert_eq!(y.shape(), want.as_slice());
            assert!(y.iter().all(|&v| v == -1.0), "{y:?}");
            assert_eq!(p.infer(&x).unwrap(), y);
            let dx = p.backward(&Tensor::ones(ndarray::IxDyn(&want))).unwrap();
            assert_eq!(dx.shape(), shape);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Pad2d::<f32>::new(Pad2dConfig::new([1; 4]).value(f64::NAN)).is_err());
        let p = Pad2d::<f32>::new(Pad2dConfig::new([1; 4])).unwrap();
        assert!(p.output_shape(&[5]).is_err());
        assert!(p.output_shape(&[1, usize::MAX]).is_err());
        let mut p = p;
        assert!(p
            .backward(&Tensor::zeros(ndarray::IxDyn(&[1, 3, 3])))
            .is_err());
    }
}
