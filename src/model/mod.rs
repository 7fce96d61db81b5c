//! Ways of composing layers into models, and their summaries.

mod graph;
mod sequential;
mod summary;

pub use graph::{Graph, GraphBuilder};
pub use sequential::{infer_chain, Sequential};
pub use summary::{course_shape, thousands, Summary, SummaryRow};
