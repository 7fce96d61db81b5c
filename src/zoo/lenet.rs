//! LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998).

use crate::error::Result;
use crate::layers::{
    AvgPool2d, AvgPool2dConfig, Conv2d, Conv2dConfig, Flatten, FlattenConfig, Linear, LinearConfig,
    MaxPool2d, MaxPool2dConfig, ReLU, Tanh,
};
use crate::model::Sequential;
use crate::tensor::Float;

/// LeNet-5 as in the paper, for 32x32 inputs:
///
/// ```text
/// [28x28x6]  C1: 6 5x5 filters, tanh        156 params
/// [14x14x6]  S2: 2x2 average pooling
/// [10x10x16] C3: 16 5x5 filters, tanh      2,416  (fully connected to S2's maps)
/// [5x5x16]   S4: 2x2 average pooling
/// [1x1x120]  C5: 120 5x5 filters, tanh    48,120
/// [84]       F6: fully connected, tanh    10,164
/// [10]       output                          850     total 61,706
/// ```
///
/// Two simplifications against the paper, both common: S2/S4 are plain averages (the paper
/// gave each map a trainable coefficient and bias), and C3 connects to all six S2 maps (the
/// paper's sparse table had 1,516 weights instead of 2,416). The parameters are named as the
/// equivalent flat PyTorch `nn.Sequential` names them: `0.*` (C1), `3.*` (C3), `6.*` (C5),
/// `9.*` (F6), `11.*` (output).
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let mut net = convnet::zoo::lenet5::<f32>(10)?;
/// assert_eq!(net.num_params(), 61_706);
/// let logits = net.forward(&Tensor::zeros(ndarray::IxDyn(&[2, 1, 32, 32])))?;
/// assert_eq!(logits.shape(), &[2, 10]);
/// # Ok(())
/// # }
/// ```
pub fn lenet5<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    Ok(Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 6, 5))?)
        .add(Tanh::new())
        .add(AvgPool2d::new(AvgPool2dConfig::new(2))?)
        .add(Conv2d::new(Conv2dConfig::new(6, 16, 5))?)
        .add(Tanh::new())
        .add(AvgPool2d::new(AvgPool2dConfig::new(2))?)
        .add(Conv2d::new(Conv2dConfig::new(16, 120, 5))?)
        .add(Tanh::new())
        .add(Flatten::new(FlattenConfig::new())?)
        .add(Linear::new(LinearConfig::new(120, 84))?)
        .add(Tanh::new())
        .add(Linear::new(LinearConfig::new(84, num_classes))?))
}

/// LeNet-5 as it is usually trained on MNIST today: 28x28 inputs with C1 padded by 2 (so C1
/// still sees 32x32), ReLU instead of tanh and max instead of average pooling. Same 61,706
/// parameters, same names as `nn.Sequential(Conv2d(1,6,5,padding=2), ReLU(), MaxPool2d(2),
/// Conv2d(6,16,5), ReLU(), MaxPool2d(2), Conv2d(16,120,5), ReLU(), Flatten(), Linear(120,84),
/// ReLU(), Linear(84,10))`.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::lenet5_modern::<f32>(10)?;
/// let summary = net.summary(&[1, 1, 28, 28])?;
/// assert_eq!(summary.total_params(), 61_706);
/// assert!(summary.to_string().contains("[28x28x6]  CONV1: 6 5x5 filters at stride 1, pad 2"));
/// // Trained weights load by name: `0.weight`, `0.bias`, ..., `11.bias`.
/// let names: Vec<String> = convnet::io::state_dict(&net).into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names.first().map(String::as_str), Some("0.weight"));
/// assert_eq!(names.last().map(String::as_str), Some("11.bias"));
/// # Ok(())
/// # }
/// ```
pub fn lenet5_modern<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    Ok(Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 6, 5).padding(2))?)
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?)
        .add(Conv2d::new(Conv2dConfig::new(6, 16, 5))?)
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?)
        .add(Conv2d::new(Conv2dConfig::new(16, 120, 5))?)
        .add(ReLU::new())
        .add(Flatten::new(FlattenConfig::new())?)
        .add(Linear::new(LinearConfig::new(120, 84))?)
        .add(ReLU::new())
        .add(Linear::new(LinearConfig::new(84, num_classes))?))
}
