//! Ways of composing layers into models, and their summaries.

mod sequential;
mod summary;

pub use sequential::Sequential;
pub use summary::{course_shape, thousands, Summary, SummaryRow};
