//! The wire codec, one binary: the reference document's exact frames, property tests,
//! and the edge cases (extreme values, optional, unknown and missing fields, wrong
//! shapes and types, REST objects, validation), each section a module.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod fields;
mod frames;
mod props;
mod rest_objects;
mod shapes;
mod validation;
mod values;
