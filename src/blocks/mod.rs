//! Composite blocks built from layers, themselves layers: ResNet's residual block and
//! GoogLeNet's Inception module.

mod inception;
mod residual;

pub use inception::Inception;
pub use residual::Residual;
