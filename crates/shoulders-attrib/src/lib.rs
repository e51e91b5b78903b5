//! Attribution index for shoulders: a byte-level suffix-array index over contributed
//! documents, in infini-gram's single-shard `u8` layout, answering counts, locations
//! (contribution, document, offset) and OLMoTrace-style maximal matching spans of a model
//! output. See [`index`]. [`shares`] turns the spans into contributor shares in parts per
//! million, crediting each duplicate cluster once. [`dataset`] opens a data directory's
//! per-dataset index and attributes a text against it. [`generate`] samples text from the same
//! index as an ∞-gram language model. [`paraphrase`] credits the sources of reworded outputs
//! through a passage-level BM25 index and an integer confidence.

pub mod dataset;
pub mod generate;
pub mod index;
pub mod paraphrase;
pub mod shares;
