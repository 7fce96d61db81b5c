//! Ways of composing layers into models.

mod sequential;

pub use sequential::Sequential;
