//! The pidcap packet library (placeholder while the crate is being written).
